"""The four graphs of an exported folder on OpenVINO's CPU plugin, behind the same Backend interface.

OpenVINO reads the ONNX graphs as they are (bool inputs, symbolic axes: compiled with dynamic
shapes). Inputs and outputs are ov.Tensors over the caller's numpy arrays, so the results land in
the session's preallocated buffers without a copy. The inference precision is set explicitly, never
left to the plugin's default (which is BF16 on CPUs that have it): "f32", or "bf16" where the CPU
reports BF16 (AVX512_BF16 or AMX); runtime/precision.py decides which one a session asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from .backend import check_arrays
from .errors import GraphError, InputError, StreamSamError, require
from .manifest import GraphFile, read_manifest

INFERENCE_PRECISIONS = ("f32", "bf16")


def cpu_capabilities() -> list[str]:
    """What OpenVINO reports the CPU can do (e.g. FP32, BF16, INT8, FP16, EXPORT_IMPORT)."""
    ov = require("openvino", "openvino")
    return list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoBackend:
    """OpenVINO on the CPU. `inference_precision`: "f32" (default) or "bf16"; `threads`: OpenVINO's
    inference threads (None: its default, all cores). `files` maps a graph name to another file of
    the folder (the INT8 image encoder: Manifest.int8_graphs), as OnnxRuntimeBackend's does."""

    def __init__(self, onnx_dir: str | Path, inference_precision: str = "f32", threads: int | None = None,
                 files: Mapping[str, GraphFile] | None = None) -> None:
        ov = require("openvino", "openvino")
        if inference_precision not in INFERENCE_PRECISIONS:
            raise InputError(f"inference_precision | received {inference_precision!r}; expected one of {INFERENCE_PRECISIONS}")
        self.onnx_dir = Path(onnx_dir)
        self.manifest = read_manifest(self.onnx_dir)
        self.inference_precision = inference_precision
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": inference_precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        self._requests = {}
        for name, entry in {**self.manifest.graphs, **(files or {})}.items():
            path = self.onnx_dir / entry.file
            if not path.is_file():
                raise StreamSamError(f"{path} | received no file; expected the graph manifest.json lists. Re-export the graphs.")
            compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
            self._requests[name] = compiled.create_infer_request()
        self._contracts = self.manifest.contracts
        self._ov = ov

    def run(self, graph: str, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        contract = self._contracts[graph]
        check_arrays(contract, inputs, "input")
        check_arrays(contract, outputs, "output")
        request = self._requests[graph]
        Tensor = self._ov.Tensor
        try:
            for spec in contract.inputs:
                request.set_tensor(spec.name, Tensor(inputs[spec.name], shared_memory=True))
            for spec in contract.outputs:
                request.set_tensor(spec.name, Tensor(outputs[spec.name], shared_memory=True))
            request.infer()
        except RuntimeError as exc:
            raise GraphError(f"{graph} on OpenVINO | received {type(exc).__name__}: {exc}; expected it to run") from exc

    def close(self) -> None:
        """Drop the compiled graphs (their memory goes with them)."""
        self._requests.clear()

    def __enter__(self) -> "OpenVinoBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
