"""Frames of a video for the offline VideoPredictor: a folder of images, a video file, or frames
already in memory. Frames are returned as H x W x 3 uint8 RGB.

Every frame is checked when the video opens, before the predictor's state changes: frames in
memory in full (no copy), a folder's files by their headers (size, readable), so a long folder
opens without decoding it. A file that still fails to decode later raises InputError naming it.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Sequence

import numpy as np

from .checks import check_frame
from .errors import InputError, require

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# What Pillow raises on a file it cannot read: OSError (truncated, unidentified), SyntaxError
# (a broken PNG), ValueError (bad header values).
_IMAGE_ERRORS = (OSError, SyntaxError, ValueError)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from an image file's header, without decoding its pixels."""
    image = require("PIL.Image", "video")
    try:
        with image.open(path) as img:
            return img.height, img.width
    except _IMAGE_ERRORS as exc:
        raise InputError(f"image {path} | received a file Pillow cannot read ({exc}); expected a readable image. Replace or remove it") from None


def read_image(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB."""
    image = require("PIL.Image", "video")
    try:
        with image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except _IMAGE_ERRORS as exc:
        raise InputError(f"image {path} | received a file Pillow cannot decode ({exc}); expected a readable image. Replace or remove it") from None


class VideoFrames:
    """Random access to a video's frames. A folder is read lazily, one file per access (names sorted
    by their numeric stem when they are numbers, as the official loader expects); a video file is
    decoded once, up front, into uint8 frames at its own resolution."""

    def __init__(self, source: str | Path | Sequence[np.ndarray]) -> None:
        self._files: list[Path] | None = None
        self._frames: list[np.ndarray] | None = None
        if isinstance(source, (str, Path)):
            path = Path(source)
            if path.is_dir():
                files = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
                if not files:
                    raise InputError(f"video folder {path} | received no {'/'.join(IMAGE_SUFFIXES)} files; expected one image per frame")
                key = (lambda p: (0, int(p.stem), "")) if all(p.stem.isdigit() for p in files) else (lambda p: (1, 0, p.name))
                self._files = sorted(files, key=key)
                sizes = [image_size(p) for p in self._files]
                _check_same_size(sizes, [str(p) for p in self._files])
            elif path.is_file():
                self._frames = _decode_video(path)
            else:
                raise InputError(f"video {path} | received a path that does not exist; expected a video file or a folder of frames")
        elif isinstance(source, (Sequence, np.ndarray)):
            self._frames = [check_frame(f, subject=f"video frame {i}") for i, f in enumerate(source)]
            if not self._frames:
                raise InputError("video | received no frames; expected at least one H x W x 3 uint8 frame")
            _check_same_size([f.shape[:2] for f in self._frames], [f"frame {i}" for i in range(len(self._frames))])
        else:
            raise InputError(
                f"video | received {type(source).__name__}; expected a video file, a folder of images, "
                "or a list of H x W x 3 uint8 RGB frames"
            )
        self.height, self.width = self._frames[0].shape[:2] if self._frames is not None else sizes[0]

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise InputError(f"frame index | received {index}; expected 0 <= index < {len(self)}")
        if self._frames is not None:
            return self._frames[index]
        frame = read_image(self._files[index])
        if frame.shape[:2] != (self.height, self.width):  # a file replaced since the video opened
            raise InputError(f"image {self._files[index]} | received size {frame.shape[1]}x{frame.shape[0]}; expected {self.width}x{self.height} like the video's other frames")
        return frame


def _check_same_size(sizes: list[tuple[int, int]], names: list[str]) -> None:
    """Masks come back at one size per video: every frame must have it."""
    for size, name in zip(sizes, names):
        if tuple(size) != tuple(sizes[0]):
            raise InputError(
                f"video {name} | received size {size[1]}x{size[0]}; expected {sizes[0][1]}x{sizes[0][0]} like {names[0]}: "
                "every frame of a video must have the same size. Resize the frames first."
            )


def _decode_video(path: Path) -> list[np.ndarray]:
    cv2 = require("cv2", "video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise InputError(f"video {path} | received a file OpenCV cannot open; expected a readable video (mp4, avi, ...)")
    frames = []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise InputError(f"video {path} | received a video with no decodable frames; expected at least one")
    return frames
