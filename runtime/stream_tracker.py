"""StreamTracker: SAM 2 on a live stream. Frames arrive one at a time; prompts (clicks, boxes,
masks) apply to the current frame at any time; objects come and go while it runs.

All objects are tracked in one call per graph. Memory is constant: the bank is preallocated for
`max_objects` when the tracker opens, and a frame writes one slot per object. A frame or a prompt
whose graphs fail raises GraphError and leaves the tracker as it was before the call.

A stream's state is a `Stream` on a pipeline that may serve several streams: `track_streams` is
the one per-frame step, over one stream here and over many in multi_stream.MultiStreamTracker (all
their frames in one image-encoder call, all their objects in one call of each other graph).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

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

PROMPT_ROW = 0  # the pipeline row a prompt runs in (a prompt is one object: any row does)


@dataclass
class _ObjectState:
    tracked_frame: int = -1  # last frame this object was tracked on (-1: never)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # current frame, model coords
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    has_output: bool = False  # a mask exists for the current frame (tracked or prompted)


class Stream:
    """One stream on a (possibly shared) pipeline: its objects' memory bank, its current frame's
    outputs and its `slot`, where the pipeline keeps its current frame's features. Prompts run here;
    tracked frames run in `track_streams`. Inputs are checked by the callers' public methods."""

    def __init__(self, pipeline: Pipeline, max_objects: int, fill_hole_area: int, slot: int) -> None:
        self.pipeline, self.dims, self.slot = pipeline, pipeline.dims, slot
        self.bank = MemoryBank(self.dims, max_objects, arrays=pipeline.arrays)
        self.max_objects, self.fill_hole_area = max_objects, fill_hole_area
        lr = self.dims.low_res_size
        self.logits = np.zeros((max_objects, lr, lr), np.float32)  # current frame, per row
        self.ious = np.zeros(max_objects, np.float32)
        self.scores = np.zeros(max_objects, np.float32)
        self.object_ids: list[int] = []  # row order
        self.objects: dict[int, _ObjectState] = {}
        self.frame_index = -1
        self.frame_size: tuple[int, int] | None = None

    def close(self) -> None:
        self.bank.close()

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    @property
    def nbytes(self) -> int:
        """What the stream holds: its bank, its current outputs, its frame's features in both buffers."""
        return self.bank.nbytes + self.logits.nbytes + self.ious.nbytes + self.scores.nbytes + 2 * self.pipeline.frame_nbytes

    # -- prompts on the current frame (checked by the caller)

    def prompt_points(self, obj_id: int, pts: np.ndarray, lbl: np.ndarray, clear_old_points: bool) -> FrameResult:
        row = self._row_for(obj_id)
        state = self.objects.get(obj_id, _ObjectState())
        coords = to_model_coords(pts, self.frame_size, self.dims.image_size)
        if not clear_old_points:
            coords, lbl = np.concatenate([state.points, coords]), np.concatenate([state.labels, lbl])
        # A frame this object was not tracked on is an initial prompted frame: no memory is read.
        is_init = state.tracked_frame != self.frame_index
        sources = NO_MEMORY if is_init else self.bank.sources(row, self.frame_index)
        prev = np.clip(self.logits[row], -PREV_MASK_CLAMP, PREV_MASK_CLAMP) if state.has_output and obj_id in self.objects else None
        p = self.pipeline
        step = prompt_step(p, p.features, PROMPT_ROW, sources, coords, lbl, prev, self.fill_hole_area, frame=self.slot)
        self._finish_prompt(obj_id, row, step, is_cond=is_init)
        state = self.objects[obj_id]
        state.points, state.labels = coords, lbl
        return self.result()

    def prompt_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        row = self._row_for(obj_id)
        p = self.pipeline
        step = mask_step(p, p.features, PROMPT_ROW, mask, self.fill_hole_area, frame=self.slot)
        is_init = self.objects.get(obj_id, _ObjectState()).tracked_frame != self.frame_index
        self._finish_prompt(obj_id, row, step, is_cond=is_init)
        state = self.objects[obj_id]
        state.points, state.labels = state.points[:0], state.labels[:0]
        return self.result()

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object; its row goes to the last object, the others keep their memory."""
        row = self.object_ids.index(obj_id)
        last = self.num_objects - 1
        if row != last:
            self.bank.move_row(last, row)
            for array in (self.logits, self.ious, self.scores):
                array[row] = array[last]
            self.object_ids[row] = self.object_ids[last]
        else:
            self.bank.clear(last)
        self.object_ids.pop()
        del self.objects[obj_id]

    def reset(self) -> None:
        for row in range(self.num_objects):
            self.bank.clear(row)
        self.object_ids.clear()
        self.objects.clear()
        self.frame_index, self.frame_size = -1, None

    def result(self) -> FrameResult:
        n = self.num_objects
        return FrameResult(
            frame_index=self.frame_index,
            object_ids=tuple(self.object_ids),
            low_res_logits=self.logits[:n].copy(),
            ious=self.ious[:n].copy(),
            object_scores=self.scores[:n].copy(),
            source_size=self.frame_size,
        )

    # -- a tracked frame (track_streams)

    def commit_frame(self, step: StepOutput | None, rows: slice, frame_size: tuple[int, int]) -> None:
        """Store the stream's rows `rows` of a tracked step: its memories, pointers and outputs."""
        t = self.frame_index + 1
        for row in range(self.num_objects):
            self.bank.write_recent(row, t, step.memories[rows.start + row], step.obj_ptrs[rows.start + row])
        n = self.num_objects
        if n:
            self.logits[:n], self.ious[:n], self.scores[:n] = step.low_res[rows], step.ious[rows], step.scores[rows]
        self.frame_index, self.frame_size = t, frame_size
        for state in self.objects.values():
            state.tracked_frame, state.has_output = t, True
            state.points, state.labels = state.points[:0], state.labels[:0]

    # -- internals

    def _row_for(self, obj_id: int) -> int:
        """The object's row; a new object's is the next free one (it becomes its row once its prompt succeeds)."""
        return self.object_ids.index(obj_id) if obj_id in self.objects else self.num_objects

    def _finish_prompt(self, obj_id: int, row: int, step: StepOutput, is_cond: bool) -> None:
        """Store a prompted frame's output and its memory. A prompt on a frame the object was
        already tracked on is a correction: as in the official predictor
        (add_all_frames_to_correct_as_cond=False) it replaces that frame's tracked memory rather than
        becoming a prompted frame."""
        p = self.pipeline
        memory = encode_prompted_memory(p, p.features, PROMPT_ROW, step.low_res[0], float(step.scores[0]), frame=self.slot)
        write = self.bank.write_prompted if is_cond else self.bank.write_recent
        write(row, self.frame_index, memory[0], step.obj_ptrs[0])
        if obj_id not in self.objects:
            self.object_ids.append(obj_id)
            self.objects[obj_id] = _ObjectState()
        self.logits[row], self.ious[row], self.scores[row] = step.low_res[0], step.ious[0], step.scores[0]
        self.objects[obj_id].has_output = True


