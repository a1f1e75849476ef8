"""The JSON sidecar written next to every engine (`<engine file>.json`), and the check a loader runs
before it deserializes an engine.

A serialized TensorRT engine runs only with the TensorRT version that built it and only on the kind
of GPU it was built for (TensorRT's "Engine Compatibility": "By default, TensorRT engines are
compatible only with the version of TensorRT used to build them"; without hardware compatibility
mode "engines are not portable across different GPU architectures"), and only means what its ONNX
graph meant. The sidecar records all three, so a mismatch fails with a message that names both sides
and the exact command that rebuilds the engine, instead of a deserialization error deep in TensorRT.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineError, EngineMismatchError
from .naming import sm_label

__all__ = [
    "EngineMismatchError",
    "PRECISIONS",
    "Sidecar",
    "check_sidecar",
    "read_sidecar",
    "sidecar_path",
    "write_sidecar",
]

SIDECAR_SUFFIX = ".json"
FORMAT_VERSION = 2  # 2: max_streams (the frames profile)
# fp16-strongly-typed: FP16 ONNX graphs (engines/fp16.py) in a strongly typed network;
# fp16: FP32 graphs with the weakly typed builder flag (TensorRT 10.x); fp32: FP32 graphs.
PRECISIONS = ("fp16-strongly-typed", "fp16", "fp32")


@dataclass(frozen=True)
class Sidecar:
    engine_file: str  # the engine's file name (no folder: the pair moves together)
    graph: str
    model: str  # the export's config name
    image_size: int
    precision: str  # one of PRECISIONS
    max_objects: int
    max_points: int
    # One entry per optimization profile: input name -> [min, opt, max] shapes.
    profiles: list[dict[str, list[list[int]]]]
    onnx_file: str
    onnx_sha256: str
    tensorrt_version: str  # trt.__version__ at build time, in full
    gpu_name: str
    compute_capability: tuple[int, int]
    streamsam_version: str
    build_date: str  # ISO 8601, UTC
    build_command: str  # the `streamsam build ...` line that rebuilds this engine
    format_version: int = field(default=FORMAT_VERSION)
    max_streams: int = 1  # the frames profile's max: streams one MultiStreamTracker step holds

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"sidecar {self.engine_file} | received precision {self.precision!r}; expected one of {list(PRECISIONS)}")

    def to_json(self) -> str:
        data: dict[str, Any] = {k: getattr(self, k) for k in self.__dataclass_fields__}
        data["compute_capability"] = f"{self.compute_capability[0]}.{self.compute_capability[1]}"
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str) -> "Sidecar":
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise EngineError(
                f"{source} | received sidecar format_version {data.get('format_version')!r}; expected {FORMAT_VERSION}. "
                f"Rebuild the engine with: {data.get('build_command', 'streamsam build --onnx-dir DIR --out DIR')}"
            )
        names = set(cls.__dataclass_fields__)
        if set(data) != names:
            raise EngineError(
                f"{source} | received sidecar keys {sorted(data)}; expected {sorted(names)} (missing "
                f"{sorted(names - set(data))}, unknown {sorted(set(data) - names)})"
            )
        major, minor = (int(x) for x in str(data["compute_capability"]).split("."))
        data["compute_capability"] = (major, minor)
        return cls(**data)


def sidecar_path(engine_path: str | Path) -> Path:
    """`x.engine` -> `x.engine.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


def write_sidecar(sidecar: Sidecar, engine_path: str | Path) -> Path:
    """Write the sidecar beside `engine_path` (through a temporary file, so no half-written sidecar
    ever describes an engine)."""
    path = sidecar_path(engine_path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(sidecar.to_json() + "\n")
    os.replace(partial, path)
    return path


def read_sidecar(engine_path: str | Path) -> Sidecar:
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise EngineError(
            f"{engine_path} | received an engine without its sidecar {path.name}; expected the sidecar that "
            "`streamsam build` writes beside every engine. Rebuild the engines with: "
            "streamsam build --onnx-dir GRAPHS_DIR --out ENGINES_DIR"
        )
    return Sidecar.from_json(path.read_text(), str(path))


def check_sidecar(
    sidecar: Sidecar,
    running_trt_version: str,
    running_gpu_name: str,
    running_cc: tuple[int, int],
    onnx_sha256: str,
) -> None:
    """Raise EngineMismatchError unless the engine was built with this TensorRT version (exactly: a
    plan records major, minor, patch and build), for this GPU and compute capability, from the ONNX
    graph whose sha256 is `onnx_sha256` (the graphs folder's record, GraphsFolder.sha256)."""
    running_cc = tuple(running_cc)
    device_differs = (
        sidecar.tensorrt_version != running_trt_version
        or sidecar.gpu_name != running_gpu_name
        or tuple(sidecar.compute_capability) != running_cc
    )
    onnx_differs = sidecar.onnx_sha256 != onnx_sha256
    if not (device_differs or onnx_differs):
        return
    received, expected = [], []
    if device_differs:
        received.append(
            f"an engine built for GPU {sidecar.gpu_name} ({sm_label(sidecar.compute_capability)}) "
            f"with TensorRT {sidecar.tensorrt_version}"
        )
        expected.append(f"this machine's GPU {running_gpu_name} ({sm_label(running_cc)}) and TensorRT {running_trt_version}")
    if onnx_differs:
        received.append(f"{'an engine built ' if not device_differs else ''}from {sidecar.onnx_file} sha256 {sidecar.onnx_sha256[:16]}")
        expected.append(f"{sidecar.onnx_file} sha256 {onnx_sha256[:16]} (the graph changed since the build)")
    raise EngineMismatchError(
        f"{sidecar.engine_file} | received {', '.join(received)}; expected {' and '.join(expected)}. "
        f"Rebuild it with: {sidecar.build_command}"
    )
