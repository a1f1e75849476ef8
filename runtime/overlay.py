"""Drawing masks on frames: a translucent fill and an outline per object, its id and score, and
the FPS, in place on an RGB frame."""

from __future__ import annotations

import numpy as np

from .errors import require
from .results import FrameResult

# Distinct, colour-blind-friendly colours (Okabe-Ito), RGB.
PALETTE = np.array(
    [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)],
    np.uint8,
)


def color_of(obj_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[(obj_id - 1) % len(PALETTE)])


def draw_result(frame: np.ndarray, result: FrameResult, alpha: float = 0.45, fps: float | None = None) -> np.ndarray:
    """Draw every visible object of `result` onto `frame` (H x W x 3 uint8 RGB, modified and returned)."""
    cv2 = require("cv2", "video")
    masks = result.masks if result.object_ids else np.zeros((0,) + frame.shape[:2], bool)
    for obj_id, mask, score in zip(result.object_ids, masks, result.object_scores):
        if score <= 0 or not mask.any():
            continue
        color = np.array(color_of(obj_id), np.float32)
        region = frame[mask].astype(np.float32)
        frame[mask] = (region * (1 - alpha) + color * alpha).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(frame, contours, -1, color_of(obj_id), 2)
        ys, xs = np.nonzero(mask)
        cv2.putText(frame, f"{obj_id}", (int(xs.min()), max(int(ys.min()) - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color_of(obj_id), 1, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(frame, f"{fps:.1f} FPS", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return frame
