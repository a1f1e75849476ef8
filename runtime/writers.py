"""Outputs of the command line: an H.264 overlay video (PyAV), per-frame masks as PNG files, and
COCO run-length encodings (pycocotools), one JSON line per frame.

Paths are checked when a writer is made; files and folders are created only by the first write, so
a run that fails before its first frame leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .checks import check_output_path
from .errors import InputError, require
from .results import FrameResult


class VideoWriter:
    """H.264 (libx264, yuv420p) through PyAV. yuv420p needs even sizes: an odd row or column is cropped."""

    takes_overlay = True  # written with drawn frames; the mask writers take results

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        self.path = check_output_path(path)
        self.fps = fps
        self._container = None
        self._stream = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        av = require("av", "video")
        h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
        if self._container is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), "w")
            self._stream = self._container.add_stream("libx264", rate=round(self.fps) or 30)
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]), format="rgb24")
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None


class MaskPngWriter:
    """One 8-bit PNG per frame and object: `<dir>/<frame:06d>_obj<id>.png`, 255 inside the mask."""

    takes_overlay = False

    def __init__(self, directory: str | Path) -> None:
        self.directory = check_output_path(directory, folder=True)

    def write(self, result: FrameResult) -> None:
        image = require("PIL.Image", "video")
        self.directory.mkdir(parents=True, exist_ok=True)
        for obj_id, mask in zip(result.object_ids, result.masks):
            image.fromarray(mask.astype(np.uint8) * 255).save(self.directory / f"{result.frame_index:06d}_obj{obj_id}.png")

    def close(self) -> None:
        """Nothing stays open: each PNG is written and closed in write()."""


class RleWriter:
    """COCO RLE masks, one JSON object per line: {"frame", "objects": [{"id", "score", "iou", "rle"}]}."""

    takes_overlay = False

    def __init__(self, path: str | Path) -> None:
        self.path = check_output_path(path)
        self._file = None

    def write(self, result: FrameResult) -> None:
        mask_utils = require("pycocotools.mask", "video")
        objects = []
        for i, obj_id in enumerate(result.object_ids):
            rle = mask_utils.encode(np.asfortranarray(result.masks[i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            objects.append({"id": obj_id, "score": float(result.object_scores[i]), "iou": float(result.ious[i]), "rle": rle})
        line = json.dumps({"frame": result.frame_index, "objects": objects}) + "\n"
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w")
        self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def writer_for(path: str, stamp_of=None) -> object:
    """`.mp4` / `.mkv` / `.avi` -> video; `.jsonl` / `.json` -> RLE; `.mcap` / `.db3` -> a rosbag2 of
    masks (stamped by `stamp_of(frame_index)`, a bag source's header stamps); anything else -> a folder of PNGs."""
    suffix = Path(path).suffix.lower()
    if suffix in (".mcap", ".db3"):
        from .ros2.bags import MaskBagWriter  # rosbags, imported only for a bag

        return MaskBagWriter(path, stamp_of)
    if suffix in (".mp4", ".mkv", ".avi", ".mov"):
        return VideoWriter(path)
    if suffix in (".jsonl", ".json"):
        return RleWriter(path)
    if suffix:
        raise InputError(f"output {path} | received suffix {suffix!r}; expected .mp4/.mkv/.avi/.mov (overlay), .jsonl (RLE), .mcap/.db3 (mask bag) or a folder (PNG masks)")
    return MaskPngWriter(path)


def save_image(array: np.ndarray, path: str | Path) -> None:
    """An image file written whole or not at all: a failed save leaves no partial file."""
    image = require("PIL.Image", "video")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image.fromarray(array).save(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def check_image_output(path: str | Path, subject: str) -> Path:
    """A path Pillow can write an image to (its suffix names a format it knows)."""
    image = require("PIL.Image", "video")
    path = check_output_path(path, subject=subject)
    if path.suffix.lower() not in image.registered_extensions():
        raise InputError(f"{subject} {path} | received suffix {path.suffix!r}; expected an image format such as .png or .jpg")
    return path
