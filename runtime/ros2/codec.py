"""CDR bytes <-> the core's inputs and outputs. Both transports hand this module bytes (rclpy with
raw subscriptions and serialised service messages, Zenoh natively) and get bytes back, so what the
node reads and writes is the same code on either."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..errors import InputError
from . import images, types
from .core import ObjectPrompt, Reply, Status
from .outputs import FrameOutput


def header(stamp_ns: int, frame_id: str):
    return types.message("std_msgs/msg/Header")(stamp=types.time_msg(stamp_ns), frame_id=frame_id)


def decode_frame(data: bytes, compressed: bool) -> tuple[int, str, np.ndarray]:
    """Image or CompressedImage bytes -> (stamp ns, frame_id, RGB)."""
    msg = types.deserialize(data, types.COMPRESSED_IMAGE if compressed else types.IMAGE)
    rgb = images.compressed_to_rgb(msg) if compressed else images.image_to_rgb(msg)
    return types.stamp_ns(msg.header.stamp), msg.header.frame_id, rgb


def decode_add_objects(data: bytes) -> tuple[int, list[ObjectPrompt]]:
    """An AddObjects request -> (stamp ns, one prompt per object id, in the order ids first appear)."""
    req = types.deserialize(data, types.ADD_OBJECTS + "_Request")
    _same_length("bbox_object_ids", req.bbox_object_ids, "bboxes", req.bboxes)
    _same_length("point_object_ids", req.point_object_ids, "points", req.points)
    _same_length("point_labels", req.point_labels, "points", req.points)
    _same_length("mask_object_ids", req.mask_object_ids, "masks", req.masks)
    objects: OrderedDict[int, dict] = OrderedDict()
    for obj_id, box in zip(req.bbox_object_ids, req.bboxes):
        entry = objects.setdefault(int(obj_id), {})
        if "box" in entry:
            raise InputError(f"add_objects object {obj_id} | received two boxes; expected at most one box per object")
        cx, cy, sx, sy = box.center.position.x, box.center.position.y, box.size_x, box.size_y
        entry["box"] = (cx - sx / 2, cy - sy / 2, cx + sx / 2, cy + sy / 2)
    for obj_id, point, label in zip(req.point_object_ids, req.points, req.point_labels):
        entry = objects.setdefault(int(obj_id), {})
        entry.setdefault("points", []).append((point.x, point.y))
        entry.setdefault("labels", []).append(int(label))
    for obj_id, mask in zip(req.mask_object_ids, req.masks):
        objects.setdefault(int(obj_id), {})["mask"] = images.mono_to_array(mask) > 0
    prompts = [
        ObjectPrompt(
            obj_id,
            box=e.get("box"),
            points=np.asarray(e.get("points", np.zeros((0, 2))), np.float32).reshape(-1, 2),
            labels=np.asarray(e.get("labels", []), np.int32),
            mask=e.get("mask"),
        )
        for obj_id, e in objects.items()
    ]
    return types.stamp_ns(req.stamp), prompts


def decode_remove_object(data: bytes) -> int:
    return int(types.deserialize(data, types.REMOVE_OBJECT + "_Request").object_id)


def encode_reply(reply: Reply, service: str) -> bytes:
    msg = types.message(service + "_Response")(
        success=reply.success, message=reply.message, stamp=types.time_msg(reply.stamp_ns),
        object_ids=np.asarray(reply.object_ids, np.int32),
    )
    return types.serialize(msg, service + "_Response")


def encode_segmentation(out: FrameOutput) -> bytes:
    head = header(out.stamp_ns, out.frame_id)
    masks = [] if out.masks is None else [images.mono_image(head, m.astype(np.uint8) * 255) for m in out.masks]
    msg = types.message(types.SEGMENTATION)(
        header=head, labels=images.mono_image(head, out.labels), object_ids=np.asarray(out.object_ids, np.int32),
        scores=out.scores, masks=masks, dropped_frames=out.dropped_frames,
    )
    return types.serialize(msg, types.SEGMENTATION)


def encode_detections(out: FrameOutput) -> bytes:
    """vision_msgs/Detection2DArray: per object its box, its id in `id` and `class_id`, its visibility as the score."""
    m = types.message
    detections = []
    for obj_id, (x0, y0, x1, y1), score in zip(out.object_ids, out.boxes, out.scores):
        center = m("vision_msgs/msg/Pose2D")(position=m("vision_msgs/msg/Point2D")(x=(x0 + x1) / 2, y=(y0 + y1) / 2), theta=0.0)
        pose = m("geometry_msgs/msg/PoseWithCovariance")(
            pose=m("geometry_msgs/msg/Pose")(position=m("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0),
                                              orientation=m("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, np.float64),
        )
        hypothesis = m("vision_msgs/msg/ObjectHypothesisWithPose")(
            hypothesis=m("vision_msgs/msg/ObjectHypothesis")(class_id=str(obj_id), score=float(score)), pose=pose)
        detections.append(m("vision_msgs/msg/Detection2D")(
            header=header(out.stamp_ns, out.frame_id), results=[hypothesis],
            bbox=m("vision_msgs/msg/BoundingBox2D")(center=center, size_x=float(x1 - x0), size_y=float(y1 - y0)),
            id=str(obj_id)))
    msg = m(types.DETECTIONS)(header=header(out.stamp_ns, out.frame_id), detections=detections)
    return types.serialize(msg, types.DETECTIONS)


def encode_status(status: Status, node_name: str, stamp_ns: int) -> bytes:
    """diagnostic_msgs/DiagnosticArray: OK, or WARN with the latest error as the message."""
    m = types.message
    status_cls = m("diagnostic_msgs/msg/DiagnosticStatus")
    values = [m("diagnostic_msgs/msg/KeyValue")(key=k, value=str(v)) for k, v in (
        ("received_frames", status.received), ("processed_frames", status.processed), ("dropped_frames", status.dropped))]
    values += [m("diagnostic_msgs/msg/KeyValue")(key=f"error_{i}", value=e) for i, e in enumerate(status.errors)]
    level = status_cls.WARN if status.errors else status_cls.OK
    entry = status_cls(level=level, name=node_name, message=status.errors[-1] if status.errors else "tracking",
                       hardware_id="", values=values)
    msg = m(types.DIAGNOSTICS)(header=header(stamp_ns, ""), status=[entry])
    return types.serialize(msg, types.DIAGNOSTICS)


def _same_length(name_a: str, a, name_b: str, b) -> None:
    if len(a) != len(b):
        raise InputError(f"add_objects | received {len(a)} {name_a} and {len(b)} {name_b}; expected one per entry")
