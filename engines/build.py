"""`streamsam build`: the four ONNX graphs of an exported folder -> TensorRT engines, each with its
sidecar, built with Polygraphy's loaders (polygraphy/backend/trt/loader.py and config.py):

    NetworkFromOnnxPath(onnx, strongly_typed=...)              the network, parsed from the file
    CreateConfig(fp16=..., profiles=[Profile().add(...)],      the builder config: our profiles,
                 load_timing_cache=..., memory_pool_limits=..., the timing cache, the workspace limit,
                 progress_monitor=...)                          a progress monitor
    SaveEngine(EngineFromNetwork(network, config,               build, save the timing cache back,
               save_timing_cache=...), path)                    write the plan

FP16 on both TensorRT lines (docs/design.md, "Engines"):
- graphs converted to FP16 (precision.json beside the manifest, written by streamsam.engines.fp16)
  build as a strongly typed network: 1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED, "every tensor
  in the network has a data type defined in the network" (TensorRT Python API, Builder). TensorRT
  11.x builds every network strongly typed;
- FP32 graphs build weakly typed with BuilderFlag.FP16 where the running TensorRT still has it:
  deprecated from 10.12 with weak typing, removed in 11.x ("BuilderFlag.FP16 -> strong typing", the
  10.x-to-11.x Python API migration guide). On 11.x FP32 graphs need the FP16 conversion first.
Features are detected with hasattr on the running module, never by version number.

This module imports TensorRT, Polygraphy and cuda-python only inside build_engines. It is written to
the documented APIs and has not run in streamsam's CI, which has neither TensorRT nor a GPU.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from streamsam.contracts import GRAPH_NAMES, GraphContract
from streamsam.errors import require
from streamsam.version import __version__

from .device import import_tensorrt, running_device
from .errors import EngineError
from .graphs_folder import GraphsFolder, read_graphs_folder, verify_graph_file
from .naming import EngineName, sm_label, timing_cache_name
from .profiles import DEFAULT_MAX_OBJECTS, DEFAULT_MAX_POINTS, DEFAULT_MAX_STREAMS, GraphProfile, graph_profiles
from .progress import PhaseLog, progress_monitor
from .sidecar import Sidecar, write_sidecar

PRECISION_CHOICES = ("fp16", "fp32")
ENGINES_INDEX = "engines.json"  # in the engines folder: the last build's engine per graph
WEAK_FP16_DEPRECATED_FROM = (10, 12)


@dataclass(frozen=True)
class BuildPrecision:
    """How a requested precision is built with the running TensorRT."""

    name: str  # the sidecar's precision: fp16-strongly-typed, fp16 or fp32
    strongly_typed: bool  # set NetworkDefinitionCreationFlag.STRONGLY_TYPED (where the flag exists)
    fp16_flag: bool  # BuilderFlag.FP16 (weakly typed)

    @property
    def tag(self) -> str:
        """fp16 or fp32, as engine names say it."""
        return "fp16" if self.name.startswith("fp16") else "fp32"


def tensorrt_features(trt) -> tuple[bool, bool]:
    """(strongly typed networks, the weakly typed FP16 builder flag) in the running TensorRT."""
    return hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"), hasattr(trt.BuilderFlag, "FP16")


def resolve_precision(
    requested: str,
    graphs_precision: str,
    tensorrt_version: str,
    has_strongly_typed: bool,
    has_fp16_flag: bool,
) -> BuildPrecision:
    """The build for `requested` (fp16 or fp32) from graphs of `graphs_precision` (the folder's
    precision.json, fp32 without one) with a TensorRT that has these features."""
    if requested not in PRECISION_CHOICES:
        raise EngineError(f"precision | received {requested!r}; expected one of {list(PRECISION_CHOICES)}")
    if graphs_precision == "fp16":
        if requested == "fp32":
            raise EngineError(
                "precision | received fp32 for graphs converted to FP16 (precision.json); expected the FP32 "
                "export folder for an FP32 engine. Pass that folder, or build with --precision fp16."
            )
        # A TensorRT without the weakly typed FP16 flag builds every network strongly typed, flag or not.
        if not (has_strongly_typed or not has_fp16_flag):
            raise EngineError(
                f"TensorRT {tensorrt_version} | received a TensorRT without strongly typed networks "
                "(NetworkDefinitionCreationFlag.STRONGLY_TYPED); expected TensorRT 10 or newer for FP16 "
                "graphs. Upgrade TensorRT (JetPack 6 has 10.3)."
            )
        return BuildPrecision("fp16-strongly-typed", strongly_typed=has_strongly_typed, fp16_flag=False)
    if requested == "fp32":
        # Strongly typed FP32 graphs are FP32 throughout; TensorRT 11 builds nothing else.
        return BuildPrecision("fp32", strongly_typed=has_strongly_typed, fp16_flag=False)
    if not has_fp16_flag:
        raise EngineError(
            f"TensorRT {tensorrt_version} | received FP32 graphs (no precision.json) for an FP16 engine and a "
            "TensorRT without BuilderFlag.FP16 (removed in 11.x: networks are strongly typed, each tensor "
            "keeps the graph's type); expected graphs converted to FP16. Convert them with "
            "streamsam.engines.fp16.convert_folder(GRAPHS_DIR, FP16_DIR) and build from FP16_DIR, or build "
            "FP32 with --precision fp32."
        )
    return BuildPrecision("fp16", strongly_typed=False, fp16_flag=True)


def build_command(
    onnx_dir: str | Path,
    out_dir: str | Path,
    max_objects: int,
    max_points: int,
    precision: str,
    workspace_gb: float | None = None,
    timing_cache: str | Path | None = None,
    max_streams: int = DEFAULT_MAX_STREAMS,
) -> str:
    """The `streamsam build` line that repeats a build (absolute paths, every option spelled out)."""
    words = [
        "streamsam", "build",
        "--onnx-dir", str(Path(onnx_dir).resolve()),
        "--out", str(Path(out_dir).resolve()),
        "--max-objects", str(max_objects),
        "--max-points", str(max_points),
        "--precision", precision,
    ]  # fmt: skip
    if max_streams != DEFAULT_MAX_STREAMS:
        words += ["--max-streams", str(max_streams)]
    if workspace_gb is not None:
        words += ["--workspace-gb", f"{workspace_gb:g}"]
    if timing_cache is not None:
        words += ["--timing-cache", str(Path(timing_cache).resolve())]
    return shlex.join(words)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def _check_engine_io(trt, engine, contract: GraphContract, path: Path) -> None:
    """The built engine's I/O tensors are the contract's (ICudaEngine.num_io_tensors, get_tensor_name,
    get_tensor_mode): the device runtime binds them by these names."""
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = sorted(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    outputs = sorted(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    if (inputs, outputs) != (sorted(contract.input_names), sorted(contract.output_names)):
        raise EngineError(
            f"{path.name} | received an engine with inputs {inputs} and outputs {outputs}; expected "
            f"{sorted(contract.input_names)} and {sorted(contract.output_names)} (streamsam.contracts)"
        )


def _build_engine(trt, onnx_path: Path, profile: GraphProfile, precision: BuildPrecision, timing_cache: Path, workspace_gb: float | None, path: Path, log: PhaseLog):
    """One engine through Polygraphy's loaders, written to `path` via a temporary file."""
    polygraphy_trt = require("polygraphy.backend.trt", "trt")
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    monitor = progress_monitor(trt, log)
    pools = None if workspace_gb is None else {trt.MemoryPoolType.WORKSPACE: int(workspace_gb * (1 << 30))}
    network = polygraphy_trt.NetworkFromOnnxPath(str(onnx_path), strongly_typed=precision.strongly_typed)
    config = polygraphy_trt.CreateConfig(
        fp16=precision.fp16_flag,
        profiles=[profile.to_polygraphy()],
        # The cache grows with each engine (save_timing_cache below); the first build starts without one.
        load_timing_cache=str(timing_cache) if timing_cache.is_file() else None,
        memory_pool_limits=pools,
        progress_monitor=monitor,
    )
    partial = path.with_name(path.name + ".partial")
    try:
        with G_LOGGER.verbosity(G_LOGGER.WARNING):
            engine = polygraphy_trt.SaveEngine(
                polygraphy_trt.EngineFromNetwork(network, config, save_timing_cache=str(timing_cache)), str(partial)
            )()
    except PolygraphyException as exc:
        partial.unlink(missing_ok=True)
        cancelled = " (cancelled)" if log.cancelled else ""
        raise EngineError(
            f"{onnx_path.name} | received a build failure from TensorRT {trt.__version__}{cancelled}: {exc}; "
            "expected an engine. TensorRT's messages above say which layer."
        ) from exc
    os.replace(partial, path)
    return engine