def track_streams(pipeline: Pipeline, streams: Sequence[Stream], frames: Sequence[np.ndarray], occupied: Sequence[int]) -> Callable[[], None]:
    """The per-frame step: a new (checked) frame for each of `streams`, every frame in one
    image-encoder call and every stream's objects in one call of each other graph, each row reading
    its stream's frame. Changes no stream: returns what commits the step (`occupied`: every slot in
    use, for the pipeline to keep the frames of streams that sat the step out)."""
    features = pipeline.encode_image(frames)
    sources, row_frame, spans = [], [], []
    for i, stream in enumerate(streams):
        start = len(sources)
        sources += [stream.bank.sources(row, stream.frame_index + 1) for row in range(stream.num_objects)]
        row_frame += [i] * stream.num_objects
        spans.append(slice(start, len(sources)))
    step = None
    if sources:
        step = track_step(pipeline, features, slice(0, len(sources)), sources, streams[0].fill_hole_area, np.array(row_frame, np.int32))

    def commit() -> None:
        # Every graph ran: the frames are committed.
        for stream, span, frame in zip(streams, spans, frames):
            stream.commit_frame(step, span, frame.shape[:2])
        pipeline.commit_features(features, [s.slot for s in streams], occupied)

    return commit


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
        self.stream = Stream(self.pipeline, max_objects, fill_hole_area, slot=0)
        self.bank = self.stream.bank
        self.max_objects = max_objects
        self.fill_hole_area = fill_hole_area
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
            self.stream.close()
            if self._owns_backend:
                self.pipeline.backend.close()

    @property
    def object_ids(self) -> list[int]:
        return self.stream.object_ids

    @property
    def frame_index(self) -> int:
        return self.stream.frame_index

    @property
    def num_objects(self) -> int:
        return self.stream.num_objects

    def track(self, frame: np.ndarray) -> FrameResult:
        """Segment every object on a new frame; returns the objects' masks on it."""
        self._require_open()
        frame = check_frame(frame, self.stream.frame_size)
        with device_guard(self):
            track_streams(self.pipeline, [self.stream], [frame], [0])()
        return self.stream.result()

    def add_points(self, obj_id: int, points, labels=None, clear_old_points: bool = True) -> FrameResult:
        """Clicks on the current frame (x, y source pixels; labels 1 positive, 0 negative).
        With clear_old_points=False they add to this frame's earlier clicks for the object."""
        self._require_open()
        size = check_has_frame(self.stream.frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        pts, lbl = check_points(points, labels, size, required=True)
        clear_old_points = check_flag(clear_old_points, "clear_old_points")
        with device_guard(self):
            return self.stream.prompt_points(obj_id, pts, lbl, clear_old_points)

    def add_box(self, obj_id: int, box, points=None, labels=None) -> FrameResult:
        """A box (x0, y0, x1, y1) on the current frame, optionally with clicks; replaces the frame's
        earlier clicks for the object (the box comes first, as in the official predictor)."""
        self._require_open()
        size = check_has_frame(self.stream.frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        corners, corner_labels = box_prompt(check_box(box, size))
        pts, lbl = check_points(points, labels, size)
        with device_guard(self):
            return self.stream.prompt_points(obj_id, np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl]), True)

    def add_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        """A mask (H x W) of the object on the current frame: bool, or numbers with nonzero inside."""
        self._require_open()
        size = check_has_frame(self.stream.frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        mask = check_mask(mask, size, f"add_mask object {obj_id}")
        with device_guard(self):
            return self.stream.prompt_mask(obj_id, mask)

    def result(self) -> FrameResult:
        """The objects' masks on the current frame, as the last call left them (after a removal, say)."""
        self._require_open()
        return self.stream.result()

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object; its row goes to the last object, the others keep their memory."""
        self._require_open()
        self.stream.remove_object(check_known_object(obj_id, self.object_ids))

    def reset(self) -> None:
        """Forget every object and frame (a new stream); buffers are kept."""
        self.stream.reset()

    def _require_open(self) -> None:
        if self._closed is not None:
            raise self._closed


@contextmanager
def device_guard(session):
    """A device left unusable (a sticky CUDA error) closes the session: every later call says so."""
    try:
        yield
    except DeviceLostError as exc:
        name = type(session).__name__
        session._closed = DeviceLostError(f"{name} | received a call after the device was lost ({exc}); expected an open "
                                          f"tracker. Restart the process and open a new {name}")  # fmt: skip
        raise
