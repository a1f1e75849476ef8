"""MultiStreamTracker: SAM 2 on many live streams (cameras) in one process.

Each stream has its own objects, memory bank and current frame (stream_tracker.Stream), all on one
pipeline: `track` takes a frame for each of some streams and runs them as one step
(stream_tracker.track_streams, StreamTracker's step too): their frames in one image-encoder call,
all their objects in one call of memory attention, the mask decoder and the memory encoder, each
row reading its stream's frame. The step changes nothing until every graph ran, so a frame that
fails a check or a graph that fails leaves every stream as it was. A stream missing from the
mapping (its source stalled) sits the step out and keeps its state and its current frame's
features, so prompts on it still work.

A stream's `StreamState` is a picklable snapshot (its memory bank's filled slots as bfloat16 bits,
its objects' prompt bookkeeping, its current frame's logits): `add_stream(id, state)` resumes it in
this or another process. The snapshot holds no image features, so a resumed stream takes a frame
before its next prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np

from .backend import Backend, as_backend
from .checks import (check_box, check_flag, check_frame, check_has_frame, check_int, check_known_object, check_mask,
                     check_object_slot, check_options, check_points)
from .errors import InputError, StreamSamError
from .memory_bank import from_bfloat16_bits, to_bfloat16_bits
from .pipeline import Pipeline
from .prompts import box_prompt
from .results import FrameResult
from .stream_tracker import Stream, _ObjectState, device_guard, track_streams
from .track_step import DEFAULT_FILL_HOLE_AREA


@dataclass(frozen=True)
class ObjectSnapshot:
    """One object of a stream: its bank row's filled slots (slot index, stored frame, content) and
    its bookkeeping. Memories are bfloat16 bits (the bank stores bfloat16 values, so this is exact)."""

    obj_id: int
    tracked_frame: int
    has_output: bool
    points: np.ndarray  # [k, 2] float32, the current frame's clicks in model coordinates
    labels: np.ndarray  # [k] int32
    memory_slots: np.ndarray  # [m] int64
    memory_frames: np.ndarray  # [m] int64
    memories: np.ndarray  # [m, mem_dim, g, g] uint16 (bfloat16 bits)
    pointer_slots: np.ndarray  # [p] int64
    pointer_frames: np.ndarray  # [p] int64
    pointers: np.ndarray  # [p, d_model] float32
    prompt_age: np.ndarray  # [prompted slots] int64: which prompted frame leaves the FIFO first
    logits: np.ndarray  # [h, w] float32, the current frame's
    iou: float
    score: float

    @property
    def nbytes(self) -> int:
        arrays = (self.points, self.labels, self.memory_slots, self.memory_frames, self.memories, self.pointer_slots,
                  self.pointer_frames, self.pointers, self.prompt_age, self.logits)  # fmt: skip
        return sum(a.nbytes for a in arrays) + 32


@dataclass(frozen=True)
class StreamState:
    """A snapshot of one stream: numpy arrays and plain data only (picklable). `model` names the
    sizes it was taken with (image size, memory and pointer slots, dims): it resumes only on graphs
    of the same sizes."""

    frame_index: int
    frame_size: tuple[int, int] | None
    object_ids: tuple[int, ...]
    objects: tuple[ObjectSnapshot, ...]
    model: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return sum(o.nbytes for o in self.objects) + 64


def _model_key(stream: Stream) -> tuple[int, ...]:
    d = stream.dims
    return (d.image_size, d.d_model, d.mem_dim, d.num_maskmem, d.memory_slots, d.pointer_slots)


class MultiStreamTracker:
    """Track objects through several streams at once.

        with MultiStreamTracker("graphs/tiny", max_streams=4) as multi:
            multi.add_stream("cam0"); multi.add_stream("cam1")
            multi.track({"cam0": frame0, "cam1": frame1})     # H x W x 3 uint8 RGB each
            multi.add_points("cam0", 1, [(320, 240)])         # object 1 of cam0, on its current frame
            results = multi.track({"cam0": f0, "cam1": f1})   # {stream id: FrameResult}
    """

    def __init__(
        self,
        graphs: str | Path | Backend,
        max_streams: int = 4,
        max_objects: int = 4,
        fill_hole_area: int = DEFAULT_FILL_HOLE_AREA,
        resize: str = "pil_bicubic",
        precision: str = "fp32",
    ) -> None:
        """`graphs`: a folder written by `streamsam export`, or a Backend. `max_objects` is per
        stream: one call holds up to max_streams x max_objects rows (on TensorRT, the engines'
        objects profile must reach that, and their frames profile max_streams)."""
        self.max_streams = check_int(max_streams, "max_streams", minimum=1)
        self.max_objects, self.fill_hole_area = check_options(max_objects, fill_hole_area, resize)
        self.backend, self._owns_backend = as_backend(graphs, precision)  # "fp32", "int8", "bf16" (runtime/precision.py)
        try:
            self.pipeline = Pipeline(self.backend, self.max_streams * self.max_objects, resize, max_frames=self.max_streams)
        except BaseException:
            if self._owns_backend:
                self.backend.close()
            raise
        self._streams: dict[Hashable, Stream] = {}  # in the order added
        self._needs_frame: set = set()  # streams resumed from a snapshot: no features until a frame
        self._closed: StreamSamError | None = None

    def __enter__(self) -> MultiStreamTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free every stream's buffers and the backend it opened itself."""
        if self._closed is None:
            self._closed = InputError("MultiStreamTracker | received a call after close(); expected an open tracker. "
                                      "Open a new MultiStreamTracker")  # fmt: skip
            for stream in self._streams.values():
                stream.close()
            self._streams.clear()
            self.pipeline.close()
            if self._owns_backend:
                self.backend.close()

    @property
    def stream_ids(self) -> tuple:
        return tuple(self._streams)

    # -- streams

    def add_stream(self, stream_id: Hashable, state: StreamState | None = None) -> None:
        """Open a stream; with `state`, it resumes from that snapshot (its next call is a frame)."""
        self._require_open()
        _check_hashable(stream_id)
        if stream_id in self._streams:
            raise InputError(f"add_stream | received stream id {stream_id!r}, already open; expected a new id. "
                             f"Open streams: {list(self._streams)}; remove it first to reopen it")  # fmt: skip
        if len(self._streams) >= self.max_streams:
            raise InputError(
                f"add_stream {stream_id!r} | received a stream beyond the capacity ({len(self._streams)} open); expected at most "
                f"max_streams={self.max_streams}. Remove a stream (remove_stream) or open the MultiStreamTracker with a larger max_streams"
            )
        if state is not None and not isinstance(state, StreamState):
            raise InputError(f"add_stream {stream_id!r} | received state of type {type(state).__name__}; expected a StreamState "
                             "(MultiStreamTracker.state) or None")  # fmt: skip
        used = {s.slot for s in self._streams.values()}
        slot = min(set(range(self.max_streams)) - used)
        stream = Stream(self.pipeline, self.max_objects, self.fill_hole_area, slot)
        try:
            if state is not None:
                _restore(stream, state, stream_id)
        except BaseException:
            stream.close()
            raise
        self._streams[stream_id] = stream
        if state is not None:
            self._needs_frame.add(stream_id)

    def remove_stream(self, stream_id: Hashable) -> None:
        """Close a stream and free its buffers; its id can be added again."""
        self._stream(stream_id).close()
        del self._streams[stream_id]
        self._needs_frame.discard(stream_id)

    def state(self, stream_id: Hashable) -> StreamState:
        """A snapshot of the stream (see StreamState); the stream goes on unchanged."""
        return _snapshot(self._stream(stream_id))

    def stream_nbytes(self, stream_id: Hashable) -> int:
        """The memory the stream holds: its memory bank, its current frame's outputs and its frame's
        features (in both of the pipeline's buffers). The pipeline's other buffers are shared."""
        return self._stream(stream_id).nbytes

    # -- frames

    def track(self, frames: Mapping[Hashable, np.ndarray]) -> dict[Hashable, FrameResult]:
        """One step over the streams given: each segments its objects on its new frame. Streams not
        in `frames` sit out unchanged. Every frame is checked before anything runs."""
        self._require_open()
        if not isinstance(frames, Mapping):
            raise InputError(f"track | received {type(frames).__name__}; expected a mapping of stream id to frame "
                             "(H x W x 3 uint8 RGB), e.g. {'cam0': frame}")  # fmt: skip
        checked = {}
        for stream_id, frame in frames.items():
            stream = self._stream(stream_id)
            checked[stream_id] = check_frame(frame, stream.frame_size, subject=f"frame of stream {stream_id!r}")
        if checked:
            # In slot order: a step over every stream then swaps the feature buffers instead of copying.
            order = sorted(checked, key=lambda s: self._streams[s].slot)
            with device_guard(self):
                track_streams(self.pipeline, [self._streams[s] for s in order], [checked[s] for s in order],
                              [s.slot for s in self._streams.values()])()  # fmt: skip
        self._needs_frame.difference_update(checked)
        return {s: self._streams[s].result() for s in checked}

    # -- prompts, on a stream's current frame

    def add_points(self, stream_id: Hashable, obj_id: int, points, labels=None, clear_old_points: bool = True) -> FrameResult:
        """Clicks on the stream's current frame, as StreamTracker.add_points."""
        stream = self._prompted(stream_id)
        size = check_has_frame(stream.frame_size)
        obj_id = check_object_slot(obj_id, stream.object_ids, self.max_objects)
        pts, lbl = check_points(points, labels, size, required=True)
        clear_old_points = check_flag(clear_old_points, "clear_old_points")
        with device_guard(self):
            return stream.prompt_points(obj_id, pts, lbl, clear_old_points)

    def add_box(self, stream_id: Hashable, obj_id: int, box, points=None, labels=None) -> FrameResult:
        """A box (and clicks) on the stream's current frame, as StreamTracker.add_box."""
        stream = self._prompted(stream_id)
        size = check_has_frame(stream.frame_size)
        obj_id = check_object_slot(obj_id, stream.object_ids, self.max_objects)
        corners, corner_labels = box_prompt(check_box(box, size))
        pts, lbl = check_points(points, labels, size)
        with device_guard(self):
            return stream.prompt_points(obj_id, np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl]), True)

    def add_mask(self, stream_id: Hashable, obj_id: int, mask) -> FrameResult:
        """A mask on the stream's current frame, as StreamTracker.add_mask."""
        stream = self._prompted(stream_id)
        size = check_has_frame(stream.frame_size)
        obj_id = check_object_slot(obj_id, stream.object_ids, self.max_objects)
        mask = check_mask(mask, size, f"add_mask object {obj_id}")
        with device_guard(self):
            return stream.prompt_mask(obj_id, mask)

    def remove_object(self, stream_id: Hashable, obj_id: int) -> None:
        stream = self._stream(stream_id)
        stream.remove_object(check_known_object(obj_id, stream.object_ids))

    def result(self, stream_id: Hashable) -> FrameResult:
        return self._stream(stream_id).result()

    # -- internals

    def _require_open(self) -> None:
        if self._closed is not None:
            raise self._closed

    def _stream(self, stream_id: Hashable) -> Stream:
        self._require_open()
        try:
            return self._streams[stream_id]
        except (KeyError, TypeError):
            raise InputError(f"stream id | received {stream_id!r}; expected one of the open streams {list(self._streams)}. "
                             "Open it with add_stream first") from None  # fmt: skip

    def _prompted(self, stream_id: Hashable) -> Stream:
        stream = self._stream(stream_id)
        if stream_id in self._needs_frame:
            raise InputError(
                f"prompt on stream {stream_id!r} | received a prompt on a stream resumed from a snapshot before its next frame; "
                "expected a frame first (a snapshot keeps no image features). Call track() with a frame for this stream, then prompt"
            )
        return stream


