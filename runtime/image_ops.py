"""Frame pre-processing and mask post-processing in numpy / OpenCV, writing into reused buffers.

Each function reproduces one step of the official pipeline: ImageNet normalisation of a frame
resized to the model's input size, hole filling of mask logits (the official CUDA
`fill_holes_in_mask_scores`, 8-connectivity), bilinear resizing of logits (`F.interpolate`,
align_corners=False) and PyTorch's antialiased bilinear downsampling of a mask prompt.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .contracts import PIXEL_MEAN, PIXEL_STD
from .errors import StreamSamError, require

HOLE_FILL_LOGIT = 0.1  # the official value written into filled holes
PREV_MASK_CLAMP = 32.0  # previous logits fed back as a mask prompt are clamped to +-32

_MEAN = np.array(PIXEL_MEAN, np.float32) * 255.0
_INV_STD = 1.0 / (np.array(PIXEL_STD, np.float32) * 255.0)


def check_frame(frame: object) -> np.ndarray:
    """A frame must be an H x W x 3 uint8 RGB array (what OpenCV / PyAV decoders give, in RGB)."""
    if not isinstance(frame, np.ndarray):
        raise StreamSamError(f"frame | received {type(frame).__name__}; expected a numpy array H x W x 3 uint8 RGB")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise StreamSamError(f"frame | received shape {frame.shape}; expected (H, W, 3) RGB")
    if frame.dtype != np.uint8:
        hint = " (NaN values included)" if np.issubdtype(frame.dtype, np.floating) and np.isnan(frame).any() else ""
        raise StreamSamError(
            f"frame | received dtype {frame.dtype}{hint}; expected uint8 0..255. "
            "Convert with np.clip(x * 255, 0, 255).astype(np.uint8) for 0..1 floats."
        )
    return frame


def preprocess_frame(frame: np.ndarray, out: np.ndarray) -> None:
    """Resize an H x W x 3 uint8 RGB frame to the model size and normalise it into `out` [1, 3, S, S]."""
    cv2 = require("cv2", "video")
    size = out.shape[-1]
    resized = frame if frame.shape[:2] == (size, size) else cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
    chw = out[0]
    for c in range(3):
        np.subtract(resized[:, :, c], _MEAN[c], out=chw[c], casting="unsafe")
        chw[c] *= _INV_STD[c]


def fill_holes(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Fill background components (logits <= 0, 8-connected) of at most `max_area` pixels with 0.1,
    in place, for logits [..., H, W]; returns `logits`."""
    if max_area <= 0:
        return logits
    cv2 = require("cv2", "video")
    flat = logits.reshape(-1, *logits.shape[-2:])
    for mask in flat:
        background = (mask <= 0).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
        small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] <= max_area) + 1
        if small.size:
            mask[np.isin(labels, small)] = HOLE_FILL_LOGIT
    return logits


def resize_logits(logits: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, as F.interpolate(align_corners=False)) of [n, h, w]."""
    cv2 = require("cv2", "video")
    if logits.shape[-2:] == (height, width):
        return logits.copy()
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in logits])


@lru_cache(maxsize=8)
def antialias_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of PyTorch's antialiased bilinear resize (a triangle filter widened by the
    scale when downsampling), so that `A @ x @ A.T` equals F.interpolate(..., antialias=True)."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        taps = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((taps - center + 0.5) * inv))
        weights[i, lo:hi] = w / w.sum()
    return weights.astype(np.float32)


def antialias_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of a 2-D float array (F.interpolate(antialias=True))."""
    rows = antialias_matrix(image.shape[0], height)
    cols = antialias_matrix(image.shape[1], width)
    return rows @ image.astype(np.float32) @ cols.T
