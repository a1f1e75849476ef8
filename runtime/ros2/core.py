"""The node without ROS: frames with their stamps in, prompts and removals by object id, one
StreamTracker run by one worker thread on the newest frame only, outputs and status out through
callbacks. Both transports (rclpy, rmw_zenoh over eclipse-zenoh) drive this class and nothing else.

Frames: a frame that arrives while another is processed replaces the waiting one (counted in
`dropped`), so the node never falls behind the camera. Prompts carry the stamp of the image they
were made on and land on the newest frame at or after it: the current frame if it is that new, else
the next one that is; the reply names the frame. Every operation runs on the worker thread, so the
tracker is never touched concurrently, and a failed operation changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError, StreamSamError
from ..checks import check_box, check_points
from .outputs import FrameOutput, frame_output

log = logging.getLogger("streamsam.ros2")


@dataclass(frozen=True)
class CoreConfig:
    per_object_masks: bool = False  # also publish one mask per object, beside the label image
    prompt_timeout_s: float = 5.0  # how long a prompt waits for a frame at or after its stamp

    def __post_init__(self) -> None:
        if not self.prompt_timeout_s > 0:
            raise InputError(f"prompt_timeout_s | received {self.prompt_timeout_s}; expected a positive number of seconds")


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt, in pixels of the image it was made on."""

    object_id: int
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # [k, 2] x, y
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # [k] 1 / 0
    mask: np.ndarray | None = None  # [H, W] bool


@dataclass(frozen=True)
class Reply:
    success: bool
    message: str
    stamp_ns: int  # the frame the operation landed on (0 when it failed before any frame)
    object_ids: tuple[int, ...]


@dataclass(frozen=True)
class Status:
    received: int
    processed: int
    dropped: int
    errors: tuple[str, ...]  # the latest errors, newest last


@dataclass
class _Pending:
    kind: str  # "prompt" | "remove"
    stamp_ns: int
    payload: object
    future: Future
    deadline: float


