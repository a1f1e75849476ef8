"""The per-frame steps every session runs, as the official `SAM2Base.track_step` is behind every
verb of `SAM2VideoPredictor`: the session decides which frame, which objects and which memories
(memory_bank.SelectionRule); these decide how a frame is processed.

- `track_step`: a tracked frame for a batch of objects: memory attention on each one's memories,
  the mask decoder without prompts (three masks, the best kept, as the official multimask
  tracking), the memory encoder on the chosen masks;
- `prompt_step`: clicks and boxes on one object (a prompted frame reads no memory; a correction
  reads the frame's memories and the previous logits as a mask prompt);
- `mask_step`: a mask is its own output (the official `_use_mask_as_output`);
- `encode_prompted_memory`: a prompt's memory, encoded from its hole-filled logits upsampled to the
  model size, as the official predictor does when it consolidates a prompt.

None of them changes a session's state: a session stores what they return once they return, so a
graph that fails leaves the session as it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .image_ops import antialias_resize, fill_holes
from .memory_bank import MemorySources
from .pipeline import Features, Pipeline

DEFAULT_FILL_HOLE_AREA = 8  # the official video predictor's default
MASK_PROMPT_SCALE, MASK_PROMPT_BIAS = 20.0, -10.0  # a mask prompt as logits (official _use_mask_as_output)
MULTIMASK_MAX_POINTS = 1  # the official multimask_max_pt_num: three masks for one click (or none)


@dataclass(frozen=True)
class StepOutput:
    """A step's outputs for its rows. On the host: hole-filled low-res logits [n, h, w], predicted
    IoUs [n] and object score logits [n]. Where the graphs wrote them (numpy or DeviceArrays, valid
    until the pipeline's next call): object pointers [n, d] and, for a tracked frame, the new
    memories [n, mem, g, g]."""

    low_res: np.ndarray
    ious: np.ndarray
    scores: np.ndarray
    obj_ptrs: Any
    memories: Any = None


def track_step(pipeline: Pipeline, features: Features, rows: slice, sources: Sequence[MemorySources], fill_hole_area: int, row_frame=0) -> StepOutput:
    """A tracked frame for `rows`, each row reading its own memories and its own frame of
    `features` (`row_frame` [n], or an int for all: the streams of a multi-stream step)."""
    conditioned = pipeline.attend(features, rows, sources, row_frame)
    out = pipeline.decode(features, rows, conditioned, None, None, None, multimask=True, row_frame=row_frame)
    memories = pipeline.encode_memory(features, rows, from_points=False, row_frame=row_frame)
    return _read(out, fill_hole_area, memories)


def prompt_step(
    pipeline: Pipeline,
    features: Features,
    row: int,
    sources: MemorySources,
    coords: np.ndarray,
    labels: np.ndarray,
    prev_logits: np.ndarray | None,
    fill_hole_area: int,
    frame: int = 0,
) -> StepOutput:
    """Clicks / box corners `coords` [k, 2] (model pixels) with `labels` [k] on one object, on
    frame `frame` of `features`. `prev_logits` [h, w]: the object's current logits on this frame,
    fed back as a mask prompt."""
    rows = slice(row, row + 1)
    conditioned = pipeline.attend(features, rows, [sources], frame)
    mask_input = None if prev_logits is None else prev_logits[None, None]
    out = pipeline.decode(features, rows, conditioned, coords[None], labels[None], mask_input,
                          multimask=len(labels) <= MULTIMASK_MAX_POINTS, row_frame=frame)  # fmt: skip
    return _read(out, fill_hole_area)


def mask_step(pipeline: Pipeline, features: Features, row: int, mask: np.ndarray, fill_hole_area: int, frame: int = 0) -> StepOutput:
    """A mask (any 2-D array, cast to bool as the official predictor does) as the object's output.
    The decoder runs on the frame's own features only for the object pointer."""
    s, lr = pipeline.dims.image_size, pipeline.dims.low_res_size
    mask_s = np.asarray(mask).astype(bool).astype(np.float32)
    if mask_s.shape != (s, s):  # as the official add_new_mask: antialiased resize, then >= 0.5
        mask_s = (antialias_resize(mask_s, s, s) >= 0.5).astype(np.float32)
    present = bool(mask_s.any())
    rows = slice(row, row + 1)
    mask_input = pipeline.downsample_mask_prompt(mask_s)[None, None]
    out = pipeline.decode(features, rows, features["image_embed"][frame : frame + 1], None, None, mask_input, multimask=False, row_frame=frame)
    low = fill_holes(antialias_resize(mask_s * MASK_PROMPT_SCALE + MASK_PROMPT_BIAS, lr, lr)[None], fill_hole_area)
    score = MASK_PROMPT_SCALE + MASK_PROMPT_BIAS if present else MASK_PROMPT_BIAS
    obj_ptrs = out["obj_ptr"] if present else pipeline.no_obj_ptr[None]
    return StepOutput(low, np.ones(1, np.float32), np.array([score], np.float32), obj_ptrs)


def encode_prompted_memory(pipeline: Pipeline, features: Features, row: int, low_res: np.ndarray, score: float, frame: int = 0):
    """The memory of a prompted frame (frame `frame` of `features`) from its hole-filled logits [h, w]: [1, mem, g, g]."""
    s = pipeline.dims.image_size
    high = antialias_resize(low_res, s, s)[None, None]  # = bilinear upsampling, exact
    return pipeline.encode_memory(features, slice(row, row + 1), from_points=True, high_res_masks=high,
                                  object_score_logits=np.array([[score]], np.float32), row_frame=frame)  # fmt: skip


def _read(out: dict, fill_hole_area: int, memories=None) -> StepOutput:
    """The host reads of a step (a download on the device path): logits, IoUs and scores."""
    low_res = np.array(out["low_res_masks"], np.float32)[:, 0]
    return StepOutput(
        low_res=fill_holes(low_res, fill_hole_area),
        ious=np.array(out["ious"], np.float32)[:, 0],
        scores=np.array(out["object_score_logits"], np.float32)[:, 0],
        obj_ptrs=out["obj_ptr"],
        memories=memories,
    )
