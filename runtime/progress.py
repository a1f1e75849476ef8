"""The status line of `streamsam track` and `streamsam demo`: a progress bar for files, the FPS for
live sources. On a terminal it is rewritten in place; in a log (a file, a pipe, systemd, a ROS launch,
CI) carriage returns would pile every frame into one endless line, so it writes a whole line now and
then instead."""

from __future__ import annotations

import sys
import time
from typing import TextIO

LOG_EVERY_S = 10.0  # in a log: at least this long between lines (and a line at every tenth of a file)
FPS_WINDOW = 30  # frames the FPS is measured over: recent speed, not the average since the start


class Progress:
    def __init__(self, total: int | None, live: bool, stream: TextIO | None = None) -> None:
        self.total, self.live = total, live
        self.stream = stream if stream is not None else sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.times: list[float] = []
        self._logged_at, self._logged_tenth = self.start, 0

    def fps(self) -> float:
        recent = self.times[-FPS_WINDOW:]
        return (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0

    def update(self, done: int, dropped: int) -> None:
        """After each frame: `done` frames so far, `dropped` stale frames a live source skipped."""
        now = time.perf_counter()
        self.times.append(now)
        dropped_text = f", {dropped} stale frames dropped" if self.live else ""
        if self.interactive:
            if self.total:
                filled = int(30 * done / self.total)
                line = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} frames, {self.fps():.1f} FPS"
            else:
                line = f"{done} frames, {self.fps():.1f} FPS{dropped_text}"
            print("\r" + line, end="", file=self.stream, flush=True)
            return
        tenth = 10 * done // self.total if self.total else 0
        if tenth > self._logged_tenth or now - self._logged_at >= LOG_EVERY_S:
            self._logged_tenth, self._logged_at = tenth, now
            of_total = f"/{self.total} frames ({100 * done // self.total} %)" if self.total else " frames"
            print(f"{done}{of_total}, {self.fps():.1f} FPS{dropped_text}", file=self.stream, flush=True)

    def close(self) -> None:
        """Ends the line rewritten in place, so that what is printed next starts on its own."""
        if self.interactive and self.times:
            print(file=self.stream, flush=True)