def _check_hashable(stream_id: object) -> None:
    try:
        hash(stream_id)
    except TypeError:
        raise InputError(f"stream id | received {type(stream_id).__name__} {stream_id!r}; expected a hashable id "
                         "(a string or an integer, say)") from None  # fmt: skip


def _snapshot(stream: Stream) -> StreamState:
    """The stream as plain arrays (downloaded from the device on the device path)."""
    bank, objects = stream.bank, []
    d, g = stream.dims, stream.dims.feat_size
    for row, obj_id in enumerate(stream.object_ids):
        state = stream.objects[obj_id]
        mem_slots = np.flatnonzero(bank.memory_frame[row] >= 0)
        ptr_slots = np.flatnonzero(bank.ptr_frame[row] >= 0)
        memories = [to_bfloat16_bits(np.asarray(bank.memory[row, int(s)], np.float32)) for s in mem_slots]
        pointers = [np.asarray(bank.obj_ptrs[row, int(s)], np.float32) for s in ptr_slots]
        objects.append(ObjectSnapshot(
            obj_id=obj_id,
            tracked_frame=state.tracked_frame,
            has_output=state.has_output,
            points=state.points.copy(),
            labels=state.labels.copy(),
            memory_slots=mem_slots.astype(np.int64),
            memory_frames=bank.memory_frame[row, mem_slots].copy(),
            memories=np.stack(memories) if memories else np.zeros((0, d.mem_dim, g, g), np.uint16),
            pointer_slots=ptr_slots.astype(np.int64),
            pointer_frames=bank.ptr_frame[row, ptr_slots].copy(),
            pointers=np.stack(pointers) if pointers else np.zeros((0, d.d_model), np.float32),
            prompt_age=bank._prompt_age[row].copy(),
            logits=stream.logits[row].copy(),
            iou=float(stream.ious[row]),
            score=float(stream.scores[row]),
        ))  # fmt: skip
    return StreamState(stream.frame_index, stream.frame_size, tuple(stream.object_ids), tuple(objects), _model_key(stream))


