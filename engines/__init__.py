"""streamsam.engines: ONNX graphs -> TensorRT FP16 engines with a sidecar that pins the GPU and
TensorRT version they were built for. Building needs the [trt] extra and TensorRT itself (JetPack on
a Jetson, NVIDIA's package index on a desktop); profiles, sidecars, names and the FP16 conversion
work without it."""

from .build import build_engines
from .errors import EngineError, EngineMismatchError
from .naming import EngineName, parse_engine_name
from .profiles import GraphProfile, graph_profiles
from .sidecar import Sidecar, check_sidecar, read_sidecar
from .device import running_device

__all__ = [
    "EngineError",
    "EngineMismatchError",
    "EngineName",
    "GraphProfile",
    "Sidecar",
    "build_engines",
    "check_sidecar",
    "graph_profiles",
    "parse_engine_name",
    "read_sidecar",
    "running_device",
]
