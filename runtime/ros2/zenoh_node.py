"""The node over rmw_zenoh (eclipse-zenoh + rosbags, no ROS install): subscribes to the camera's
Image and CompressedImage topics and camera_info, serves add_objects / remove_object, publishes
the segmentation, detections, camera_info of the processed frame and diagnostics."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import StreamSamError
from . import codec, rmw_zenoh, types
from .core import CoreConfig, NodeCore
from .outputs import FrameOutput

log = logging.getLogger("streamsam.ros2")


@dataclass(frozen=True)
class Topics:
    """Names as a ROS node would declare them (`~/` is under the node's name)."""

    image: str = "/camera/image_raw"  # Image here, CompressedImage on `<image>/compressed`
    camera_info: str = "/camera/camera_info"
    segmentation: str = "~/segmentation"
    detections: str = "~/detections"
    camera_info_out: str = "~/camera_info"  # the camera_info of the frame last processed
    diagnostics: str = "/diagnostics"
    add_objects: str = "~/add_objects"
    remove_object: str = "~/remove_object"


class ZenohNode:
    """Run a NodeCore on the rmw_zenoh wire:

        node = ZenohNode(StreamTracker(model), ZenohEndpoint(connect=("tcp/192.168.1.10:7447",)))
        ...                                         # it runs until close()
        node.close()
    """

    def __init__(self, tracker, endpoint: rmw_zenoh.ZenohEndpoint = rmw_zenoh.ZenohEndpoint(), topics: Topics = Topics(),
                 node_name: str = "streamsam", namespace: str = "", config: CoreConfig = CoreConfig()) -> None:
        self.session = endpoint.open()
        self.graph = rmw_zenoh.Graph(self.session, endpoint, node_name, namespace)
        g, t = self.graph, topics
        self.node_name = node_name
        self._segmentation = rmw_zenoh.Publisher(g, t.segmentation, types.SEGMENTATION)
        self._detections = rmw_zenoh.Publisher(g, t.detections, types.DETECTIONS)
        self._camera_info_out = rmw_zenoh.Publisher(g, t.camera_info_out, types.CAMERA_INFO)
        self._diagnostics = rmw_zenoh.Publisher(g, t.diagnostics, types.DIAGNOSTICS, depth=10)
        self._camera_info: bytes | None = None
        self._lock = threading.Lock()
        self.core = NodeCore(tracker, self._publish, self._publish_status, config)
        # Service calls wait for their frame: they run here, not on Zenoh's callback threads.
        self._calls = ThreadPoolExecutor(max_workers=2, thread_name_prefix="streamsam-service")
        self._entities = [
            rmw_zenoh.subscribe(g, t.image, types.IMAGE, lambda data, _: self._on_image(data, False)),
            rmw_zenoh.subscribe(g, t.image.rstrip("/") + "/compressed", types.COMPRESSED_IMAGE, lambda data, _: self._on_image(data, True)),
            rmw_zenoh.subscribe(g, t.camera_info, types.CAMERA_INFO, self._on_camera_info),
            rmw_zenoh.serve(g, t.add_objects, types.ADD_OBJECTS, lambda q: self._calls.submit(self._serve, q, self._add_objects, types.ADD_OBJECTS)),
            rmw_zenoh.serve(g, t.remove_object, types.REMOVE_OBJECT, lambda q: self._calls.submit(self._serve, q, self._remove_object, types.REMOVE_OBJECT)),
        ]
        self.core.start()

    def close(self) -> None:
        self.core.close()
        self._calls.shutdown(wait=True)
        for entity in self._entities:
            entity.undeclare()
        for publisher in (self._segmentation, self._detections, self._camera_info_out, self._diagnostics):
            publisher.close()
        self.graph.close()
        self.session.close()

    def __enter__(self) -> ZenohNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs (Zenoh's threads)
    def _on_image(self, data: bytes, compressed: bool) -> None:
        try:
            self.core.submit_frame(*codec.decode_frame(data, compressed))
        except StreamSamError as exc:
            self.core.report_error(str(exc))

    def _on_camera_info(self, data: bytes, _attachment) -> None:
        with self._lock:
            self._camera_info = data  # passed through as it came: nothing in it changes

    def _serve(self, query, handler, service: str) -> None:
        try:
            # The attachment first: a request rmw_zenoh could not answer must not change anything.
            sequence, _, gid = rmw_zenoh.decode_attachment(query.attachment)
            request = query.payload.to_bytes() if query.payload is not None else b""
            rmw_zenoh.reply(query, codec.encode_reply(handler(request), service), sequence, gid)
        except StreamSamError as exc:  # bytes that are no request, a missing attachment: an error reply
            self.core.report_error(str(exc))
            query.reply_err(str(exc))
        except Exception:
            log.exception("service %s failed", service)
            query.reply_err(f"{service} | the node failed while serving it; see its log")

    def _add_objects(self, request: bytes):
        stamp_ns, prompts = codec.decode_add_objects(request)
        return self.core.add_objects(stamp_ns, prompts)

    def _remove_object(self, request: bytes):
        return self.core.remove_object(codec.decode_remove_object(request))

    # -- outputs (the core's worker thread)
    def _publish(self, out: FrameOutput) -> None:
        self._segmentation.put(codec.encode_segmentation(out))
        self._detections.put(codec.encode_detections(out))
        with self._lock:
            camera_info = self._camera_info
        if camera_info is not None:
            self._camera_info_out.put(camera_info)

    def _publish_status(self, status) -> None:
        self._diagnostics.put(codec.encode_status(status, self.node_name, self.core.stamp_ns or 0))


