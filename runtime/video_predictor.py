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

from .backend import Backend, OnnxRuntimeBackend
from .contracts import NO_OBJECT_LOGIT
from .checks import (check_box, check_box_with_clicks, check_flag, check_frame_count, check_frame_index, check_known_object,
                     check_mask, check_object_slot, check_options, check_points, check_video)
from .errors import StreamSamError
from .image_ops import PREV_MASK_CLAMP, antialias_resize, fill_holes
from .memory_bank import MAX_OBJ_PTRS, from_bfloat16_bits, to_bfloat16_bits
from .pipeline import open_pipeline
from .prompts import box_prompt, to_model_coords
from .results import FrameResult
from .stream_tracker import DEFAULT_FILL_HOLE_AREA, MASK_PROMPT_BIAS, MASK_PROMPT_SCALE
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
    ) -> None:
        max_objects, fill_hole_area = check_options(max_objects, fill_hole_area, resize)
        backend = graphs if hasattr(graphs, "run") else OnnxRuntimeBackend(graphs)
        self.pipeline = open_pipeline(backend, max_objects, resize)
        self.dims = self.pipeline.dims
        self.max_objects = max_objects
        self.fill_hole_area = fill_hole_area
        self.frames: VideoFrames | None = None
        self.objects: dict[int, ObjectTrack] = {}
        self._encoded_frame: int | None = None

    # -- the official verbs

    def init_state(self, video: str | Path | Sequence[np.ndarray]) -> None:
        """Open a video (file, folder of frames, or a list of H x W x 3 uint8 frames)."""
        self.frames = VideoFrames(video)
        self.objects.clear()
        self._encoded_frame = None

    @property
    def num_frames(self) -> int:
        return len(self._require_video())

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
        track = self._track_for(obj_id)
        coords = to_model_coords(pts, size, self.dims.image_size)
        if not clear_old_points and frame_idx in track.points:
            old_coords, old_labels = track.points[frame_idx]
            coords, lbl = np.concatenate([old_coords, coords]), np.concatenate([old_labels, lbl])

        is_init = frame_idx not in track.tracked
        reverse = False if is_init else track.tracked[frame_idx]
        temp = track.temp_cond if is_init else track.temp_non_cond
        prev = track.output(frame_idx, temp)
        prev_logits = None if prev is None else np.clip(prev.low_res, -PREV_MASK_CLAMP, PREV_MASK_CLAMP)[None, None]

        self._encode(frame_idx)
        p, rows = self.pipeline, slice(0, 1)
        self._select(0, track, frame_idx, reverse, use_memory=not is_init)
        features = p.attend(rows)
        out = p.decode(rows, features, coords[None], lbl[None], prev_logits, multimask=len(lbl) <= 1)
        output = self._frame_output(out, 0)
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
        s, lr = self.dims.image_size, self.dims.low_res_size
        mask_s = mask.astype(np.float32)
        if mask.shape != (s, s):
            mask_s = (antialias_resize(mask_s, s, s) >= 0.5).astype(np.float32)
        track = self._track_for(obj_id)
        is_init = frame_idx not in track.tracked
        temp = track.temp_cond if is_init else track.temp_non_cond

        self._encode(frame_idx)
        p, rows = self.pipeline, slice(0, 1)
        present = bool((mask_s > 0).any())
        out = p.decode(rows, p.image_embed, None, None, p.downsample_mask_prompt(mask_s)[None, None], multimask=False)
        high = mask_s * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS
        low = fill_holes(antialias_resize(high, lr, lr)[None], self.fill_hole_area)[0]
        output = FrameOutput(
            low_res=low,
            obj_ptr=np.array(out["obj_ptr"][0] if present else p.no_obj_ptr),
            score=MASK_PROMPT_SCALE + MASK_PROMPT_BIAS if present else MASK_PROMPT_BIAS,
            iou=1.0,
        )
        self.objects[obj_id] = track
        track.masks[frame_idx] = mask_s
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
        self._check_frame_index(start_frame_idx)
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
        track = self._known(obj_id)
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
        obj_id = check_known_object(obj_id, self.obj_ids)
        self._known(obj_id)
        del self.objects[obj_id]

    # -- internals

    def _require_video(self) -> VideoFrames:
        if self.frames is None:
            raise StreamSamError("video | received no video; expected init_state(video) first")
        return self.frames

    def _check_frame_index(self, frame_idx: int) -> None:
        n = len(self._require_video())
        if not 0 <= frame_idx < n:
            raise StreamSamError(f"frame index | received {frame_idx}; expected 0 <= frame_idx < {n}")

    def _known(self, obj_id: int) -> ObjectTrack:
        if obj_id not in self.objects:
            raise StreamSamError(f"object id | received {obj_id}; expected one of {self.obj_ids}")
        return self.objects[obj_id]

    def _track_for(self, obj_id: int) -> ObjectTrack:
        if obj_id in self.objects:
            return self.objects[obj_id]
        if len(self.objects) >= self.max_objects:
            raise StreamSamError(
                f"add object {obj_id} | received a {self.max_objects + 1}th object; expected at most max_objects="
                f"{self.max_objects}. Open the predictor with a larger max_objects."
            )
        return ObjectTrack()

    def _encode(self, frame: int) -> None:
        """Image features of `frame` into the pipeline's buffers (one frame is kept at a time)."""
        if self._encoded_frame != frame:
            self._encoded_frame = None
            self.pipeline.encode_image(self.frames[frame])
            self._encoded_frame = frame

    def _select(self, row: int, track: ObjectTrack, frame: int, reverse: bool, use_memory: bool) -> None:
        """The official memory and pointer selection for one object on `frame` into `row`."""
        bank = self.pipeline.bank
        if not use_memory:
            bank.load_row(row, [], [])
            return
        direction = -1 if reverse else 1
        selected, unselected = self._closest_cond_frames(track, frame)
        memories = [(track.cond[f].memory, 0) for f in selected]
        for distance in range(1, self.dims.num_maskmem):
            prev = frame - distance * direction
            out = track.non_cond.get(prev, unselected.get(prev))
            if out is not None:
                memories.append((out.memory, distance))
        max_ptrs = min(self.num_frames, MAX_OBJ_PTRS)
        scale = max(max_ptrs - 1, 1)
        pointers = [
            (track.cond[f].obj_ptr, (frame - f) * direction / scale)
            for f in selected
            if (f >= frame if reverse else f <= frame)
        ]
        for distance in range(1, max_ptrs):
            prev = frame - distance * direction
            if not 0 <= prev < self.num_frames:
                break
            out = track.non_cond.get(prev, unselected.get(prev))
            if out is not None:
                pointers.append((out.obj_ptr, distance / scale))
        bank.load_row(row, memories, pointers)

    def _closest_cond_frames(self, track: ObjectTrack, frame: int) -> tuple[list[int], dict[int, FrameOutput]]:
        """Every prompted frame while they fit the graph's slots; beyond, the official
        select_closest_cond_frames rule (closest before, closest after, then the nearest)."""
        frames = list(track.cond)
        capacity = self.dims.max_prompted_frames
        if len(frames) <= capacity:
            return frames, {}
        chosen = []
        before = [f for f in frames if f < frame]
        after = [f for f in frames if f >= frame]
        if before:
            chosen.append(max(before))
        if after:
            chosen.append(min(after))
        rest = sorted((f for f in frames if f not in chosen), key=lambda f: abs(f - frame))
        chosen += rest[: capacity - len(chosen)]
        return chosen, {f: track.cond[f] for f in frames if f not in chosen}

    def _frame_output(self, out: dict[str, np.ndarray], row: int) -> FrameOutput:
        low = fill_holes(np.array(out["low_res_masks"][row], np.float32), self.fill_hole_area)[0]
        return FrameOutput(
            low_res=low,
            obj_ptr=np.array(out["obj_ptr"][row]),  # np.array: a host copy on either path
            score=float(out["object_score_logits"][row, 0]),
            iou=float(out["ious"][row, 0]),
        )

    def _preflight(self) -> None:
        """Encode the memories of prompted frames and move them out of the temporary store."""
        if not self.objects:
            raise StreamSamError("propagate_in_video | received no prompts; expected add_new_points_or_box or add_new_mask first")
        s = self.dims.image_size
        for obj_id, track in self.objects.items():
            for temp, store in ((track.temp_non_cond, track.non_cond), (track.temp_cond, track.cond)):
                for frame, out in temp.items():
                    if out.memory_bits is None:
                        self._encode(frame)
                        high = antialias_resize(out.low_res, s, s)[None, None]  # = bilinear upsampling
                        memory = self.pipeline.encode_memory(slice(0, 1), high, np.array([[out.score]], np.float32), from_points=True)
                        out.memory_bits = to_bfloat16_bits(memory[0])
                    store[frame] = out
                temp.clear()
            if not track.cond:
                raise StreamSamError(f"propagate_in_video | received no prompt on any frame for object {obj_id}; expected one")
            for frame in track.cond:
                track.non_cond.pop(frame, None)

    def _propagate_frame(self, frame: int, reverse: bool) -> FrameResult:
        to_run = [obj_id for obj_id, track in self.objects.items() if frame not in track.cond]
        if to_run:
            self._encode(frame)
            p, rows = self.pipeline, slice(0, len(to_run))
            for row, obj_id in enumerate(to_run):
                self._select(row, self.objects[obj_id], frame, reverse, use_memory=True)
            features = p.attend(rows)
            out = p.decode(rows, features, None, None, None, multimask=True)
            memory = p.encode_memory(rows, out["high_res_masks"], out["object_score_logits"], from_points=False)
            for row, obj_id in enumerate(to_run):
                output = self._frame_output(out, row)
                output.memory_bits = to_bfloat16_bits(memory[row])
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
