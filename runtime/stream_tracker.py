"""StreamTracker: SAM 2 on a live stream. Frames arrive one at a time; prompts (clicks, boxes,
masks) apply to the current frame at any time; objects come and go while it runs.

All objects are tracked in one call per graph. Memory is constant: the bank is preallocated for
`max_objects` when the tracker opens, and a frame writes one slot per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backend import Backend, OnnxRuntimeBackend
from .contracts import NO_OBJECT_LOGIT
from .checks import (check_box, check_flag, check_frame, check_has_frame, check_known_object, check_mask,
                     check_object_slot, check_options, check_points)
from .errors import StreamSamError
from .image_ops import PREV_MASK_CLAMP, antialias_resize, fill_holes
from .pipeline import open_pipeline
from .prompts import box_prompt, to_model_coords
from .results import FrameResult

MASK_PROMPT_SCALE, MASK_PROMPT_BIAS = 20.0, -10.0  # a mask prompt as logits (official _use_mask_as_output)
DEFAULT_FILL_HOLE_AREA = 8  # the official video predictor's default


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
    ) -> None:
        """`graphs`: a folder written by `streamsam export`, or a Backend. `resize`: how frames are
        brought to the model size (image_ops.RESIZE_MODES; the default is the official video
        predictor's, "fast" trades bit-parity for speed)."""
        max_objects, fill_hole_area = check_options(max_objects, fill_hole_area, resize)
        backend = graphs if hasattr(graphs, "run") else OnnxRuntimeBackend(graphs)
        self.pipeline = open_pipeline(backend, max_objects, resize)
        self.dims = self.pipeline.dims
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

    # -- context manager: buffers live as long as the tracker; nothing to free beyond them
    def __enter__(self) -> StreamTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.reset()

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    def track(self, frame: np.ndarray) -> FrameResult:
        """Segment every object on a new frame; returns the objects' masks on it."""
        frame = check_frame(frame, self._frame_size)
        p = self.pipeline
        p.encode_image(frame)
        t = self.frame_index + 1
        n = self.num_objects
        if n:
            rows = slice(0, n)
            p.bank.select(rows, t)
            features = p.attend(rows)
            out = p.decode(rows, features, None, None, None, multimask=True)
            memory = p.encode_memory(rows, out["high_res_masks"], out["object_score_logits"], from_points=False)
            for row in range(n):
                p.bank.write_recent(row, t, memory[row], out["obj_ptr"][row])
            self._store_outputs(rows, out)
        # The frame is committed only once every graph has run.
        self.frame_index, self._frame_size = t, frame.shape[:2]
        for state in self._objects.values():
            state.tracked_frame, state.has_output = t, True
            state.points, state.labels = state.points[:0], state.labels[:0]
        return self._result()

    def add_points(self, obj_id: int, points, labels=None, clear_old_points: bool = True) -> FrameResult:
        """Clicks on the current frame (x, y source pixels; labels 1 positive, 0 negative).
        With clear_old_points=False they add to this frame's earlier clicks for the object."""
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        pts, lbl = check_points(points, labels, size, required=True)
        clear_old_points = check_flag(clear_old_points, "clear_old_points")
        return self._prompt_points(obj_id, pts, lbl, clear_old_points)

    def add_box(self, obj_id: int, box, points=None, labels=None) -> FrameResult:
        """A box (x0, y0, x1, y1) on the current frame, optionally with clicks; replaces the frame's
        earlier clicks for the object (the box comes first, as in the official predictor)."""
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        corners, corner_labels = box_prompt(check_box(box, size))
        pts, lbl = check_points(points, labels, size)
        return self._prompt_points(obj_id, np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl]), True)

    def add_mask(self, obj_id: int, mask: np.ndarray) -> FrameResult:
        """A mask (H x W) of the object on the current frame: bool, or numbers with nonzero inside."""
        size = check_has_frame(self._frame_size)
        obj_id = check_object_slot(obj_id, self.object_ids, self.max_objects)
        mask = check_mask(mask, size, f"add_mask object {obj_id}")
        row = self._row_for(obj_id)
        p, s, lr = self.pipeline, self.dims.image_size, self.dims.low_res_size
        # As the official add_new_mask: antialiased resize to the model size, then >= 0.5.
        mask_s = (antialias_resize(mask.astype(np.float32), s, s) >= 0.5).astype(np.float32)
        present = bool(mask_s.any())
        rows = slice(row, row + 1)
        # The decoder runs on the frame's own features only for the pointer (_use_mask_as_output).
        mask_input = p.downsample_mask_prompt(mask_s)[None, None]
        out = p.decode(rows, p.image_embed, None, None, mask_input, multimask=False)
        obj_ptr = out["obj_ptr"][0] if present else p.no_obj_ptr
        high = mask_s * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS
        low = antialias_resize(high, lr, lr)
        score = MASK_PROMPT_SCALE + MASK_PROMPT_BIAS if present else MASK_PROMPT_BIAS
        is_init = self._objects.get(obj_id, _ObjectState()).tracked_frame != self.frame_index
        self._finish_prompt(obj_id, row, low, 1.0, score, obj_ptr, is_cond=is_init)
        state = self._objects[obj_id]
        state.points, state.labels = state.points[:0], state.labels[:0]
        return self._result()

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object; its row goes to the last object, the others keep their memory."""
        obj_id = check_known_object(obj_id, self.object_ids)
        row = self._known_row(obj_id)
        last = self.num_objects - 1
        bank = self.pipeline.bank
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
            self.pipeline.bank.clear(row)
        self.object_ids.clear()
        self._objects.clear()
        self.frame_index, self._frame_size = -1, None

    # -- internals

    def _require_frame(self) -> tuple[int, int]:
        if self._frame_size is None:
            raise StreamSamError("prompt | received a prompt before any frame; expected track(frame) first: prompts apply to the current frame")
        return self._frame_size

    def _known_row(self, obj_id: int) -> int:
        if obj_id not in self._objects:
            raise StreamSamError(f"object id | received {obj_id}; expected one of the tracked objects {self.object_ids}")
        return self.object_ids.index(obj_id)

    def _row_for(self, obj_id: int) -> int:
        if obj_id in self._objects:
            return self.object_ids.index(obj_id)
        if self.num_objects >= self.max_objects:
            raise StreamSamError(
                f"add object {obj_id} | received a {self.max_objects + 1}th object; expected at most max_objects="
                f"{self.max_objects}. Remove an object or open the tracker with a larger max_objects."
            )
        return self.num_objects  # becomes the object's row once its prompt succeeds

    def _prompt_points(self, obj_id: int, pts: np.ndarray, lbl: np.ndarray, clear_old_points: bool) -> FrameResult:
        size = self._frame_size
        row = self._row_for(obj_id)
        state = self._objects.get(obj_id, _ObjectState())
        coords = to_model_coords(pts, size, self.dims.image_size)
        if not clear_old_points:
            coords, lbl = np.concatenate([state.points, coords]), np.concatenate([state.labels, lbl])
        p, rows = self.pipeline, slice(row, row + 1)
        # A frame this object was not tracked on is an initial prompted frame: no memory is read.
        is_init = state.tracked_frame != self.frame_index
        if is_init:
            p.bank.forget_memory_of_rows(rows)
        else:
            p.bank.select(rows, self.frame_index)
        features = p.attend(rows)
        prev = np.clip(self._logits[row], -PREV_MASK_CLAMP, PREV_MASK_CLAMP)[None, None] if state.has_output and obj_id in self._objects else None
        multimask = len(lbl) <= 1  # the official multimask_max_pt_num
        out = p.decode(rows, features, coords[None], lbl[None], prev, multimask)
        self._finish_prompt(obj_id, row, out["low_res_masks"][0, 0], float(out["ious"][0, 0]),
                            float(out["object_score_logits"][0, 0]), out["obj_ptr"][0], is_cond=is_init)
        state = self._objects[obj_id]
        state.points, state.labels = coords, lbl
        return self._result()

    def _finish_prompt(
        self, obj_id: int, row: int, low_res: np.ndarray, iou: float, score: float, obj_ptr: np.ndarray, is_cond: bool
    ) -> None:
        """Store a prompted frame's output: hole-filled logits, and its memory (encoded from them,
        binarised, as the official predictor does when it consolidates a prompt). A prompt on a frame
        the object was already tracked on is a correction: as in the official predictor
        (add_all_frames_to_correct_as_cond=False) it replaces that frame's tracked memory rather than
        becoming a prompted frame."""
        p, s = self.pipeline, self.dims.image_size
        logits = fill_holes(np.array(low_res, np.float32)[None], self.fill_hole_area)
        # Bilinear upsampling, exact (OpenCV's is within 1e-4): the memory sees these logits.
        high = antialias_resize(logits[0], s, s)[None, None]
        rows = slice(row, row + 1)
        memory = p.encode_memory(rows, high, np.array([[score]], np.float32), from_points=True)
        write = p.bank.write_prompted if is_cond else p.bank.write_recent
        write(row, self.frame_index, memory[0], obj_ptr)
        if obj_id not in self._objects:
            self.object_ids.append(obj_id)
            self._objects[obj_id] = _ObjectState()
        self._logits[row], self._ious[row], self._scores[row] = logits[0], iou, score
        self._objects[obj_id].has_output = True

    def _store_outputs(self, rows: slice, out: dict[str, np.ndarray]) -> None:
        logits = self._logits[rows]
        # np.asarray: the only host reads of a tracked frame (a download on the device path).
        logits[...] = np.asarray(out["low_res_masks"])[:, 0]
        fill_holes(logits, self.fill_hole_area)
        self._ious[rows] = np.asarray(out["ious"])[:, 0]
        self._scores[rows] = np.asarray(out["object_score_logits"])[:, 0]

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


__all__ = ["StreamTracker", "NO_OBJECT_LOGIT"]
