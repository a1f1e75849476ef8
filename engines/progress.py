"""Build progress: TensorRT's IProgressMonitor, printed as one line per finished phase.

TensorRT calls a monitor's phase_start(phase_name, parent_phase, num_steps), step_complete(phase_name,
step) -> bool and phase_finish(phase_name), from several of its threads, so the implementation must be
thread-safe; returning False from step_complete cancels the build (TensorRT Python API,
tensorrt.IProgressMonitor; NVIDIA's samples/python/simple_progress_monitor). Phases nest (parent_phase
names the enclosing one); only the outer levels are printed, so a build prints a screenful, not the
per-layer tactic phases.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class PhaseLog:
    """The bookkeeping behind the monitor, free of TensorRT so it is tested on its own."""

    def __init__(self, prefix: str, write: Callable[[str], None] = print, max_depth: int = 1, clock: Callable[[], float] = time.perf_counter):
        self.prefix = prefix
        self.write = write
        self.max_depth = max_depth
        self.clock = clock
        self.cancelled = False
        self._lock = threading.Lock()
        self._phases: dict[str, dict] = {}

    def start(self, phase: str, parent: str | None, num_steps: int) -> None:
        with self._lock:
            depth = self._phases[parent]["depth"] + 1 if parent in self._phases else 0
            self._phases[phase] = {"depth": depth, "steps": 0, "num_steps": num_steps, "start": self.clock()}

    def step(self, phase: str, step: int) -> bool:
        """Record step `step` (0-based) done; False asks TensorRT to cancel."""
        with self._lock:
            if phase in self._phases:
                self._phases[phase]["steps"] = step + 1
            return not self.cancelled

    def finish(self, phase: str) -> None:
        with self._lock:
            record = self._phases.pop(phase, None)
        if record is None or record["depth"] > self.max_depth:
            return
        indent = "  " * record["depth"]
        self.write(
            f"{self.prefix}{indent}{phase}: {record['steps']}/{record['num_steps']} steps, "
            f"{self.clock() - record['start']:.1f} s"
        )

    def cancel(self) -> None:
        self.cancelled = True


def progress_monitor(trt, log: PhaseLog):
    """A trt.IProgressMonitor forwarding to `log`. Keep it referenced until the build ends: TensorRT
    requires the monitor to outlive every object that uses it (IBuilderConfig.progress_monitor)."""

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            try:
                log.start(phase_name, parent_phase, num_steps)
            except KeyboardInterrupt:  # phase_start cannot cancel; step_complete will
                log.cancel()

        def step_complete(self, phase_name, step):
            try:
                return log.step(phase_name, step)
            except KeyboardInterrupt:
                log.cancel()
                return False

        def phase_finish(self, phase_name):
            try:
                log.finish(phase_name)
            except KeyboardInterrupt:
                log.cancel()

    return _Monitor()
