"""Shared by the tests/test_ros2_*.py files: free ports, Zenoh endpoints over loopback, frames as
ROS messages, a subscriber that collects what the node publishes, and a direct replay."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np

import streamsam
from streamsam.ros2 import images, rmw_zenoh, types
from streamsam.ros2.codec import header

DEMO_MODEL = Path(streamsam.__file__).parent / "demo_model"
STAMP0_NS = 1_700_000_000 * 1_000_000_000 + 123_456_789  # a nanosecond part that rounding would change
PERIOD_NS = 33_333_333


def camera_frames(frames: int, height: int = 180, width: int = 240, seed: int = 0):
    """RGB uint8 frames: a textured square bouncing over a textured background, for any length
    (conftest's moving_square_video leaves the frame after about 60 frames at its default size)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    texture = rng.integers(130, 255, (40, 40, 3), dtype=np.uint8)
    span_x, span_y = width - 40, height - 40
    for t in range(frames):
        x, y = abs((20 + 3 * t) % (2 * span_x) - span_x), abs((30 + 2 * t) % (2 * span_y) - span_y)
        frame = background.copy()
        frame[y : y + 40, x : x + 40] = texture
        yield frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_endpoint(port: int) -> rmw_zenoh.ZenohEndpoint:
    return rmw_zenoh.ZenohEndpoint(mode="peer", listen=(f"tcp/127.0.0.1:{port}",), connect=())


def peer_endpoint(port: int) -> rmw_zenoh.ZenohEndpoint:
    return rmw_zenoh.ZenohEndpoint(mode="peer", listen=(), connect=(f"tcp/127.0.0.1:{port}",))


def stamp_of(index: int) -> int:
    return STAMP0_NS + index * PERIOD_NS


def image_bytes(frame: np.ndarray, index: int, encoding: str) -> bytes:
    """A frame as a serialised sensor_msgs/Image in `encoding` (rgb8 / bgr8 / anything for bad input)."""
    pixels = frame[:, :, ::-1] if encoding == "bgr8" else frame
    h, w = frame.shape[:2]
    msg = types.message(types.IMAGE)(
        header=header(stamp_of(index), "camera_optical"), height=h, width=w, encoding=encoding, is_bigendian=0,
        step=w * 3, data=np.ascontiguousarray(pixels).reshape(-1),
    )
    return types.serialize(msg, types.IMAGE)


def compressed_bytes(frame: np.ndarray, index: int) -> bytes:
    import cv2

    ok, png = cv2.imencode(".png", frame[:, :, ::-1])
    assert ok
    msg = types.message(types.COMPRESSED_IMAGE)(header=header(stamp_of(index), "camera_optical"), format="png", data=png.reshape(-1))
    return types.serialize(msg, types.COMPRESSED_IMAGE)


def wait_for_token(session, pattern: str, timeout_s: float = 20.0) -> list[str]:
    """Liveliness keys matching `pattern`, once at least one exists (a route is up)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        keys = [str(r.ok.key_expr) for r in session.liveliness().get(pattern, timeout=1.0) if r.ok is not None]
        if keys:
            return keys
        time.sleep(0.05)
    raise AssertionError(f"no liveliness token matching {pattern} within {timeout_s} s")


class Collector:
    """Everything the node publishes on its outputs, decoded with rosbags, in arrival order."""

    def __init__(self, graph: rmw_zenoh.Graph, node: str = "/streamsam") -> None:
        self.segmentations, self.detections, self.diagnostics, self.attachments = [], [], [], []
        self._cond = threading.Condition()
        self._subs = [
            rmw_zenoh.subscribe(graph, f"{node}/segmentation", types.SEGMENTATION, self._add(self.segmentations, types.SEGMENTATION), rmw_zenoh.RELIABLE),
            rmw_zenoh.subscribe(graph, f"{node}/detections", types.DETECTIONS, self._add(self.detections, types.DETECTIONS), rmw_zenoh.RELIABLE),
            rmw_zenoh.subscribe(graph, "/diagnostics", types.DIAGNOSTICS, self._add(self.diagnostics, types.DIAGNOSTICS), rmw_zenoh.RELIABLE),
        ]

    def _add(self, into: list, type_name: str):
        def callback(data, attachment):
            msg = types.deserialize(data, type_name)
            with self._cond:
                into.append(msg)
                self.attachments.append(bytes(attachment.to_bytes()))
                self._cond.notify_all()
        return callback

    def wait(self, predicate, timeout_s: float = 60.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout=timeout_s), "timed out waiting for the node's output"

    def close(self) -> None:
        for sub in self._subs:
            sub.undeclare()


def last_per_stamp(messages) -> dict[int, object]:
    """The last message for each stamp (a prompt republishes its frame), in first-seen order."""
    out: dict[int, object] = {}
    for msg in messages:
        out[types.stamp_ns(msg.header.stamp)] = msg
    return out


def check_against(msg, detections, result) -> None:
    """A Segmentation and its Detection2DArray against a FrameResult of a direct run: the same
    objects, every label on a pixel of its object's mask, every pixel only one object covers labelled
    with it, background 0, and each detection's box the box of its object's mask."""
    assert tuple(msg.object_ids) == tuple(result.object_ids)
    labels = images.mono_to_array(msg.labels)
    masks = result.masks
    assert labels.shape == result.source_size
    covered = masks.sum(axis=0)
    assert (labels[covered == 0] == 0).all()
    for i, mask in enumerate(masks):
        assert mask[labels == i + 1].all(), f"label {i + 1} outside object {result.object_ids[i]}'s mask"
        assert (labels[(covered == 1) & mask] == i + 1).all()
    assert [d.id for d in detections.detections] == [str(o) for o in result.object_ids]
    for det, mask in zip(detections.detections, masks):
        ys, xs = np.nonzero(mask)
        if xs.size:
            assert det.bbox.size_x == xs.max() + 1 - xs.min() and det.bbox.size_y == ys.max() + 1 - ys.min()
            assert det.bbox.center.position.x == (xs.min() + xs.max() + 1) / 2
        else:
            assert det.bbox.size_x == 0 and det.bbox.size_y == 0
