"""Which backend and graphs a precision means, checked before anything is opened: reduced precision
is a choice a user makes, and a choice the machine cannot honour is an error, never a silent FP32.

    fp32  ONNX Runtime (default) or OpenVINO, FP32 throughout
    int8  the image encoder's INT8 graph (`streamsam quantize`), the other graphs FP32
    bf16  OpenVINO with BF16 inference precision, on CPUs with AVX512_BF16 or AMX
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, require
from .manifest import GraphFile, read_manifest

PRECISIONS = ("fp32", "int8", "bf16")
BACKENDS = ("onnxruntime", "openvino")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo names of what OpenVINO's BF16 kernels need


@dataclass(frozen=True)
class BackendChoice:
    backend: str  # one of BACKENDS
    inference_precision: str  # "f32" or "bf16" (OpenVINO's hint)
    files: dict[str, GraphFile]  # graphs replaced by a variant (the INT8 image encoder)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is missing)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def check_bf16_cpu() -> None:
    """BF16 runs only where OpenVINO reports it (AVX512_BF16 or AMX): say what the CPU has instead."""
    from .openvino_backend import cpu_capabilities

    capabilities = cpu_capabilities()
    if "BF16" in capabilities:
        return
    flags = cpu_flags()
    vector = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", *BF16_CPU_FLAGS) if f in flags]
    raise InputError(
        f"precision | received 'bf16'; expected a CPU with {' or '.join(BF16_CPU_FLAGS)}, and this one has "
        f"{', '.join(vector) or 'none of the AVX flags'} (OpenVINO reports {', '.join(capabilities)}). "
        "Choose precision='fp32' (--precision fp32), or 'int8' for the image encoder (`streamsam quantize`)"
    )


def choose(onnx_dir: str | Path, precision: str = "fp32", backend: str | None = None) -> BackendChoice:
    """Check a precision and backend against the folder and this machine; raises InputError (or
    MissingDependencyError for OpenVINO not installed) before any graph is loaded."""
    if precision not in PRECISIONS:
        raise InputError(f"precision | received {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"backend | received {backend!r}; expected one of {', '.join(BACKENDS)}")
    if precision == "bf16" and backend == "onnxruntime":
        raise InputError("precision | received 'bf16' with backend 'onnxruntime'; expected backend 'openvino' "
                         "(ONNX Runtime's CPU provider has no BF16 kernels). Choose backend='openvino' (--backend openvino)")
    backend = backend or ("openvino" if precision == "bf16" else "onnxruntime")
    if backend == "openvino":
        require("openvino", "openvino")
    if precision == "bf16":
        check_bf16_cpu()
    files = {}
    if precision == "int8":
        int8 = read_manifest(onnx_dir).int8_graphs
        if not int8:
            raise InputError(
                f"precision | received 'int8' for {onnx_dir}, which has no INT8 graphs in manifest.json; expected them "
                f"written once by `streamsam quantize --onnx-dir {onnx_dir}`"
            )
        files = dict(int8)
    return BackendChoice(backend, "bf16" if precision == "bf16" else "f32", files)