def build_engines(
    onnx_dir: str | Path,
    out_dir: str | Path,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_points: int = DEFAULT_MAX_POINTS,
    workspace_gb: float | None = None,
    precision: str = "fp16",
    timing_cache: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
    max_streams: int = DEFAULT_MAX_STREAMS,
) -> dict[str, Path]:
    """Build the four engines of `onnx_dir` into `out_dir` for the GPU this runs on (CUDA device 0;
    choose another with CUDA_VISIBLE_DEVICES) and return graph -> engine path.

    `max_objects` / `max_points` / `max_streams` bound the profiles (streamsam.engines.profiles; a
    MultiStreamTracker of S streams of k objects needs max_streams >= S and max_objects >= S x k); `workspace_gb` caps
    TensorRT's workspace pool (None: TensorRT's default, the device's memory); `timing_cache` defaults
    to a file in `out_dir` named for the GPU and TensorRT version, kept between builds.
    """
    if precision not in PRECISION_CHOICES:
        raise EngineError(f"precision | received {precision!r}; expected one of {list(PRECISION_CHOICES)}")
    if workspace_gb is not None and not workspace_gb > 0:
        raise EngineError(f"workspace_gb | received {workspace_gb!r}; expected a positive number of GiB, or None")
    folder = read_graphs_folder(onnx_dir)
    profiles = graph_profiles(folder.manifest.dims, max_objects, max_points, max_streams=max_streams)
    # The folder is checked before TensorRT is needed: a changed file fails here, on any machine.
    onnx_sha256 = {graph: verify_graph_file(folder, graph) for graph in GRAPH_NAMES}

    trt = import_tensorrt()
    require("polygraphy.backend.trt", "trt")
    device = running_device(0)
    plan = resolve_precision(precision, folder.precision, trt.__version__, *tensorrt_features(trt))
    say = progress or (lambda line: None)
    if plan.fp16_flag and _version_tuple(trt.__version__) >= WEAK_FP16_DEPRECATED_FROM:
        say(
            f"note: TensorRT {trt.__version__} deprecates weakly typed FP16 (BuilderFlag.FP16); convert the "
            "graphs with streamsam.engines.fp16.convert_folder for a strongly typed build"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(timing_cache) if timing_cache is not None else out / timing_cache_name(device.compute_capability, trt.__version__)
    cache.parent.mkdir(parents=True, exist_ok=True)
    command = build_command(folder.path, out, max_objects, max_points, precision, workspace_gb, timing_cache, max_streams)
    say(
        f"building {folder.model}-{folder.manifest.dims.image_size} {plan.name} engines for {device.name} "
        f"({sm_label(device.compute_capability)}) with TensorRT {trt.__version__}; "
        f"timing cache {cache}"
    )
    contracts = folder.manifest.contracts
    engines: dict[str, Path] = {}
    for index, graph in enumerate(GRAPH_NAMES, start=1):
        name = EngineName.for_graph(
            contracts[graph], folder.model, folder.manifest.dims.image_size, plan.tag, max_objects, max_points,
            device.compute_capability, trt.__version__,
        )  # fmt: skip
        path = out / name.filename
        start = time.perf_counter()
        log = PhaseLog(f"[{index}/4] {graph}: ", write=say)
        engine = _build_engine(trt, folder.onnx_path(graph), profiles[graph], plan, cache, workspace_gb, path, log)
        _check_engine_io(trt, engine, contracts[graph], path)
        del engine
        write_sidecar(
            Sidecar(
                engine_file=path.name,
                graph=graph,
                model=folder.model,
                image_size=folder.manifest.dims.image_size,
                precision=plan.name,
                max_objects=max_objects,
                max_points=max_points,
                max_streams=max_streams,
                profiles=[profiles[graph].to_json()],
                onnx_file=folder.files[graph],
                onnx_sha256=onnx_sha256[graph],
                tensorrt_version=trt.__version__,
                gpu_name=device.name,
                compute_capability=device.compute_capability,
                streamsam_version=__version__,
                build_date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                build_command=command,
            ),
            path,
        )
        engines[graph] = path
        say(f"[{index}/4] {graph}: {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s -> {path}")
    write_engines_index(out, folder, engines, command)
    return engines


def write_engines_index(out_dir: Path, folder: GraphsFolder, engines: dict[str, Path], command: str) -> Path:
    """engines.json: which engine file the last build wrote for each graph (CMake's output, and where a
    loader starts; each engine's sidecar is what it checks)."""
    path = out_dir / ENGINES_INDEX
    data = {
        "format_version": 1,
        "onnx_dir": str(folder.path.resolve()),
        "engines": {graph: p.name for graph, p in engines.items()},
        "build_command": command,
    }
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path
