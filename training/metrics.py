"""J&F, the DAVIS video object segmentation measures, with numpy and OpenCV.

No maintained implementation is on PyPI (the DAVIS 2017 evaluation code is not packaged; the
packages that copy it pull in scikit-image, pandas and more), so the definitions of
davis2017-evaluation (`davis2017/metrics.py`) are written out here and tested on known cases:

- J, region similarity: |gt & pred| / |gt | pred|, and 1 when both masks are empty.
- F, contour accuracy: the boundary pixels of each mask (`boundary_map`, DAVIS's seg2bmap: a
  one-pixel contour offset by half a pixel towards the origin) are matched to the other mask's
  boundary dilated by a disk of radius ceil(0.008 * image diagonal) pixels; precision and recall of
  the matches give F = 2PR / (P + R). Both boundaries empty: F = 1; only one empty: F = 0.

A video's J (F) for one object is the mean over its evaluated frames; J&F is (J + F) / 2.
DAVIS leaves out the first frame, whose mask is given; `video_scores` leaves out the prompted
frames it is told about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

BOUND_FRACTION = 0.008  # DAVIS's bound_th: the tolerance as a fraction of the image diagonal


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"J&F | received masks {gt.shape} and {pred.shape}; expected two [H, W] masks of one size")
    return gt.astype(bool), pred.astype(bool)


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: the IoU of two [H, W] masks; 1 when both are empty."""
    gt, pred = _check_pair(gt, pred)
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS's seg2bmap: pixels whose right, lower or lower-right neighbour differs from them (on the
    last row and column, the neighbour along the border): [H, W] bool."""
    seg = np.asarray(mask, bool)
    right = np.zeros_like(seg)
    below = np.zeros_like(seg)
    diagonal = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below[:-1, :] = seg[1:, :]
    diagonal[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ right) | (seg ^ below) | (seg ^ diagonal)
    boundary[-1, :] = seg[-1, :] ^ right[-1, :]
    boundary[:, -1] = seg[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def bound_radius(height: int, width: int, bound: float = BOUND_FRACTION) -> int:
    """The matching tolerance in pixels: ceil(bound * diagonal), or `bound` itself when >= 1."""
    return int(bound) if bound >= 1 else int(np.ceil(bound * np.hypot(height, width)))


def _disk(radius: int) -> np.ndarray:
    """The structuring element of skimage.morphology.disk: offsets with dx^2 + dy^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).astype(np.uint8)


def contour_accuracy(gt: np.ndarray, pred: np.ndarray, bound: float = BOUND_FRACTION) -> float:
    """F: the boundary F-measure of two [H, W] masks (DAVIS f_measure)."""
    gt, pred = _check_pair(gt, pred)
    gt_boundary, pred_boundary = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
    if n_gt == 0 and n_pred == 0:
        return 1.0
    if n_gt == 0 or n_pred == 0:
        return 0.0  # precision or recall is 0 (DAVIS: 1 and 0, or 0 and 1)
    disk = _disk(bound_radius(*gt.shape, bound))
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), disk).astype(bool)
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), disk).astype(bool)
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class ObjectScores:
    """One object's measures over the evaluated frames of a video."""

    j: float
    f: float
    frames: int

    @property
    def j_and_f(self) -> float:
        return (self.j + self.f) / 2


def video_scores(gt: np.ndarray, pred: np.ndarray, skip_frames: Iterable[int] = (0,), bound: float = BOUND_FRACTION) -> ObjectScores:
    """J and F of one object through a video: gt, pred [T, H, W] bool; `skip_frames` (the prompted
    frames) are not evaluated."""
    gt, pred = np.asarray(gt, bool), np.asarray(pred, bool)
    if gt.shape != pred.shape or gt.ndim != 3:
        raise ValueError(f"video_scores | received {gt.shape} and {pred.shape}; expected two [T, H, W] arrays of one shape")
    skip = set(skip_frames)
    frames = [t for t in range(gt.shape[0]) if t not in skip]
    if not frames:
        raise ValueError(f"video_scores | received {gt.shape[0]} frames, all skipped; expected at least one frame to evaluate")
    j = [region_similarity(gt[t], pred[t]) for t in frames]
    f = [contour_accuracy(gt[t], pred[t], bound) for t in frames]
    return ObjectScores(float(np.mean(j)), float(np.mean(f)), len(frames))