def _restore(stream: Stream, state: StreamState, stream_id: Hashable) -> None:
    """Load a snapshot into a fresh stream (checked first: a snapshot of other graphs or of more
    objects than a stream holds is refused)."""
    subject = f"add_stream {stream_id!r} state"
    if state.model != _model_key(stream):
        raise InputError(f"{subject} | received a snapshot of graphs with sizes {state.model}; expected {_model_key(stream)} "
                         "(image size, d_model, mem_dim, num_maskmem, memory and pointer slots). Resume it on the graphs it was taken on")  # fmt: skip
    if len(state.objects) > stream.max_objects:
        raise InputError(f"{subject} | received {len(state.objects)} objects; expected at most max_objects={stream.max_objects}. "
                         "Open the MultiStreamTracker with a larger max_objects")  # fmt: skip
    bank = stream.bank
    for row, obj in enumerate(state.objects):
        for slot, frame, bits in zip(obj.memory_slots, obj.memory_frames, obj.memories):
            bank.memory[row, int(slot)] = from_bfloat16_bits(bits)
            bank.memory_frame[row, int(slot)] = frame
        for slot, frame, pointer in zip(obj.pointer_slots, obj.pointer_frames, obj.pointers):
            bank.obj_ptrs[row, int(slot)] = pointer
            bank.ptr_frame[row, int(slot)] = frame
        bank._prompt_age[row] = obj.prompt_age
        stream.logits[row], stream.ious[row], stream.scores[row] = obj.logits, obj.iou, obj.score
        stream.object_ids.append(obj.obj_id)
        stream.objects[obj.obj_id] = _ObjectState(obj.tracked_frame, obj.points.copy(), obj.labels.copy(), obj.has_output)
    bank._prompt_counter = max([int(o.prompt_age.max(initial=0)) for o in state.objects], default=0)
    stream.frame_index, stream.frame_size = state.frame_index, state.frame_size
