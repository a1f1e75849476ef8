"""VideoPredictor: the official SAM2VideoPredictor's verbs on a video file or a folder of frames,
through the four graphs.

The rules are the official predictor's (sam2/sam2_video_predictor.py): a prompt on a frame the
object was not tracked on starts a prompted (conditioning) frame that reads no memory; a prompt on
a tracked frame is a correction of that frame (add_all_frames_to_correct_as_cond=False); new clicks
reuse the frame's previous mask logits; prompts wait in a temporary store until propagation encodes
their memories; propagation reuses prompted frames' outputs and recomputes every other frame.

What is kept per object and frame is what those rules can read again: the frame's memory in
bfloat16 (as the official predictor stores it), its object pointer, score, IoU and low-res logits.
Image features are computed for one frame at a time, never stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .backend import Backend, as_backend
from .contracts import NO_OBJECT_LOGIT
from .checks import (check_box, check_box_with_clicks, check_flag, check_frame_count, check_frame_index, check_known_object,
                     check_mask, check_object_slot, check_options, check_points, check_video)
from .errors import InputError
from .image_ops import PREV_MASK_CLAMP
from .memory_bank import NO_MEMORY, MemorySources, SelectionRule, from_bfloat16_bits, to_bfloat16_bits
from .pipeline import Features, Pipeline
from .prompts import box_prompt, to_model_coords
from .results import FrameResult
from .track_step import DEFAULT_FILL_HOLE_AREA, StepOutput, encode_prompted_memory, mask_step, prompt_step, track_step
from .video_frames import VideoFrames


@dataclass
class FrameOutput:
    """One object's output on one frame."""

    low_res: np.ndarray  # [h, w] float32 logits, hole-filled
    obj_ptr: np.ndarray  # [d]
    score: float
    iou: float
    memory_bits: np.ndarray | None = None  # [mem, g, g] bfloat16 bits; None until encoded

    @property
    def memory(self) -> np.ndarray:
        return from_bfloat16_bits(self.memory_bits)


@dataclass
class ObjectTrack:
    """Everything the predictor keeps about one object (the official per-object dicts, typed)."""

    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    points: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model coords, labels
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)  # frame -> tracked in reverse

    def output(self, frame: int, temp: dict[int, FrameOutput] | None = None) -> FrameOutput | None:
        for store in (temp or {}, self.cond, self.non_cond):
            if frame in store:
                return store[frame]
        return None


