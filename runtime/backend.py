"""Backends run a graph by name over named arrays, writing into buffers the caller allocated once.

The interface is the same for every backend: `run(graph, inputs, outputs)` where `outputs` are
preallocated arrays (or, for a device backend, device buffers) that the backend fills in place, so a
session allocates nothing per frame. ONNX Runtime is the default: CPU, and its CUDA or TensorRT
execution providers where an onnxruntime build has them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from .contracts import GraphContract
from .errors import InputError, StreamSamError, require
from .manifest import GraphFile, Manifest, read_manifest


class Backend(Protocol):
    """What sessions need from a backend."""

    manifest: Manifest

    def run(self, graph: str, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        """Run `graph`; every output named in the contract is written into `outputs[name]`."""
        ...


def check_arrays(contract: GraphContract, arrays: Mapping[str, np.ndarray], io: str) -> None:
    """Names, dtypes and ranks against the contract: a wrong buffer fails here, not deep in a kernel.
    Numpy arrays and cuda_memory.DeviceArrays alike (both have dtype, ndim and shape)."""
    specs = contract.inputs if io == "input" else contract.outputs
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise StreamSamError(f"{contract.name} | received {io}s {sorted(arrays)}; expected also {missing}")
    for spec in specs:
        array = arrays[spec.name]
        fixed_ok = all(isinstance(a, str) or a == n for a, n in zip(spec.shape, array.shape))
        if array.dtype != np.dtype(spec.dtype) or array.ndim != len(spec.shape) or not fixed_ok:
            raise StreamSamError(
                f"{contract.name}.{spec.name} | received {array.dtype} {array.shape}; expected {spec.dtype} {spec.shape}"
            )
        if isinstance(array, np.ndarray) and not array.flags.c_contiguous:  # device arrays are contiguous by construction
            raise StreamSamError(f"{contract.name}.{spec.name} | received a non-contiguous array; expected C-contiguous")


def as_backend(graphs, precision: str = "fp32") -> tuple[Backend, bool]:
    """A session's backend: the one passed in (its owner closes it), or `open_backend` over a folder
    written by `streamsam export` (the session closes it). Returns (backend, owned)."""
    if hasattr(graphs, "run"):
        if precision != "fp32":
            raise InputError(f"precision | received {precision!r} with a Backend passed in; expected a graphs folder "
                             "(or open the backend with open_backend(folder, precision=...))")
        return graphs, False
    return open_backend(graphs, precision), True


_shared_cpu_arena = False


def cpu_memory_options(ort, options) -> None:
    """Hold a frame's working memory once, not once per graph and input shape.

    - One CPU arena for all sessions of the process (ONNX Runtime's environment allocator): a frame
      runs its graphs one after another, so the image encoder's activations and memory attention's
      matrices can take turns in the same memory instead of each session keeping its own peak.
    - No memory patterns: ONNX Runtime plans one block per distinct set of input shapes and keeps
      every one; memory attention sees a new shape at each fill level and object count, so the
      blocks pile up. tiny at 1024: 2.4 GB resident without these two, 1.2 GB with them, at the same
      speed (benchmarks/results/ort_memory_*.md).
    """
    global _shared_cpu_arena
    if not _shared_cpu_arena:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({}))
        _shared_cpu_arena = True
    options.add_session_config_entry("session.use_env_allocators", "1")
    options.enable_mem_pattern = False


def cpu_thread_options(options) -> None:
    """No spinning between calls. Each of the four sessions owns an intra-op thread pool, and by
    default a pool's threads spin for a while after each op waiting for more work: when a frame moves
    on to the next graph, the last graph's threads keep spinning on the cores the next one needs.
    tiny at 512, two threads on two cores: 1005-1026 ms per frame spinning, 842-862 without (the
    mask decoder 32 -> 13 ms, the memory encoder 62 -> 26 ms, the big graphs 9-13 % faster). One
    thread has no pool threads to spin."""
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")


class OnnxRuntimeBackend:
    """The four graphs of an exported folder on ONNX Runtime.

    `providers` defaults to the CPU; pass e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"] with
    onnxruntime-gpu. `threads` sets intra-op threads (None: ONNX Runtime's default, all cores).
    `files` replaces some graphs' manifest entries (the INT8 image encoder: Manifest.int8_graphs).
    `lean_memory` (CPU only): one arena for all sessions and no memory patterns (cpu_memory_options);
    False keeps ONNX Runtime's own defaults, for comparison (benchmarks/ort_memory.py). On the CPU the
    sessions' thread pools never spin between calls (cpu_thread_options).
    """

    def __init__(self, onnx_dir: str | Path, providers: Sequence[str] | None = None, threads: int | None = None,
                 files: Mapping[str, GraphFile] | None = None, lean_memory: bool = True) -> None:
        ort = require("onnxruntime", "ort")
        self.onnx_dir = Path(onnx_dir)
        self.manifest = read_manifest(self.onnx_dir)
        self.providers = list(providers or ["CPUExecutionProvider"])
        available = ort.get_available_providers()
        unknown = [p for p in self.providers if p not in available]
        if unknown:
            raise StreamSamError(
                f"ONNX Runtime providers | received {unknown}; expected some of {available}. "
                "For CUDA install onnxruntime-gpu (pip install 'streamsam[ort-gpu]')."
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        if self.providers == ["CPUExecutionProvider"]:
            cpu_thread_options(options)
            if lean_memory:
                cpu_memory_options(ort, options)
        self._sessions = {}
        for name, entry in {**self.manifest.graphs, **(files or {})}.items():
            path = self.onnx_dir / entry.file
            if not path.is_file() or path.stat().st_size != entry.size_bytes:
                raise StreamSamError(
                    f"{path} | received {'no file' if not path.is_file() else f'{path.stat().st_size} bytes'}; "
                    f"expected {entry.size_bytes} bytes as manifest.json says. Re-export the graphs."
                )
            self._sessions[name] = ort.InferenceSession(str(path), options, providers=self.providers)
        self._contracts = self.manifest.contracts

    def run(self, graph: str, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        contract = self._contracts[graph]
        check_arrays(contract, inputs, "input")
        check_arrays(contract, outputs, "output")
        session = self._sessions[graph]
        binding = session.io_binding()
        for spec in contract.inputs:
            binding.bind_cpu_input(spec.name, inputs[spec.name])
        for spec in contract.outputs:
            out = outputs[spec.name]
            binding.bind_output(spec.name, "cpu", 0, out.dtype, list(out.shape), out.ctypes.data)
        session.run_with_iobinding(binding)

    def close(self) -> None:
        """Drop the ONNX Runtime sessions (their memory goes with them)."""
        self._sessions.clear()

    def __enter__(self) -> "OnnxRuntimeBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_backend(graphs: str | Path, precision: str = "fp32", backend: str | None = None, threads: int | None = None) -> Backend:
    """The one place a precision becomes a backend and its graphs (runtime/precision.py says which):
    "fp32" (default) on ONNX Runtime, "int8" (the INT8 image encoder), "bf16" (OpenVINO). `backend`:
    "onnxruntime" or "openvino" (None: ONNX Runtime, OpenVINO for bf16)."""
    from .precision import choose

    choice = choose(graphs, precision, backend)
    if choice.backend == "openvino":
        from .openvino_backend import OpenVinoBackend

        return OpenVinoBackend(graphs, choice.inference_precision, threads=threads, files=choice.files)
    return OnnxRuntimeBackend(graphs, threads=threads, files=choice.files)
