"""LatestFrames: a one-frame mailbox per stream between source threads and the stepping loop.

A live source puts without waiting: a frame not yet taken is replaced by the newer one (a stale
frame dropped, counted per stream), so a stream that falls behind tracks the present rather than a
growing queue. A file source waits for its slot, so every frame is tracked in order.
"""

from __future__ import annotations

import threading
from typing import Hashable


class LatestFrames:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frames: dict = {}
        self._ended: dict = {}  # stream -> why, until taken
        self._open: set = set()
        self._closed = False
        self.dropped: dict = {}

    def open(self, stream_id: Hashable) -> None:
        with self._condition:
            self._open.add(stream_id)
            self.dropped.setdefault(stream_id, 0)

    def put(self, stream_id: Hashable, frame, wait: bool) -> bool:
        """Offer a frame; False once the mailbox is closed (the reader should stop)."""
        with self._condition:
            if wait:
                self._condition.wait_for(lambda: stream_id not in self._frames or self._closed)
            if self._closed:
                return False
            if stream_id in self._frames:
                self.dropped[stream_id] += 1
            self._frames[stream_id] = frame
            self._condition.notify_all()
            return True

    def end(self, stream_id: Hashable, reason: str) -> None:
        """The stream's source is done (its file ended, or it stopped: `reason` says which)."""
        with self._condition:
            self._open.discard(stream_id)
            self._ended[stream_id] = reason
            self._condition.notify_all()

    @property
    def finished(self) -> bool:
        with self._condition:
            return not self._open and not self._frames and not self._ended

    def take(self, timeout: float | None = None) -> tuple[dict, dict]:
        """Wait for frames or ends; returns ({stream: newest frame}, {stream: why it ended}). A
        stream's last frame comes before (or with) its end."""
        with self._condition:
            self._condition.wait_for(lambda: self._frames or self._ended or not self._open or self._closed, timeout)
            frames, ended = self._frames, self._ended
            self._frames, self._ended = {}, {}
            self._condition.notify_all()
            return frames, ended

    def close(self) -> None:
        """Release readers waiting to put."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