class VideoPredictor:
    """
        predictor = VideoPredictor("graphs/tiny")
        predictor.init_state("video.mp4")                       # or a folder of frames, or a list
        predictor.add_new_points_or_box(0, obj_id=1, points=[(210, 350)], labels=[1])
        for result in predictor.propagate_in_video():
            result.masks                                          # [objects, H, W] bool
    """

    def __init__(
        self,
        graphs: str | Path | Backend,
        max_objects: int = 8,
        fill_hole_area: int = DEFAULT_FILL_HOLE_AREA,
        resize: str = "pil_bicubic",
        tracked_memories: bool = True,
        precision: str = "fp32",
    ) -> None:
        """`tracked_memories=False`: frames read only the prompted frames' memories and pointers
        (the memory-off ablation training/evaluate.py measures)."""
        max_objects, fill_hole_area = check_options(max_objects, fill_hole_area, resize)
        tracked_memories = check_flag(tracked_memories, "tracked_memories")
        backend, self._owns_backend = as_backend(graphs, precision)  # precision: "fp32", "int8", "bf16" (runtime/precision.py)
        self.pipeline = Pipeline(backend, max_objects, resize)
        self.dims = self.pipeline.dims
        self.rule = SelectionRule(self.dims.num_maskmem, max_prompted=self.dims.max_prompted_frames, tracked_memories=tracked_memories)
        self.max_objects = max_objects
        self.fill_hole_area = fill_hole_area
        self.frames: VideoFrames | None = None
        self.objects: dict[int, ObjectTrack] = {}
        self._encoded_frame: int | None = None

    def __enter__(self) -> VideoPredictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Free the predictor's buffers (device memory on a device backend) and the backend it
        opened itself; a backend passed in stays open for its owner."""
        self.pipeline.close()
        if self._owns_backend:
            self.pipeline.backend.close()

    # -- the official verbs

    def init_state(self, video: str | Path | Sequence[np.ndarray]) -> None:
        """Open a video (file, folder of frames, or a list of H x W x 3 uint8 frames)."""
        self.frames = VideoFrames(video)
        self.objects.clear()
        self._encoded_frame = None

    @property
    def num_frames(self) -> int:
        return len(check_video(self.frames))

    @property
    def obj_ids(self) -> list[int]:
        return list(self.objects)

    def reset_state(self) -> None:
        """Forget every object and prompt; the video stays open."""
        self.objects.clear()

    def add_new_points_or_box(
        self, frame_idx: int, obj_id: int, points=None, labels=None, clear_old_points: bool = True, box=None
    ) -> FrameResult:
        """Clicks (labels 1 / 0) and / or a box on a frame, in source pixels."""
        frames = check_video(self.frames)
        frame_idx = check_frame_index(frame_idx, len(frames))
        obj_id = check_object_slot(obj_id, self.obj_ids, self.max_objects)
        check_box_with_clicks(box, check_flag(clear_old_points, "clear_old_points"))
        size = (frames.height, frames.width)
        pts, lbl = check_points(points, labels, size, required=box is None)
        if box is not None:
            corners, corner_labels = box_prompt(check_box(box, size))
            pts, lbl = np.concatenate([corners, pts]), np.concatenate([corner_labels, lbl])
        track = self.objects[obj_id] if obj_id in self.objects else ObjectTrack()
        coords = to_model_coords(pts, size, self.dims.image_size)
        if not clear_old_points and frame_idx in track.points:
            old_coords, old_labels = track.points[frame_idx]
            coords, lbl = np.concatenate([old_coords, coords]), np.concatenate([old_labels, lbl])

        is_init = frame_idx not in track.tracked
        reverse = False if is_init else track.tracked[frame_idx]
        temp = track.temp_cond if is_init else track.temp_non_cond
        prev = track.output(frame_idx, temp)
        prev_logits = None if prev is None else np.clip(prev.low_res, -PREV_MASK_CLAMP, PREV_MASK_CLAMP)

        features = self._encode(frame_idx)
        sources = NO_MEMORY if is_init else self._sources(track, frame_idx, reverse)
        output = self._frame_output(prompt_step(self.pipeline, features, 0, sources, coords, lbl, prev_logits, self.fill_hole_area))
        # Inputs are recorded only once the frame ran: a failure leaves the object as it was.
        self.objects[obj_id] = track
        track.points[frame_idx] = (coords, lbl)
        track.masks.pop(frame_idx, None)
        temp[frame_idx] = output
        return self._consolidated(frame_idx, is_cond=is_init)

    def add_new_mask(self, frame_idx: int, obj_id: int, mask: np.ndarray) -> FrameResult:
        """A mask (H x W: bool, or numbers with nonzero inside) of the object on a frame: it becomes
        the frame's output as it is."""
        frame_idx = check_frame_index(frame_idx, len(check_video(self.frames)))
        obj_id = check_object_slot(obj_id, self.obj_ids, self.max_objects)
        mask = check_mask(mask, None, f"add_new_mask object {obj_id}")
        track = self.objects[obj_id] if obj_id in self.objects else ObjectTrack()
        is_init = frame_idx not in track.tracked
        temp = track.temp_cond if is_init else track.temp_non_cond
        output = self._frame_output(mask_step(self.pipeline, self._encode(frame_idx), 0, mask, self.fill_hole_area))
        self.objects[obj_id] = track
        track.masks[frame_idx] = mask
        track.points.pop(frame_idx, None)
        temp[frame_idx] = output
        return self._consolidated(frame_idx, is_cond=is_init)

    def propagate_in_video(
        self, start_frame_idx: int | None = None, max_frame_num_to_track: int | None = None, reverse: bool = False
    ) -> Iterator[FrameResult]:
        """Track every object through the video from `start_frame_idx` (default: the first prompted
        frame), forward or in reverse; yields one result per frame."""
        check_video(self.frames)
        if start_frame_idx is not None:
            start_frame_idx = check_frame_index(start_frame_idx, len(self.frames), "start_frame_idx")
        max_frame_num_to_track = check_frame_count(max_frame_num_to_track, "max_frame_num_to_track")
        reverse = check_flag(reverse, "reverse")
        self._preflight()
        num_frames = self.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(f for track in self.objects.values() for f in track.cond)
        span = num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if reverse:
            end = max(start_frame_idx - span, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + span, num_frames - 1)
            order = range(start_frame_idx, end + 1)
        for frame in order:
            yield self._propagate_frame(frame, reverse)

    def clear_all_prompts_in_frame(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove an object's prompts on a frame; a prompted frame becomes an ordinary tracked one."""
        frame_idx = check_frame_index(frame_idx, len(check_video(self.frames)))
        obj_id = check_known_object(obj_id, self.obj_ids)
        track = self.objects[obj_id]
        track.points.pop(frame_idx, None)
        track.masks.pop(frame_idx, None)
        track.temp_cond.pop(frame_idx, None)
        track.temp_non_cond.pop(frame_idx, None)
        out = track.cond.pop(frame_idx, None)
        if out is not None:
            track.non_cond[frame_idx] = out
            track.tracked.pop(frame_idx, None)
        is_cond = any(frame_idx in t.temp_cond for t in self.objects.values())
        return self._consolidated(frame_idx, is_cond=is_cond)

    def remove_object(self, obj_id: int) -> None:
        del self.objects[check_known_object(obj_id, self.obj_ids)]

    # -- internals

    def _encode(self, frame: int) -> Features:
        """Image features of `frame` (one frame is kept at a time)."""
        if self._encoded_frame != frame:
            self._encoded_frame = None
            self.pipeline.features = self.pipeline.encode_image(self.frames[frame])
            self._encoded_frame = frame
        return self.pipeline.features

    def _sources(self, track: ObjectTrack, frame: int, reverse: bool) -> MemorySources:
        """What one object reads on `frame`: the rule's picks among its prompted and tracked frames."""
        selection = self.rule.select(frame, list(track.cond), track.non_cond, reverse, self.num_frames)
        stored = lambda pick: (track.cond if pick.prompted else track.non_cond)[pick.frame]  # noqa: E731
        return MemorySources(
            tuple((stored(k).memory, k.tpos) for k in selection.memories),
            tuple((stored(k).obj_ptr, k.tpos) for k in selection.pointers),
        )

    @staticmethod
    def _frame_output(step: StepOutput, row: int = 0) -> FrameOutput:
        return FrameOutput(
            low_res=step.low_res[row],
            obj_ptr=np.array(step.obj_ptrs[row], np.float32),  # a host copy on either path
            score=float(step.scores[row]),
            iou=float(step.ious[row]),
        )

    def _preflight(self) -> None:
        """Encode the memories of prompted frames and move them out of the temporary store."""
        if not self.objects:
            raise InputError("propagate_in_video | received no prompts; expected add_new_points_or_box or add_new_mask first")
        for obj_id, track in self.objects.items():
            if not (track.cond or track.temp_cond):
                raise InputError(f"propagate_in_video | received no prompt on any frame for object {obj_id}; expected one. "
                                 "Prompt it on a frame, or remove_object it")
        for track in self.objects.values():
            for temp, store in ((track.temp_non_cond, track.non_cond), (track.temp_cond, track.cond)):
                for frame, out in temp.items():
                    if out.memory_bits is None:
                        memory = encode_prompted_memory(self.pipeline, self._encode(frame), 0, out.low_res, out.score)
                        out.memory_bits = to_bfloat16_bits(np.asarray(memory[0]))
                    store[frame] = out
                temp.clear()
            for frame in track.cond:
                track.non_cond.pop(frame, None)

    def _propagate_frame(self, frame: int, reverse: bool) -> FrameResult:
        to_run = [obj_id for obj_id, track in self.objects.items() if frame not in track.cond]
        if to_run:
            sources = [self._sources(self.objects[obj_id], frame, reverse) for obj_id in to_run]
            step = track_step(self.pipeline, self._encode(frame), slice(0, len(to_run)), sources, self.fill_hole_area)
            for row, obj_id in enumerate(to_run):
                output = self._frame_output(step, row)
                output.memory_bits = to_bfloat16_bits(np.asarray(step.memories[row]))
                self.objects[obj_id].non_cond[frame] = output
        for track in self.objects.values():
            track.tracked[frame] = reverse
        return self._result(frame, [track.output(frame) for track in self.objects.values()])

    def _consolidated(self, frame: int, is_cond: bool) -> FrameResult:
        """Every object's current output on `frame` (temporary prompts first), as the official
        _consolidate_temp_output_across_obj; objects without one are absent (NO_OBJECT_LOGIT)."""
        outputs = []
        for track in self.objects.values():
            temp = track.temp_cond if is_cond else track.temp_non_cond
            outputs.append(track.output(frame, temp))
        return self._result(frame, outputs)

    def _result(self, frame: int, outputs: list[FrameOutput | None]) -> FrameResult:
        lr = self.dims.low_res_size
        n = len(outputs)
        logits = np.full((n, lr, lr), NO_OBJECT_LOGIT, np.float32)
        ious, scores = np.zeros(n, np.float32), np.full(n, NO_OBJECT_LOGIT, np.float32)
        for i, out in enumerate(outputs):
            if out is not None:
                logits[i], ious[i], scores[i] = out.low_res, out.iou, out.score
        return FrameResult(frame, tuple(self.objects), logits, ious, scores, (self.frames.height, self.frames.width))
