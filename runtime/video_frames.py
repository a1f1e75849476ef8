"""Frames of a video for the offline VideoPredictor: a folder of images, a video file, or frames
already in memory. Frames are returned as H x W x 3 uint8 RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import StreamSamError, require

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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
                    raise StreamSamError(f"video folder {path} | received no {'/'.join(IMAGE_SUFFIXES)} files; expected one image per frame")
                key = (lambda p: (0, int(p.stem), "")) if all(p.stem.isdigit() for p in files) else (lambda p: (1, 0, p.name))
                self._files = sorted(files, key=key)
            elif path.is_file():
                self._frames = _decode_video(path)
            else:
                raise StreamSamError(f"video {path} | received a path that does not exist; expected a video file or a folder of frames")
        else:
            self._frames = [np.asarray(f) for f in source]
            if not self._frames:
                raise StreamSamError("video | received no frames; expected at least one H x W x 3 uint8 frame")
        first = self[0]
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return len(self._files) if self._files is not None else len(self._frames)

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise StreamSamError(f"frame index | received {index}; expected 0 <= index < {len(self)}")
        if self._frames is not None:
            return self._frames[index]
        image = require("PIL.Image", "video")
        with image.open(self._files[index]) as img:
            return np.asarray(img.convert("RGB"))


def _decode_video(path: Path) -> list[np.ndarray]:
    cv2 = require("cv2", "video")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise StreamSamError(f"video {path} | received a file OpenCV cannot open; expected a readable video (mp4, avi, ...)")
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
        raise StreamSamError(f"video {path} | received a video with no decodable frames; expected at least one")
    return frames
