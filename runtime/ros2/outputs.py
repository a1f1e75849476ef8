"""What the node publishes per frame, computed from a FrameResult: the label image (overlaps go to
the object with the higher logit), per-object boxes and visibility scores, optional masks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..results import FrameResult


@dataclass(frozen=True)
class FrameOutput:
    """One frame's objects, ready to serialise. `stamp_ns` and `frame_id` are the camera image's."""

    stamp_ns: int
    frame_id: str
    frame_index: int  # the tracker's frame count (0-based), for logs
    object_ids: tuple[int, ...]
    labels: np.ndarray  # [H, W] uint8 (uint16 above 255 objects): 0 background, i object object_ids[i-1]
    boxes: np.ndarray  # [n, 4] float64 x0, y0, x1, y1 (pixel edges; zeros for an empty mask)
    scores: np.ndarray  # [n] float32 visibility in [0, 1]
    masks: np.ndarray | None  # [n, H, W] bool when per-object masks are on
    dropped_frames: int


def label_image(result: FrameResult) -> np.ndarray:
    """0 where no object's logit is positive, else 1 + the row of the object with the highest logit."""
    n = len(result.object_ids)
    h, w = result.source_size
    dtype = np.uint8 if n <= 255 else np.uint16
    if n == 0:
        return np.zeros((h, w), dtype)
    logits = result.logits()
    best = logits.argmax(axis=0)
    return np.where(logits.max(axis=0) > 0, best + 1, 0).astype(dtype)


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """[n, H, W] bool -> [n, 4] (x0, y0, x1, y1): the edges of each mask's pixels, zeros if empty."""
    boxes = np.zeros((len(masks), 4), np.float64)
    for i, mask in enumerate(masks):
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        if cols.size:
            boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def frame_output(result: FrameResult, stamp_ns: int, frame_id: str, dropped: int, with_masks: bool) -> FrameOutput:
    # FrameResult.masks cannot resize zero objects (np.stack of nothing): a frame before any prompt.
    masks = result.masks if result.object_ids else np.zeros((0, *result.source_size), bool)
    return FrameOutput(
        stamp_ns=stamp_ns,
        frame_id=frame_id,
        frame_index=result.frame_index,
        object_ids=tuple(result.object_ids),
        labels=label_image(result),
        boxes=mask_boxes(masks),
        scores=(1.0 / (1.0 + np.exp(-result.object_scores.astype(np.float64)))).astype(np.float32),
        masks=masks if with_masks else None,
        dropped_frames=dropped,
    )
