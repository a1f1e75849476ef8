"""The streamsam node on rclpy, for machines with ROS 2 (Jazzy or later).

Thin on purpose: messages travel as CDR bytes (raw subscriptions, serialised publishes and service
messages) through streamsam.ros2.codec, and the tracking is streamsam.ros2.core.NodeCore, the same
lines the Zenoh transport runs (and its tests cover). Written to rclpy's documented API; it has not
run here (no ROS 2 install where streamsam is built): see docs/ros2.md.

    ros2 launch streamsam_ros streamsam.launch.py params_file:=my.yaml
"""

from __future__ import annotations

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from streamsam_msgs.msg import Segmentation
from streamsam_msgs.srv import AddObjects, RemoveObject
from vision_msgs.msg import Detection2DArray

from streamsam.errors import StreamSamError
from streamsam.ros2 import NodeCore, codec, types
from streamsam.ros2.settings import NodeSettings

# Camera images: sensor-data QoS with depth 1 (the newest frame is all the node wants).
SENSOR = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
OUTPUT = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)


class StreamSamNode(Node):
    def __init__(self) -> None:
        super().__init__("streamsam")
        settings = NodeSettings(**{name: self.declare_parameter(name, default).value for name, default in NodeSettings.names().items()})
        self._segmentation = self.create_publisher(Segmentation, "~/segmentation", OUTPUT)
        self._detections = self.create_publisher(Detection2DArray, "~/detections", OUTPUT)
        self._camera_info_out = self.create_publisher(CameraInfo, "~/camera_info", OUTPUT)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._camera_info: bytes | None = None
        self.core = NodeCore(settings.open_tracker(), self._publish, self._publish_status, settings.core_config())
        images = MutuallyExclusiveCallbackGroup()
        services = ReentrantCallbackGroup()  # a prompt waits for its frame while images keep arriving
        self.create_subscription(Image, settings.image_topic, lambda data: self._on_image(data, False), SENSOR, raw=True, callback_group=images)
        self.create_subscription(CompressedImage, settings.image_topic.rstrip("/") + "/compressed", lambda data: self._on_image(data, True),
                                 SENSOR, raw=True, callback_group=images)
        self.create_subscription(CameraInfo, settings.camera_info_topic, self._on_camera_info, SENSOR, raw=True, callback_group=images)
        self.create_service(AddObjects, "~/add_objects", self._add_objects, callback_group=services)
        self.create_service(RemoveObject, "~/remove_object", self._remove_object, callback_group=services)
        self.core.start()
        self.get_logger().info(f"tracking {settings.image_topic} with {settings.backend} ({settings.model_dir or settings.engine_dir or 'demo model'})")

    def _on_image(self, data: bytes, compressed: bool) -> None:
        try:
            self.core.submit_frame(*codec.decode_frame(data, compressed))
        except StreamSamError as exc:
            self.core.report_error(str(exc))

    def _on_camera_info(self, data: bytes) -> None:
        self._camera_info = data

    def _add_objects(self, request, response):
        return self._serve(request, AddObjects, types.ADD_OBJECTS, lambda b: self.core.add_objects(*codec.decode_add_objects(b)))

    def _remove_object(self, request, response):
        return self._serve(request, RemoveObject, types.REMOVE_OBJECT, lambda b: self.core.remove_object(codec.decode_remove_object(b)))

    def _serve(self, request, srv_type, service: str, handler):
        try:
            reply = handler(serialize_message(request))
        except StreamSamError as exc:  # a request the codec refuses (mismatched lists, a bad mask image)
            self.core.report_error(str(exc))
            reply = self.core.refusal(str(exc))
        return deserialize_message(codec.encode_reply(reply, service), srv_type.Response)

    def _publish(self, out) -> None:
        self._segmentation.publish(codec.encode_segmentation(out))
        self._detections.publish(codec.encode_detections(out))
        if self._camera_info is not None:
            self._camera_info_out.publish(self._camera_info)

    def _publish_status(self, status) -> None:
        self._diagnostics.publish(codec.encode_status(status, self.get_name(), self.get_clock().now().nanoseconds))

    def destroy_node(self) -> None:
        self.core.close()
        super().destroy_node()


def main(args=None) -> None:
    rclpy.init(args=args)
    node = StreamSamNode()
    executor = MultiThreadedExecutor(num_threads=3)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
