"""TensorRT and the running GPU, imported only when asked for.

TensorRT does not come from PyPI proper: on a Jetson it is JetPack's system package, on a desktop
the `tensorrt` wheel on PyPI is a placeholder that downloads the real one from NVIDIA's index. The
GPU's name and compute capability come from cuda-python (cudaGetDeviceProperties).
"""

from __future__ import annotations

from dataclasses import dataclass

from streamsam.errors import MissingDependencyError

from .errors import EngineError

TENSORRT_MISSING = (
    "tensorrt | received ImportError ({error}); expected TensorRT's Python package. TensorRT is not "
    "installed: on a Jetson use JetPack's system TensorRT (sudo apt install python3-libnvinfer, in a "
    "virtual environment made with --system-site-packages); on a desktop `pip install tensorrt`, which "
    "fetches the real wheel from NVIDIA's package index (pypi.nvidia.com). streamsam's CI cannot run "
    "this path: it has neither TensorRT nor a GPU."
)


def import_tensorrt():
    """The `tensorrt` module, or MissingDependencyError saying where TensorRT comes from."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(TENSORRT_MISSING.format(error=exc)) from exc
    return tensorrt


@dataclass(frozen=True)
class Device:
    index: int
    name: str  # e.g. "Orin" or "NVIDIA H100 80GB HBM3"
    compute_capability: tuple[int, int]


def running_device(index: int = 0) -> Device:
    """Name and compute capability of CUDA device `index` (cudaGetDeviceProperties)."""
    from streamsam.cuda_memory import import_cuda  # one cuda-python import for the runtime and the builder

    cudart = import_cuda()[0]
    err, props = cudart.cudaGetDeviceProperties(index)
    if err != cudart.cudaError_t.cudaSuccess:
        _, text = cudart.cudaGetErrorString(err)
        text = text.decode() if isinstance(text, bytes) else str(text)
        raise EngineError(
            f"CUDA device {index} | received {err.name} ({text}) from cudaGetDeviceProperties; expected an "
            "NVIDIA GPU with a working driver. Engines are built on the GPU that will run them."
        )
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return Device(index, name.split("\x00", 1)[0].strip(), (int(props.major), int(props.minor)))
