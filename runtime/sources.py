"""Frame sources named by one string, the same in every tool (as jetson-utils' URIs):

    0, 1, ...             a camera index (OpenCV)           live
    /dev/video0           a V4L2 camera                     live
    csi://0               a Jetson CSI camera (GStreamer)   live
    rtsp://host/path      an RTSP stream                    live
    '... ! appsink'       any GStreamer pipeline            live
    clip.mp4              a video file (PyAV)               file
    frames/               a folder of images                file
    run.mcap, run.db3     a rosbag2 (or its folder), --topic  file  (streamsam.ros2.bags)

Files give every frame in order. Live sources are read on a background thread that keeps only the
newest frame, so when the tracker falls behind stale frames are dropped (and counted), never queued.
A live source that stops delivering raises SourceDisconnected; whatever the caller holds (a
tracker's memory) is untouched, and the caller decides what to do.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import InputError, StreamSamError, require
from .video_frames import IMAGE_SUFFIXES, read_image

# nvarguscamerasrc -> BGR appsink: the usual Jetson CSI pipeline for OpenCV.
CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
    "framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR ! "
    "appsink drop=true max-buffers=1"
)


class SourceDisconnected(StreamSamError):
    """A live source stopped delivering frames."""


@dataclass(frozen=True)
class SourceSpec:
    uri: str
    kind: str  # camera | v4l2 | csi | rtsp | gstreamer | file | folder | bag
    live: bool

    def describe(self) -> str:
        return f"{self.kind} source {self.uri!r} ({'live: stale frames dropped' if self.live else 'every frame, in order'})"


def parse_source(uri: str) -> SourceSpec:
    """What a source string names; a string that names nothing says what would have been accepted."""
    text = str(uri).strip()
    if text.isdigit():
        return SourceSpec(text, "camera", True)
    if text.startswith("/dev/video"):
        return SourceSpec(text, "v4l2", True)
    if text.startswith("csi://"):
        return SourceSpec(text, "csi", True)
    if text.startswith(("rtsp://", "rtsps://")):
        return SourceSpec(text, "rtsp", True)
    if "!" in text:
        return SourceSpec(text, "gstreamer", True)
    path = Path(text)
    if path.suffix in (".mcap", ".db3") and path.is_file() or (path / "metadata.yaml").is_file():
        return SourceSpec(text, "bag", False)
    if path.is_dir():
        return SourceSpec(text, "folder", False)
    if path.is_file():
        return SourceSpec(text, "file", False)
    raise InputError(
        f"source | received {text!r}, which is not an existing file or folder; expected a video file, a folder "
        "of images, a camera index (0), /dev/videoN, csi://N, an rtsp:// URL or a GStreamer pipeline ending in appsink"
    )


class FrameSource:
    """Iterate (index, frame) over a source: H x W x 3 uint8 RGB frames. Use as a context manager."""

    def __init__(
        self,
        uri: str,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        reconnect_seconds: float = 2.0,
        live: bool | None = None,
        topic: str | None = None,
    ) -> None:
        """`live=True` on a video file replays it as a camera would deliver it: at the file's frame
        rate, dropping frames the reader does not keep up with, and disconnecting at its end.
        `topic`: the image topic of a rosbag2 source."""
        spec = parse_source(uri)
        if live is not None and live != spec.live:
            if spec.kind != "file" or not live:
                raise InputError(f"source {uri} | received live={live} for a {spec.kind} source; expected live=True only for a video file")
            spec = SourceSpec(spec.uri, "file-as-camera", True)
        if topic is not None and spec.kind != "bag":
            raise InputError(f"--topic | received {topic!r} for a {spec.kind} source; expected it only with a rosbag2 source (.mcap, .db3 or a bag folder)")
        self.spec = spec
        self.width, self.height, self.fps = width, height, fps
        self.reconnect_seconds = reconnect_seconds
        self.topic = topic
        self._bag = None
        self.dropped = 0  # live frames replaced by a newer one before they were read
        self.frames_read = 0
        self.expected_frames: int | None = None  # a file's frame count from its header, if it has one
        self.decode_error: str | None = None  # why a file stopped before its end, if it broke
        self._container = None
        self._capture = None
        self._thread: threading.Thread | None = None
        self._latest: tuple[int, np.ndarray] | None = None
        self._condition = threading.Condition()
        self._stopped = False
        self._failure: str | None = None

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        kind = self.spec.kind
        if kind == "file":
            av = require("av", "video")
            try:
                self._container = av.open(self.spec.uri)
            except av.error.FFmpegError as exc:
                raise InputError(f"source {self.spec.uri} | received a file FFmpeg cannot open ({exc}); expected a video file") from exc
            stream = self._container.streams.video[0]
            self.expected_frames = stream.frames or None
        elif kind == "bag":
            from .ros2.bags import BagFrames  # rosbags, imported only for a bag

            self._bag = BagFrames(self.spec.uri, self.topic)
            self.expected_frames = self._bag.expected_frames
        elif kind == "folder":
            files = sorted(p for p in Path(self.spec.uri).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise InputError(f"source {self.spec.uri} | received a folder with no {'/'.join(IMAGE_SUFFIXES)} files; expected images")
            self._files = files
            self.expected_frames = len(files)
        else:
            self._capture = self._open_capture()
            self._thread = threading.Thread(target=self._read_live, name=f"streamsam-source-{kind}", daemon=True)
            self._thread.start()

    def _open_capture(self):
        cv2 = require("cv2", "video")
        kind, uri = self.spec.kind, self.spec.uri
        if kind == "camera":
            capture = cv2.VideoCapture(int(uri))
        elif kind == "csi":
            pipeline = CSI_PIPELINE.format(sensor=int(uri[len("csi://"):] or 0), width=self.width, height=self.height, fps=self.fps)
            capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        elif kind == "gstreamer":
            capture = cv2.VideoCapture(uri, cv2.CAP_GSTREAMER)
        else:  # v4l2, rtsp, file-as-camera
            capture = cv2.VideoCapture(uri)
        if not capture.isOpened():
            hint = " (this OpenCV build has no GStreamer: use the system OpenCV on a Jetson)" if kind in ("csi", "gstreamer") else ""
            raise InputError(f"source {uri} | received a {kind} source that does not open{hint}; expected a connected, readable source")
        return capture

    def _read_live(self) -> None:
        cv2 = require("cv2", "video")
        index, last_ok = 0, time.monotonic()
        # A recording replayed as a camera is paced at its own frame rate.
        period = 1.0 / (self._capture.get(cv2.CAP_PROP_FPS) or self.fps) if self.spec.kind == "file-as-camera" else 0.0
        next_time = time.monotonic()
        while not self._stopped:
            if period:
                next_time += period
                time.sleep(max(0.0, next_time - time.monotonic()))
            ok, bgr = self._capture.read()
            if not ok:
                if time.monotonic() - last_ok > self.reconnect_seconds:
                    with self._condition:
                        self._failure = f"no frame for {self.reconnect_seconds:.1f} s after frame {index}"
                        self._condition.notify_all()
                    return
                time.sleep(0.01)
                continue
            last_ok = time.monotonic()
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            with self._condition:
                if self._latest is not None:
                    self.dropped += 1
                self._latest = (index, frame)
                self._condition.notify_all()
            index += 1

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        kind = self.spec.kind
        if kind == "file":
            av = require("av", "video")
            frames = self._container.decode(video=0)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    return
                except av.error.FFmpegError as exc:  # a cut or corrupt file: stop where it broke
                    self.decode_error = str(exc)
                    return
                self.frames_read += 1
                yield self.frames_read - 1, frame.to_ndarray(format="rgb24")
        elif kind == "bag":
            for index, frame in self._bag:
                self.frames_read += 1
                yield index, frame
        elif kind == "folder":
            for index, path in enumerate(self._files):
                frame = read_image(path)  # a file that cannot be read is named
                self.frames_read += 1
                yield index, frame
        else:
            while True:
                with self._condition:
                    while self._latest is None and self._failure is None:
                        self._condition.wait()
                    if self._latest is None:
                        raise SourceDisconnected(
                            f"source {self.spec.uri} | received {self._failure}; expected a live {kind} stream. "
                            "Check the cable or the network; the session's state is kept."
                        )
                    latest, self._latest = self._latest, None
                self.frames_read += 1
                yield latest

    @property
    def ended_early(self) -> bool:
        """A file that gave fewer frames than its header announced."""
        return self.decode_error is not None or (self.expected_frames is not None and self.frames_read < self.expected_frames)

    def close(self) -> None:
        self._stopped = True
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._capture is not None:
            self._capture.release()
        if self._container is not None:
            self._container.close()
        if self._bag is not None:
            self._bag.close()

    def stamp_of(self, index: int) -> int | None:
        """Frame `index`'s header stamp in ns (bag sources), or None when the source has none."""
        return self._bag.stamps[index] if self._bag is not None else None
