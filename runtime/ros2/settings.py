"""The node's settings, one frozen dataclass read by both transports: ROS parameters (rclpy, the
launch file's YAML) and command-line options (`python -m streamsam.ros2`) are its fields."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..errors import InputError
from .core import CoreConfig

BACKENDS = ("cpu", "cuda", "tensorrt")


@dataclass(frozen=True)
class NodeSettings:
    model_dir: str = ""  # ONNX graphs from `streamsam export`; empty: the bundled demo model
    engine_dir: str = ""  # TensorRT engines from `streamsam build` (backend tensorrt; their precision is the build's)
    backend: str = "cpu"  # cpu (ONNX Runtime), cuda (ONNX Runtime CUDA), tensorrt
    threads: int = 0  # ONNX Runtime CPU threads; 0: all cores
    max_objects: int = 4
    image_topic: str = "/camera/image_raw"  # Image; CompressedImage on <image_topic>/compressed
    camera_info_topic: str = "/camera/camera_info"
    per_object_masks: bool = False
    prompt_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"backend | received {self.backend!r}; expected one of {', '.join(BACKENDS)}")
        if self.backend == "tensorrt" and not self.engine_dir:
            raise InputError("engine_dir | received none with backend tensorrt; expected the folder `streamsam build` wrote")
        if not 1 <= self.max_objects <= 65535:
            raise InputError(f"max_objects | received {self.max_objects}; expected 1..65535 (the label image is mono16 at most)")
        CoreConfig(prompt_timeout_s=self.prompt_timeout_s)  # validates it

    @classmethod
    def names(cls) -> dict[str, object]:
        """Each setting's name and default: what the rclpy node declares as parameters."""
        return {f.name: f.default for f in fields(cls)}

    def core_config(self) -> CoreConfig:
        return CoreConfig(per_object_masks=self.per_object_masks, prompt_timeout_s=self.prompt_timeout_s)

    def open_tracker(self):
        from .. import StreamTracker
        from ..demo import DEMO_MODEL

        model = self.model_dir or str(DEMO_MODEL)
        if self.backend == "tensorrt":
            from ..device_backends import TensorRTBackend

            backend = TensorRTBackend(self.engine_dir, onnx_dir=self.model_dir or None)
        elif self.backend == "cuda":
            from ..device_backends import OnnxRuntimeCudaBackend

            backend = OnnxRuntimeCudaBackend(model)
        else:
            from ..backend import OnnxRuntimeBackend

            backend = OnnxRuntimeBackend(model, threads=self.threads or None)
        return StreamTracker(backend, max_objects=self.max_objects)
