"""Device backends: the four graphs over an arena's buffers (arena.py), on one stream shared with
the copies.

    backend = OnnxRuntimeCudaBackend("graphs/tiny")        # ONNX Runtime's CUDA execution provider
    backend = TensorRTBackend("engines/tiny")              # engines from `streamsam build`
    tracker = StreamTracker(backend, max_objects=4)        # the same sessions as on the CPU

Both implement the Backend protocol (runtime/backend.py) with DeviceArrays in place of numpy
arrays, and own the arena the session allocates its buffers from. `close()` (or `with`) frees it.
`OnnxRuntimeArenaBackend` is the I/O binding itself, over any arena: the CUDA backend is it on a
DeviceArena with the CUDA provider, and CI runs it on a HostArena with the CPU provider, so every
line of the device path but the CUDA calls (cuda_memory.py) and TensorRT's runs there.

Written to the documented APIs (ONNX Runtime I/O binding, TensorRT 10/11's IExecutionContext,
cuda-python); streamsam's CI has no GPU and TensorRT cannot be installed there: the `gpu` tests
(tests/test_device_path.py) are what a lent GPU runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .arena import Arena, DeviceArena, DeviceArray
from .backend import check_arrays
from .errors import GraphError, StreamSamError, require
from .manifest import read_manifest
from .pipeline import SLOT_POLICIES

DEFAULT_MAX_POINTS = 16  # as streamsam.engines.profiles: a box and 14 clicks on one object
ORT_GPU_MISSING = (
    "ONNX Runtime providers | received {available}; expected CUDAExecutionProvider. Install onnxruntime-gpu "
    "(pip install 'streamsam[ort-gpu]'; uninstall the CPU-only onnxruntime first: both provide the same module)"
)


class OnnxRuntimeArenaBackend:
    """The exported graphs on ONNX Runtime, bound to an arena's buffers by pointer (I/O binding):
    nothing is copied in or out by ONNX Runtime. `providers` run the graphs where the arena's memory
    is (the CPU provider for a HostArena). `slot_policy` is what the pipeline passes memory attention
    (pipeline.SLOT_POLICIES). The backend owns the arena: close() frees it."""

    max_objects = None  # no profile: any number of objects runs

    def __init__(self, onnx_dir: str | Path, arena: Arena, providers: Sequence = ("CPUExecutionProvider",),
                 max_points: int = DEFAULT_MAX_POINTS, slot_policy: str = "filled", run_options=None) -> None:
        ort = require("onnxruntime", "ort")
        if slot_policy not in SLOT_POLICIES:
            raise StreamSamError(f"slot_policy | received {slot_policy!r}; expected one of {SLOT_POLICIES}")
        self.onnx_dir = Path(onnx_dir)
        self.arena, self.max_points, self.slot_policy = arena, max_points, slot_policy
        self._run_options = run_options
        self._sessions = {}
        try:
            self.manifest = read_manifest(self.onnx_dir)
            self._contracts = self.manifest.contracts
            for name, entry in self.manifest.graphs.items():
                path = self.onnx_dir / entry.file
                if not path.is_file():
                    raise StreamSamError(f"{path} | received no file; expected the {name} graph manifest.json names. Re-export the graphs.")
                self._sessions[name] = ort.InferenceSession(str(path), ort.SessionOptions(), providers=list(providers))
        except BaseException:
            self.arena.close()  # what was allocated goes back before the error does
            raise

    def run(self, graph: str, inputs: Mapping[str, DeviceArray], outputs: Mapping[str, DeviceArray]) -> None:
        contract = self._contracts[graph]
        check_arrays(contract, inputs, "input")
        check_arrays(contract, outputs, "output")
        binding = self._sessions[graph].io_binding()
        where, device = self.arena.ort_device, self.arena.device_id
        for spec in contract.inputs:
            a = inputs[spec.name]
            binding.bind_input(spec.name, where, device, a.dtype.type, list(a.shape), a.ptr)
        for spec in contract.outputs:
            a = outputs[spec.name]
            binding.bind_output(spec.name, where, device, a.dtype.type, list(a.shape), a.ptr)
        self._sessions[graph].run_with_iobinding(binding, self._run_options)

    def close(self) -> None:
        self._sessions.clear()
        self.arena.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class OnnxRuntimeCudaBackend(OnnxRuntimeArenaBackend):
    """The exported graphs on ONNX Runtime's CUDA execution provider. ONNX Runtime runs on the
    arena's stream (provider option user_compute_stream) and does not synchronize after a run (run
    option disable_synchronize_execution_providers), so graphs, copies and the rounding kernel are
    ordered by the stream alone."""

    def __init__(self, onnx_dir: str | Path, device_id: int = 0, max_points: int = DEFAULT_MAX_POINTS) -> None:
        ort = require("onnxruntime", "ort-gpu")
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise StreamSamError(ORT_GPU_MISSING.format(available=available))
        arena = DeviceArena(device_id)
        provider = ("CUDAExecutionProvider", {"device_id": str(device_id), "user_compute_stream": str(arena.stream_handle)})
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
        super().__init__(onnx_dir, arena, [provider], max_points, run_options=run_options)


def checked_engine_files(engine_dir: str | Path, onnx_dir: str | Path | None, tensorrt_version: str, device) -> tuple[object, dict[str, Path], dict[str, object]]:
    """What TensorRTBackend checks before it deserializes anything: engines.json names one engine
    per graph, each engine's sidecar matches the running TensorRT version and GPU (`device`, from
    streamsam.engines.running_device) and the graphs folder's ONNX records, and all four share one
    objects profile. Returns (graphs folder, engine paths, sidecars) by graph."""
    from streamsam.contracts import GRAPH_NAMES
    from streamsam.engines.build import ENGINES_INDEX
    from streamsam.engines.errors import EngineError
    from streamsam.engines.graphs_folder import read_graphs_folder
    from streamsam.engines.sidecar import check_sidecar, read_sidecar

    engine_dir = Path(engine_dir)
    index_path = engine_dir / ENGINES_INDEX
    if not index_path.is_file():
        raise EngineError(
            f"{engine_dir} | received a folder without {ENGINES_INDEX}; expected the engines folder `streamsam build` "
            "writes. Build it with: streamsam build --onnx-dir GRAPHS_DIR --out ENGINES_DIR"
        )
    index = json.loads(index_path.read_text())
    folder = read_graphs_folder(onnx_dir if onnx_dir is not None else index["onnx_dir"])
    missing = [g for g in GRAPH_NAMES if g not in index.get("engines", {})]
    if missing:
        raise EngineError(f"{index_path} | received engines for {sorted(index.get('engines', {}))}; expected also {missing}. Rebuild with: {index.get('build_command')}")
    paths = {g: engine_dir / index["engines"][g] for g in GRAPH_NAMES}
    sidecars = {g: read_sidecar(p) for g, p in paths.items()}
    for graph, sidecar in sidecars.items():
        check_sidecar(sidecar, tensorrt_version, device.name, device.compute_capability, folder.sha256[graph])
    counts = {s.max_objects for s in sidecars.values()}
    if len(counts) != 1:
        raise EngineError(f"{engine_dir} | received engines built for max_objects {sorted(counts)}; expected one build. Rebuild with: {index.get('build_command')}")
    return folder, paths, sidecars


class TensorRTBackend:
    """Engines from `streamsam build`, each checked against its sidecar before it is deserialized.
    Per run: set_input_shape for every input (the objects and points axes change with the rows and
    the prompt), set_tensor_address for every input and output (the session's device buffers), then
    execute_async_v3 on the arena's stream. The engines' slot axes are static at the bank's
    capacity (engines/profiles.py): the pipeline passes whole rings ("capacity")."""

    slot_policy = "capacity"

    def __init__(self, engine_dir: str | Path, onnx_dir: str | Path | None = None, device_id: int = 0) -> None:
        from streamsam.engines.device import import_tensorrt, running_device

        trt = import_tensorrt()
        folder, paths, sidecars = checked_engine_files(engine_dir, onnx_dir, trt.__version__, running_device(device_id))
        self.manifest = folder.manifest
        self.max_objects = sidecars["memory_attention"].max_objects
        self.max_points = sidecars["mask_decoder"].max_points
        self.max_frames = sidecars["image_encoder"].max_streams
        self._contracts = self.manifest.contracts
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engines, self._contexts = {}, {}
        self.arena = DeviceArena(device_id)
        try:
            self._load(trt, paths, sidecars)
        except BaseException:
            self.arena.close()
            raise

    def _load(self, trt, paths: dict[str, Path], sidecars: dict) -> None:
        from streamsam.engines.errors import EngineError

        for graph, path in paths.items():
            engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise EngineError(f"{path} | received None from deserialize_cuda_engine (TensorRT's log above says why); expected an engine. Rebuild with: {sidecars[graph].build_command}")
            self._check_io(trt, engine, graph, path)
            context = engine.create_execution_context()
            if context is None:
                raise EngineError(f"{path} | received None from create_execution_context; expected a context (device memory is short?)")
            self._engines[graph], self._contexts[graph] = engine, context

    def _check_io(self, trt, engine, graph: str, path: Path) -> None:
        from streamsam.engines.errors import EngineError

        contract = self._contracts[graph]
        expected = {s.name: ("input", s.dtype) for s in contract.inputs} | {s.name: ("output", s.dtype) for s in contract.outputs}
        found = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
            found[name] = (mode, np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name)
        if found != expected:
            raise EngineError(f"{path} | received I/O {found}; expected {expected} (streamsam.contracts). Rebuild the engine.")

    def run(self, graph: str, inputs: Mapping[str, DeviceArray], outputs: Mapping[str, DeviceArray]) -> None:
        contract = self._contracts[graph]
        check_arrays(contract, inputs, "input")
        check_arrays(contract, outputs, "output")
        context = self._contexts[graph]
        for spec in contract.inputs:
            a = inputs[spec.name]
            if not context.set_input_shape(spec.name, a.shape):
                raise GraphError(f"{graph}.{spec.name} | received shape {list(a.shape)}; expected a shape in the engine's profile (set_input_shape refused it)")
            self._bind(context, graph, spec.name, a.ptr)
        for spec in contract.outputs:
            self._bind(context, graph, spec.name, outputs[spec.name].ptr)
        if not context.execute_async_v3(self.arena.stream_handle):
            raise GraphError(f"{graph} | received False from execute_async_v3 (TensorRT's log says why); expected the graph enqueued")

    @staticmethod
    def _bind(context, graph: str, name: str, ptr: int) -> None:
        if not context.set_tensor_address(name, ptr):
            raise GraphError(f"{graph}.{name} | received False from set_tensor_address(0x{ptr:x}); expected the address bound (TensorRT's log says why)")

    def close(self) -> None:
        self.arena.synchronize()
        self._contexts.clear()
        self._engines.clear()
        self.arena.close()

    def __enter__(self) -> "TensorRTBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
