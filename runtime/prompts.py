"""Checking user prompts and mapping them into the model's input frame."""

from __future__ import annotations

import numpy as np

from .contracts import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_NEGATIVE, LABEL_POSITIVE
from .errors import StreamSamError


def check_points(points, labels, frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """points [k, 2] (x, y) in source pixels, labels [k] of 1 (positive) / 0 (negative)."""
    h, w = frame_size
    pts = np.asarray(points, np.float32).reshape(-1, 2) if points is not None else np.zeros((0, 2), np.float32)
    lbl = np.ones(len(pts), np.int32) if labels is None else np.asarray(labels, np.int32).reshape(-1)
    if len(lbl) != len(pts):
        raise StreamSamError(f"points | received {len(pts)} points and {len(lbl)} labels; expected one label per point")
    bad = [int(v) for v in lbl if v not in (LABEL_POSITIVE, LABEL_NEGATIVE)]
    if bad:
        raise StreamSamError(f"point labels | received {bad}; expected 1 (positive) or 0 (negative); boxes go through add_box")
    _check_inside(pts, w, h, "points")
    return pts, lbl


def check_box(box, frame_size: tuple[int, int]) -> np.ndarray:
    """box (x0, y0, x1, y1) in source pixels -> [2, 2] corners."""
    h, w = frame_size
    b = np.asarray(box, np.float32).reshape(-1)
    if b.size != 4:
        raise StreamSamError(f"box | received {b.size} numbers; expected (x0, y0, x1, y1)")
    corners = b.reshape(2, 2)
    _check_inside(corners, w, h, "box")
    if not (corners[1] > corners[0]).all():
        raise StreamSamError(f"box | received {b.tolist()}; expected x1 > x0 and y1 > y0")
    return corners


def _check_inside(pts: np.ndarray, w: int, h: int, what: str) -> None:
    if not np.isfinite(pts).all():
        raise StreamSamError(f"{what} | received non-finite coordinates {pts.tolist()}; expected pixel coordinates")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    if outside.any():
        raise StreamSamError(
            f"{what} | received {pts[outside].tolist()} outside the {w}x{h} frame; "
            f"expected x in [0, {w}] and y in [0, {h}] (source pixels)"
        )


def box_prompt(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box as the two labelled corner points SAM's prompt encoder reads."""
    return corners, np.array([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], np.int32)


def to_model_coords(points: np.ndarray, frame_size: tuple[int, int], image_size: int) -> np.ndarray:
    """Source pixels -> model input pixels (the official predictor normalises by the frame size)."""
    h, w = frame_size
    # Divide, then multiply, in float32: the official order of operations.
    return points.astype(np.float32) / np.array([w, h], np.float32) * np.float32(image_size)
