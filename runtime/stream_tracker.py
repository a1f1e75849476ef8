"""StreamTracker: SAM 2 on a live stream. Frames arrive one at a time; prompts (clicks, boxes,
masks) apply to the current frame at any time; objects come and go while it runs.

All objects are tracked in one call per graph. Memory is constant: the bank is preallocated for
`max_objects` when the tracker opens, and a frame writes one slot per object. A frame or a prompt
whose graphs fail raises GraphError and leaves the tracker as it was before the call.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import Backend, as_backend
from .checks import (check_box, check_flag, check_frame, check_has_frame, check_known_object, check_mask,
                     check_object_slot, check_options, check_points)
from .errors import DeviceLostError, InputError, StreamSamError
from .image_ops import PREV_MASK_CLAMP
from .memory_bank import NO_MEMORY, MemoryBank
from .prompts import box_prompt, to_model_coords
from .results import FrameResult
from .pipeline import Pipeline
from .track_step import DEFAULT_FILL_HOLE_AREA, StepOutput, encode_prompted_memory, mask_step, prompt_step, track_step


@dataclass
class _ObjectState:
    tracked_frame: int = -1  # last frame this object was tracked on (-1: never)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # current frame, model coords
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    has_output: bool = False  # a mask exists for the current frame (tracked or prompted)


class StreamTracker:
    """Track objects through a stream of frames.

        tracker = StreamTracker("graphs/tiny")           # a folder written by `streamsam export`
        result = tracker.track(frame)                    # H x W x 3 uint8 RGB
        result = tracker.add_points(1, [(320, 240)])     # object 1, on the current frame
        for frame in frames:
            result = tracker.track(frame)                # result.masks [n, H, W], result.visible
    """

    def __init__(
        self,
        graphs: str | Path | Backend,
        max_objects: int = 4,
        fill_hole_area: int = DEFAULT_FILL_HOLE_AREA,
        resize: str = "pil_bicubic",
        precision: str = "fp32",
    ) -> None:
        """`graphs`: a folder written by `streamsam export`, or a Backend. `resize`: how frames are
        brought to the model size (image_ops.RESIZE_MODES; the default is the official video
        predictor's, "fast" trades bit-parity for speed)."""
        max_objects, fill_hole_area = check_options(max_objects, fill_hole_area, resize)
        backend, self._owns_backend = as_backend(graphs, precision)  # precision: "fp32", "int8", "bf16" (runtime/precision.py)
        self.pipeline = Pipeline(backend, max_objects, resize)
        self.dims = self.pipeline.dims
        self.bank = MemoryBank(self.dims, max_objects, arrays=self.pipeline.arrays)
        self.max_objects = max_objects
        self.fill_hole_area = fill_hole_area
        lr = self.dims.low_res_size
        self._logits = np.zeros((max_objects, lr, lr), np.float32)  # current frame, per row
        self._ious = np.zeros(max_objects, np.float32)
        self._scores = np.zeros(max_objects, np.float32)
        self.object_ids: list[int] = []  # row order
        self._objects: dict[int, _ObjectState] = {}
        self.frame_index = -1
        self._frame_size: tuple[int, int] | None = None
        self._closed: StreamSamError | None = None  # what a call after close raises

    def __enter__(self) -> StreamTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the tracker's buffers (device memory on a device backend) and the backend it opened
        itself; a backend passed in stays open for its owner."""
        if self._closed is None:
            self._closed = InputError("StreamTracker | received a call after close(); expected an open tracker. Open a new StreamTracker")
            self.pipeline.close()
            self.bank.close()
            if self._owns_backend:
                self.pipeline.backend.close()

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    def track(self, frame: np.ndarray) -> FrameResult:
        """Segment every object on a new frame; returns the objects' masks on it."""
        self._require_open()
        frame = check_frame(frame, self._frame_size)
        t, n = self.frame_index + 1, self.num_objects
        with self._device_guard():
            features = self.pipeline.encode_image(frame)
            if n:
                rows = slice(0, n)
                step = track_step(self.pipeline, features, rows, [self.bank.sources(row, t) for row in range(n)], self.fill_hole_area)
                for row in range(n):
                    self.bank.write_recent(row, t, step.memories[row], step.obj_ptrs[row])
        # Every graph ran: the frame is committed.
        self.pipeline.features = features
        if n:
            self._store_outputs(rows, step)
        self.frame_index, self._frame_size = t, frame.shape[:2]
        for state in self._objects.values():
            state.tracked_frame, state.has_output = t, True
            state.points, state.labels = state.points[:0], state.labels[:0]
        return self._result()

    def add_points(self, obj_id: int, points, labels=None, clear_old_points: bool = True) -> FrameResult:
        """Clicks on the current frame (x, y source pixels; labels 1 positive, 0 negative).
        With clear_old_points=False they add to this frame's earlier clicks for the object."""
        self._require_open()
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        pts, lbl = check_points(points, labels, size, required=True)
        clear_old_points = check_flag(clear_old_points, "clear_old_points")
        return self._prompt_points(obj_id, pts, lbl, clear_old_points)

    def add_box(self, obj_id: int, box, points=None, labels=None) -> FrameResult:
        """A box (x0, y0, x1, y1) on the current frame, optionally with clicks; replaces the frame's
        earlier clicks for the object (the box comes first, as in the official predictor)."""
        self._require_open()
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        corners, corner_labels = box_prompt(check_box(box, size))
        pts, lbl = check_points(points, labels, size)
        return self._prompt_points(obj_id, np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl]), True)

    def add_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        """A mask (H x W) of the object on the current frame: bool, or numbers with nonzero inside."""
        self._require_open()
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        mask = check_mask(mask, size, f"add_mask object {obj_id}")
        row = self._row_for(obj_id)
        with self._device_guard():
            step = mask_step(self.pipeline, self.pipeline.features, row, mask, self.fill_hole_area)
            is_init = self._objects.get(obj_id, _ObjectState()).tracked_frame != self.frame_index
            self._finish_prompt(obj_id, row, step, is_cond=is_init)
        state = self._objects[obj_id]
        state.points, state.labels = state.points[:0], state.labels[:0]
        return self._result()

    def result(self) -> FrameResult:
        """The objects' masks on the current frame, as the last call left them (after a removal, say)."""
        self._require_open()
        return self._result()

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object; its row goes to the last object, the others keep their memory."""
        self._require_open()
        obj_id = check_known_object(obj_id, self.object_ids)
        row = self.object_ids.index(obj_id)
        last = self.num_objects - 1
        bank = self.bank
        if row != last:
            bank.move_row(last, row)
            for array in (self._logits, self._ious, self._scores):
                array[row] = array[last]
            self.object_ids[row] = self.object_ids[last]
        else:
            bank.clear(last)
        self.object_ids.pop()
        del self._objects[obj_id]

    def reset(self) -> None:
        """Forget every object and frame (a new stream); buffers are kept."""
        for row in range(self.num_objects):
            self.bank.clear(row)
        self.object_ids.clear()
        self._objects.clear()
        self.frame_index, self._frame_size = -1, None

    # -- internals

    def _row_for(self, obj_id: int) -> int:
        """The object's row; a new object's is the next free one (it becomes its row once its prompt succeeds)."""
        return self.object_ids.index(obj_id) if obj_id in self._objects else self.num_objects

    def _prompt_points(self, obj_id: int, pts: np.ndarray, lbl: np.ndarray, clear_old_points: bool) -> FrameResult:
        row = self._row_for(obj_id)
        state = self._objects.get(obj_id, _ObjectState())
        coords = to_model_coords(pts, self._frame_size, self.dims.image_size)
        if not clear_old_points:
            coords, lbl = np.concatenate([state.points, coords]), np.concatenate([state.labels, lbl])
        # A frame this object was not tracked on is an initial prompted frame: no memory is read.
        is_init = state.tracked_frame != self.frame_index
        sources = NO_MEMORY if is_init else self.bank.sources(row, self.frame_index)
        prev = np.clip(self._logits[row], -PREV_MASK_CLAMP, PREV_MASK_CLAMP) if state.has_output and obj_id in self._objects else None
        with self._device_guard():
            step = prompt_step(self.pipeline, self.pipeline.features, row, sources, coords, lbl, prev, self.fill_hole_area)
            self._finish_prompt(obj_id, row, step, is_cond=is_init)
        state = self._objects[obj_id]
        state.points, state.labels = coords, lbl
        return self._result()

    def _finish_prompt(self, obj_id: int, row: int, step: StepOutput, is_cond: bool) -> None:
        """Store a prompted frame's output and its memory. A prompt on a frame the object was
        already tracked on is a correction: as in the official predictor
        (add_all_frames_to_correct_as_cond=False) it replaces that frame's tracked memory rather than
        becoming a prompted frame."""
        p = self.pipeline
        memory = encode_prompted_memory(p, p.features, row, step.low_res[0], float(step.scores[0]))
        write = self.bank.write_prompted if is_cond else self.bank.write_recent
        write(row, self.frame_index, memory[0], step.obj_ptrs[0])
        if obj_id not in self._objects:
            self.object_ids.append(obj_id)
            self._objects[obj_id] = _ObjectState()
        self._store_outputs(slice(row, row + 1), step)
        self._objects[obj_id].has_output = True

    def _store_outputs(self, rows: slice, step: StepOutput) -> None:
        self._logits[rows], self._ious[rows], self._scores[rows] = step.low_res, step.ious, step.scores

    def _require_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    @contextmanager
    def _device_guard(self):
        """A device left unusable (a sticky CUDA error) closes the tracker: every later call says so."""
        try:
            yield
        except DeviceLostError as exc:
            self._closed = DeviceLostError(f"StreamTracker | received a call after the device was lost ({exc}); expected an open "
                                           "tracker. Restart the process and open a new StreamTracker")
            raise

    def _result(self) -> FrameResult:
        n = self.num_objects
        return FrameResult(
            frame_index=self.frame_index,
            object_ids=tuple(self.object_ids),
            low_res_logits=self._logits[:n].copy(),
            ious=self._ious[:n].copy(),
            object_scores=self._scores[:n].copy(),
            source_size=self._frame_size,
        )

