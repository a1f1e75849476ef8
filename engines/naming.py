"""Engine file names that say what an engine is for, and parse back.

    {graph}.{model}-{image_size}.{precision}[.obj{max_objects}][.pts{max_points}].sm{cc}.trt{major.minor}.engine

    memory_attention.sam2.1_hiera_tiny-1024.fp16.obj4.sm87.trt10.7.engine
    mask_decoder.sam2.1_hiera_tiny-1024.fp16.obj4.pts16.sm87.trt10.7.engine
    image_encoder.sam2.1_hiera_tiny-1024.fp16.sm87.trt10.7.engine

- `model` is the export's config name (manifest.json), `image_size` its input size;
- `precision` is fp16 or fp32 (the sidecar says which FP16: strongly typed or the builder flag);
- `obj` appears only on graphs with the `objects` axis and `pts` only on the one with `points`, so
  the image encoder's engine serves any number of objects;
- `sm{major}{minor}` is the compute capability (sm87 = 8.7, sm100 = 10.0; the minor is one digit),
  `trt` TensorRT's major.minor. The sidecar holds the full TensorRT version and the GPU's name,
  and is what a loader checks: the name is for people and for keeping builds apart in one folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamsam.contracts import GRAPH_NAMES, OBJECTS, POINTS, GraphContract

from .errors import EngineError

ENGINE_SUFFIX = ".engine"
NAME_PRECISIONS = ("fp16", "fp32")

_MODEL = r"[A-Za-z0-9_.+]+"
_PATTERN = re.compile(
    rf"^(?P<graph>{'|'.join(GRAPH_NAMES)})\.(?P<model>{_MODEL})-(?P<size>\d+)\.(?P<precision>fp16|fp32)"
    r"(?:\.obj(?P<objects>\d+))?(?:\.pts(?P<points>\d+))?\.sm(?P<sm>\d{2,3})\.trt(?P<trt>\d+\.\d+)"
    rf"{re.escape(ENGINE_SUFFIX)}$"
)


def sm_tag(compute_capability: tuple[int, int]) -> str:
    """(8, 7) -> 'sm87'."""
    major, minor = compute_capability
    if not (0 < major and 0 <= minor <= 9):
        raise EngineError(f"compute capability | received {compute_capability!r}; expected (major, minor) with minor 0..9")
    return f"sm{major}{minor}"


def sm_label(compute_capability: tuple[int, int]) -> str:
    """(8, 7) -> 'sm_87', as nvcc and the CUDA docs write an architecture (for messages)."""
    return f"sm_{sm_tag(compute_capability)[2:]}"


def parse_sm_tag(tag: str) -> tuple[int, int]:
    """'sm87' -> (8, 7); 'sm100' -> (10, 0)."""
    digits = tag[2:] if tag.startswith("sm") else ""
    if not digits.isdigit() or len(digits) < 2:
        raise EngineError(f"compute capability tag | received {tag!r}; expected sm<major><minor>, e.g. sm87")
    return int(digits[:-1]), int(digits[-1])


def short_tensorrt_version(version: str) -> str:
    """'10.7.0.23' -> '10.7'."""
    parts = version.split(".")
    if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
        raise EngineError(f"TensorRT version | received {version!r}; expected major.minor[.patch[.build]]")
    return f"{parts[0]}.{parts[1]}"


def timing_cache_name(compute_capability: tuple[int, int], tensorrt_version: str) -> str:
    """The default timing cache file in the engines folder: tactic timings are only valid for one GPU
    and one TensorRT version, so each pair gets its own file."""
    return f"timing.{sm_tag(compute_capability)}.trt{tensorrt_version}.cache"


@dataclass(frozen=True)
class EngineName:
    graph: str
    model: str
    image_size: int
    precision: str  # fp16 or fp32
    max_objects: int | None  # None for graphs without the objects axis
    max_points: int | None  # None for graphs without the points axis
    compute_capability: tuple[int, int]
    tensorrt: str  # major.minor

    def __post_init__(self) -> None:
        if self.graph not in GRAPH_NAMES:
            raise EngineError(f"engine name | received graph {self.graph!r}; expected one of {list(GRAPH_NAMES)}")
        if not re.fullmatch(_MODEL, self.model):
            raise EngineError(f"engine name | received model {self.model!r}; expected letters, digits, '_', '.' or '+'")
        if self.precision not in NAME_PRECISIONS:
            raise EngineError(f"engine name | received precision {self.precision!r}; expected one of {list(NAME_PRECISIONS)}")
        sm_tag(self.compute_capability)
        short_tensorrt_version(self.tensorrt)

    @classmethod
    def for_graph(
        cls,
        contract: GraphContract,
        model: str,
        image_size: int,
        precision: str,
        max_objects: int,
        max_points: int,
        compute_capability: tuple[int, int],
        tensorrt_version: str,
    ) -> "EngineName":
        axes = contract.axes
        return cls(
            graph=contract.name,
            model=model,
            image_size=image_size,
            precision=precision,
            max_objects=max_objects if OBJECTS in axes else None,
            max_points=max_points if POINTS in axes else None,
            compute_capability=tuple(compute_capability),
            tensorrt=short_tensorrt_version(tensorrt_version),
        )

    @property
    def filename(self) -> str:
        objects = f".obj{self.max_objects}" if self.max_objects is not None else ""
        points = f".pts{self.max_points}" if self.max_points is not None else ""
        return (
            f"{self.graph}.{self.model}-{self.image_size}.{self.precision}{objects}{points}."
            f"{sm_tag(self.compute_capability)}.trt{self.tensorrt}{ENGINE_SUFFIX}"
        )


def parse_engine_name(filename: str) -> EngineName:
    """The inverse of EngineName.filename (a bare file name, not a path)."""
    match = _PATTERN.match(filename)
    if match is None:
        raise EngineError(
            f"engine file name | received {filename!r}; expected "
            "{graph}.{model}-{image_size}.{fp16|fp32}[.obj{N}][.pts{N}].sm{cc}.trt{major.minor}.engine, "
            "as `streamsam build` names them"
        )
    g = match.groupdict()
    return EngineName(
        graph=g["graph"],
        model=g["model"],
        image_size=int(g["size"]),
        precision=g["precision"],
        max_objects=int(g["objects"]) if g["objects"] else None,
        max_points=int(g["points"]) if g["points"] else None,
        compute_capability=parse_sm_tag(f"sm{g['sm']}"),
        tensorrt=g["trt"],
    )
