"""Prompts as the model reads them: a box as two labelled corners, source pixels mapped into the
model's input frame. They arrive checked (runtime/checks.py)."""

from __future__ import annotations

import numpy as np

from .contracts import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT


def box_prompt(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box as the two labelled corner points SAM's prompt encoder reads."""
    return corners, np.array([LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT], np.int32)


def to_model_coords(points: np.ndarray, frame_size: tuple[int, int], image_size: int) -> np.ndarray:
    """Source pixels -> model input pixels (the official predictor normalises by the frame size)."""
    h, w = frame_size
    # Divide, then multiply, in float32: the official order of operations.
    return points.astype(np.float32) / np.array([w, h], np.float32) * np.float32(image_size)
