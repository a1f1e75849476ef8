"""rosbag2 (MCAP or sqlite3, through rosbags) as a frame source and as a mask output.

A bag source gives every Image / CompressedImage message of one topic in order, as a file source
does, with each frame's header stamp. The mask bag holds, per tracked frame, the node's
`<prefix>/segmentation` (streamsam_msgs/Segmentation) and `<prefix>/detections`
(vision_msgs/Detection2DArray) with the frame's header stamp, written at that stamp, so the masks
line up with the camera bag when both are played.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..checks import check_output_path
from ..errors import InputError, require
from ..results import FrameResult
from . import codec, images, types
from .outputs import frame_output

BAG_SUFFIXES = (".mcap", ".db3")
IMAGE_TYPES = (types.IMAGE, types.COMPRESSED_IMAGE)


def is_bag(path: str | Path) -> bool:
    """A .mcap / .db3 file, or a rosbag2 folder (one with metadata.yaml)."""
    path = Path(path)
    return (path.is_file() and path.suffix in BAG_SUFFIXES) or (path.is_dir() and (path / "metadata.yaml").is_file())


class BagFrames:
    """Iterate (index, RGB frame) over one image topic of a bag; `stamps[i]` is frame i's header stamp (ns)."""

    def __init__(self, path: str | Path, topic: str | None) -> None:
        rosbag2 = require("rosbags.rosbag2", "ros2")
        self.path = Path(path)
        self._reader = rosbag2.Reader(self.path)
        self._reader.open()
        present = {c.topic: c.msgtype for c in self._reader.connections}
        images_present = sorted(t for t, m in present.items() if m in IMAGE_TYPES)
        listing = ", ".join(f"{t} ({m})" for t, m in sorted(present.items())) or "none"
        if topic is None:
            self.close()
            raise InputError(f"bag {self.path} | received no --topic; expected one of its image topics: {', '.join(images_present) or 'it has none'} (all topics: {listing})")
        self._connections = [c for c in self._reader.connections if c.topic == topic]
        if not self._connections:
            self.close()
            raise InputError(f"bag {self.path} | received --topic {topic}, which it does not hold; expected one of its topics: {listing}")
        msgtype = self._connections[0].msgtype
        if msgtype not in IMAGE_TYPES:
            self.close()
            raise InputError(f"bag {self.path} topic {topic} | received type {msgtype}; expected {' or '.join(IMAGE_TYPES)}. Image topics here: {', '.join(images_present) or 'none'}")
        self.topic, self.msgtype = topic, msgtype
        self.expected_frames = sum(c.msgcount for c in self._connections)
        self.stamps: list[int] = []

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        compressed = self.msgtype == types.COMPRESSED_IMAGE
        for index, (_, _, data) in enumerate(self._reader.messages(connections=self._connections)):
            stamp_ns, _, rgb = codec.decode_frame(data, compressed)
            self.stamps.append(stamp_ns)
            yield index, rgb

    def close(self) -> None:
        self._reader.close()


class MaskBagWriter:
    """Masks as a new rosbag2 folder at `path` (MCAP for .mcap, sqlite3 for .db3): per frame a
    Segmentation (label image + ids) and a Detection2DArray, stamped as the source frame.
    `stamp_of(frame_index)` gives a frame's stamp (a bag source's header stamps); where it gives
    None, or without it, frames are stamped at `fps` from zero."""

    takes_overlay = False

    def __init__(self, path: str | Path, stamp_of: Callable[[int], int] | None = None, fps: float = 30.0,
                 prefix: str = "/streamsam", frame_id: str = "", per_object_masks: bool = False) -> None:
        self._rosbag2 = require("rosbags.rosbag2", "ros2")
        self.path = check_output_path(path)
        if self.path.exists():
            raise InputError(f"output {self.path} | received a path that exists; expected a new bag folder. Remove it or choose another name")
        self._writer = None  # the bag is created by its first frame: a run that fails before one leaves nothing
        self._prefix = prefix
        self._stamp_of, self._fps = stamp_of, fps
        self._frame_id, self._masks = frame_id, per_object_masks
        self.frames = 0

    def _open(self) -> None:
        rosbag2 = self._rosbag2
        plugin = rosbag2.StoragePlugin.MCAP if self.path.suffix == ".mcap" else rosbag2.StoragePlugin.SQLITE3
        self._writer = rosbag2.Writer(self.path, version=9, storage_plugin=plugin)
        self._writer.open()
        store = types.typestore()
        self._segmentation = self._writer.add_connection(f"{self._prefix}/segmentation", types.SEGMENTATION, typestore=store)
        self._detections = self._writer.add_connection(f"{self._prefix}/detections", types.DETECTIONS, typestore=store)

    def write(self, result: FrameResult) -> None:
        if self._writer is None:
            self._open()
        stamp = self._stamp_of(result.frame_index) if self._stamp_of else None
        if stamp is None:  # a source without stamps (a video, a folder): stamped at fps from zero
            stamp = round(result.frame_index * 1e9 / self._fps)
        out = frame_output(result, stamp, self._frame_id, 0, self._masks)
        self._writer.write(self._segmentation, stamp, codec.encode_segmentation(out))
        self._writer.write(self._detections, stamp, codec.encode_detections(out))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def read_masks(path: str | Path, topic: str = "/streamsam/segmentation") -> list[tuple[int, tuple[int, ...], np.ndarray]]:
    """A mask bag read back: (stamp ns, object ids, label image) per frame, in order."""
    rosbag2 = require("rosbags.rosbag2", "ros2")
    with rosbag2.Reader(Path(path)) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        out = []
        for _, _, data in reader.messages(connections=connections):
            msg = types.deserialize(data, types.SEGMENTATION)
            out.append((types.stamp_ns(msg.header.stamp), tuple(int(i) for i in msg.object_ids), images.mono_to_array(msg.labels)))
    return out
