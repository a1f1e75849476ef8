"""streamsam: SAM 2 / SAM 2.1 promptable segmentation on live video.

`import streamsam` is the lean runtime: numpy and the standard library only. Exporting
(`streamsam.export`, needs torch) and engine building (`streamsam.engines`, needs TensorRT) are
subpackages with their own optional dependencies.
"""

from .backend import Backend, OnnxRuntimeBackend
from .device_backends import OnnxRuntimeCudaBackend, TensorRTBackend  # cuda-python is imported when one opens
from .contracts import GRAPH_NAMES, GraphContract, ModelDims, TensorSpec, graph_contracts
from .errors import CheckpointError, DeviceLostError, ExportError, GraphError, InputError, MissingDependencyError, StreamSamError
from .image_predictor import ImagePredictor
from .multi_stream import MultiStreamTracker, StreamState
from .results import FrameResult
from .stream_tracker import StreamTracker
from .video_predictor import VideoPredictor

from .version import __version__

__all__ = [
    "Backend",
    "FrameResult",
    "ImagePredictor",
    "OnnxRuntimeBackend",
    "OnnxRuntimeCudaBackend",
    "TensorRTBackend",
    "StreamTracker",
    "MultiStreamTracker",
    "StreamState",
    "VideoPredictor",
    "GRAPH_NAMES",
    "CheckpointError",
    "DeviceLostError",
    "ExportError",
    "GraphError",
    "InputError",
    "GraphContract",
    "MissingDependencyError",
    "ModelDims",
    "StreamSamError",
    "TensorSpec",
    "graph_contracts",
]