class NodeCore:
    """Own a StreamTracker and feed it from any thread:

        core = NodeCore(tracker, on_output=publish, on_status=report)
        core.start()
        core.submit_frame(stamp_ns, "camera", rgb)             # from the image callback
        reply = core.add_objects(stamp_ns, [ObjectPrompt(1, box=(10, 10, 80, 60))])   # blocks until it lands
        core.close()
    """

    MAX_ERRORS = 8

    def __init__(
        self,
        tracker,
        on_output: Callable[[FrameOutput], None],
        on_status: Callable[[Status], None] | None = None,
        config: CoreConfig = CoreConfig(),
    ) -> None:
        self.tracker = tracker
        self.config = config
        self._on_output, self._on_status = on_output, on_status
        self._cond = threading.Condition()
        self._waiting: tuple[int, str, np.ndarray] | None = None  # the newest unprocessed frame
        self._ops: list[_Pending] = []
        self._stop = False
        self._busy = False  # the worker holds a frame or an operation
        self._thread: threading.Thread | None = None
        self.received = self.processed = self.dropped = 0
        self.stamp_ns: int | None = None  # the current (last processed) frame's stamp
        self.frame_id = ""
        self._size: tuple[int, int] | None = None  # (height, width) of the stream's frames
        self._errors: list[str] = []

    # -- lifecycle
    def start(self) -> NodeCore:
        self._thread = threading.Thread(target=self._run, name="streamsam-node", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> NodeCore:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inputs, from any thread
    def submit_frame(self, stamp_ns: int, frame_id: str, rgb: np.ndarray) -> None:
        with self._cond:
            self.received += 1
            if self._waiting is not None:
                self.dropped += 1
            self._waiting = (int(stamp_ns), frame_id, rgb)
            self._cond.notify_all()

    def report_error(self, text: str) -> None:
        """An input the transport could not use (a bad encoding, bytes that do not deserialise):
        logged and published on the status; the node carries on."""
        log.warning(text)
        with self._cond:
            self._errors = (self._errors + [text])[-self.MAX_ERRORS :]
        self._publish_status()

    def add_objects(self, stamp_ns: int, prompts: list[ObjectPrompt], timeout_s: float | None = None) -> Reply:
        return self._submit("prompt", stamp_ns, list(prompts), timeout_s)

    def remove_object(self, object_id: int, timeout_s: float | None = None) -> Reply:
        return self._submit("remove", 0, int(object_id), timeout_s)

    def status(self) -> Status:
        with self._cond:
            return Status(self.received, self.processed, self.dropped, tuple(self._errors))

    def _submit(self, kind: str, stamp_ns: int, payload, timeout_s: float | None) -> Reply:
        timeout = self.config.prompt_timeout_s if timeout_s is None else timeout_s
        pending = _Pending(kind, int(stamp_ns), payload, Future(), time.monotonic() + timeout)
        with self._cond:
            if self._stop or self._thread is None:
                return self.refusal("node | received a request while it is not running; expected start() first, and no call after close()")
            self._ops.append(pending)
            self._cond.notify_all()
        # The worker answers every op, at the latest when its deadline passes; the margin covers a frame in flight.
        return pending.future.result(timeout=timeout + 60.0)

    # -- the worker
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and self._waiting is None and not self._ready_ops() and not self._expired_ops():
                    self._cond.wait(timeout=self._next_deadline())
                if self._stop:
                    for op in self._ops:
                        op.future.set_result(self.refusal("the node is shutting down"))
                    return
                frame, self._waiting = self._waiting, None
                self._busy = True
            changed = False
            if frame is not None:
                changed = self._track(*frame)
            with self._cond:
                ready, expired = self._ready_ops(), self._expired_ops()
                self._ops = [op for op in self._ops if op not in ready and op not in expired]
            for op in expired:
                op.future.set_result(self.refusal(
                    f"prompt | received stamp {op.stamp_ns} ns; expected a frame at or after it within "
                    f"{self.config.prompt_timeout_s} s (newest frame: {self.stamp_ns} ns). Check the stamp's clock."
                ))
            replies = [(op, self._apply(op)) for op in ready]
            changed |= any(reply.success for _, reply in replies)
            if changed:
                self._emit()
            # Answered once the frame they landed on is published: a client that gets its reply can
            # take the next output as one with its prompt.
            for op, reply in replies:
                op.future.set_result(reply)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def wait_idle(self, timeout_s: float = 60.0) -> bool:
        """Wait until no frame waits and the worker has finished what it took (for bags, tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy and self._waiting is None and not self._ready_ops(), timeout=timeout_s)

    def _ready_ops(self) -> list[_Pending]:
        # Removals land on the current frame; prompts once a frame at or after their stamp is current.
        if self.stamp_ns is None:
            return [op for op in self._ops if op.kind == "remove"]
        return [op for op in self._ops if op.kind == "remove" or op.stamp_ns <= self.stamp_ns]

    def _expired_ops(self) -> list[_Pending]:
        now = time.monotonic()
        return [op for op in self._ops if op.deadline <= now]

    def _next_deadline(self) -> float | None:
        return max(0.0, min(op.deadline for op in self._ops) - time.monotonic()) if self._ops else None

    def _track(self, stamp_ns: int, frame_id: str, rgb: np.ndarray) -> bool:
        try:
            self._result = self.tracker.track(rgb)
        except StreamSamError as exc:  # a frame of another size, a failed graph: the tracker is unchanged
            self.report_error(f"frame {stamp_ns} ns | {exc}")
            return False
        self.stamp_ns, self.frame_id, self._size = stamp_ns, frame_id, rgb.shape[:2]
        with self._cond:
            self.processed += 1
        return True

    def _apply(self, op: _Pending) -> Reply:
        try:
            if op.kind == "remove":
                self.tracker.remove_object(op.payload)
                # StreamTracker has no public read of the current frame's result; after a removal its
                # rows are reordered (the last object takes the removed one's row), so ask it.
                self._result = self.tracker.result()
                return self._success(f"object {op.payload} removed")
            self._check(op.payload)
            for prompt in op.payload:
                self._result = self._prompt(prompt)
            return self._success(f"{len(op.payload)} object(s) prompted on frame {self.stamp_ns} ns")
        except (StreamSamError, ValueError) as exc:
            # _check refuses what the tracker would before anything is applied; a graph failing part
            # way through a request leaves the objects prompted before it (the reply says why).
            return self.refusal(str(exc))

    def _check(self, prompts: list[ObjectPrompt]) -> None:
        """Every prompt is checked before any is applied, so a request fails whole or not at all."""
        if not prompts:
            raise InputError("add_objects | received no prompts; expected at least one box, point or mask")
        size = self._size
        new = {p.object_id for p in prompts} - set(self.tracker.object_ids)
        if self.tracker.num_objects + len(new) > self.tracker.max_objects:
            raise InputError(
                f"add_objects | received {len(new)} new object(s) with {self.tracker.num_objects} tracked; expected at most "
                f"max_objects={self.tracker.max_objects} in all. Remove objects or raise the node's max_objects."
            )
        for p in prompts:
            if p.box is None and len(p.points) == 0 and p.mask is None:
                raise InputError(f"add_objects object {p.object_id} | received no box, point or mask; expected at least one")
            if p.box is not None:
                check_box(p.box, size)
            check_points(p.points, p.labels, size)
            if p.mask is not None and p.mask.shape != size:
                raise InputError(f"add_objects object {p.object_id} | received a {p.mask.shape[1]}x{p.mask.shape[0]} mask; expected the frame's {size[1]}x{size[0]}")

    def _prompt(self, p: ObjectPrompt):
        if p.mask is not None:
            return self.tracker.add_mask(p.object_id, p.mask)
        if p.box is not None:
            return self.tracker.add_box(p.object_id, p.box, p.points if len(p.points) else None, p.labels if len(p.points) else None)
        return self.tracker.add_points(p.object_id, p.points, p.labels)

    def _success(self, message: str) -> Reply:
        return Reply(True, message, self.stamp_ns or 0, tuple(self.tracker.object_ids))

    def refusal(self, message: str) -> Reply:
        """A failed reply that names the current frame and objects (a transport's own refusals too)."""
        return Reply(False, message, self.stamp_ns or 0, tuple(self.tracker.object_ids))

    def _emit(self) -> None:
        try:
            out = frame_output(self._result, self.stamp_ns, self.frame_id, self.dropped, self.config.per_object_masks)
            self._on_output(out)
        except Exception as exc:  # a transport that fails to publish must not stop the tracking
            log.exception("publishing frame %s failed", self.stamp_ns)
            self.report_error(f"publish | received {type(exc).__name__}: {exc}; expected the output published")
        self._publish_status()

    def _publish_status(self) -> None:
        if self._on_status is not None:
            try:
                self._on_status(self.status())
            except Exception:
                log.exception("publishing the status failed")
