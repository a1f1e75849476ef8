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

_MEAN = np.array(PIXEL_MEAN, np.float32)
_STD = np.array(PIXEL_STD, np.float32)

# How a frame is resized to the model's input size. Each official entry point does it its own way,
# and masks follow the model's input to the last bit, so the two official ways are reproduced:
RESIZE_MODES = (
    "pil_bicubic",  # the official video predictor: PIL's default (bicubic, antialiased) on uint8
    "antialias_bilinear",  # the official image predictor: torchvision Resize on 0..1 floats
    "fast",  # OpenCV INTER_AREA / INTER_LINEAR on uint8: several times faster, not bit-equal
)


def import_frame_libraries(resize: str) -> None:
    """Import the libraries the per-frame step uses (OpenCV for masks; PIL for pil_bicubic) when a
    session opens: the first frame then pays no import (about 45 ms) and a missing one fails there."""
    require("cv2", "video")
    if resize == "pil_bicubic":
        require("PIL.Image", "video")


def preprocess_frame(frame: np.ndarray, out: np.ndarray, resize: str = "pil_bicubic") -> None:
    """Resize an H x W x 3 uint8 RGB frame to the model size and normalise it (ImageNet mean / std
    on 0..1 values, float32) into `out` [1, 3, S, S]."""
    size = out.shape[-1]
    if resize == "pil_bicubic":
        image = require("PIL.Image", "video")
        resized = frame if frame.shape[:2] == (size, size) else np.asarray(image.fromarray(frame).resize((size, size)))
        # The official loader divides in float64 and stores float32.
        values = (resized / 255.0).astype(np.float32)
    elif resize == "antialias_bilinear":
        values = frame.astype(np.float32) / np.float32(255.0)
        if frame.shape[:2] != (size, size):
            values = antialias_resize(values, size, size)
    elif resize == "fast":
        cv2 = require("cv2", "video")
        shrink = frame.shape[0] > size or frame.shape[1] > size
        resized = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        values = resized.astype(np.float32) / np.float32(255.0)
    else:
        raise StreamSamError(f"resize | received {resize!r}; expected one of {RESIZE_MODES}")
    chw = out[0]
    for c in range(3):
        np.subtract(values[:, :, c], _MEAN[c], out=chw[c])
        chw[c] /= _STD[c]


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
    if len(logits) == 0:  # a frame with no objects: empty masks, not an error
        return np.zeros((0, height, width), np.float32)
    return np.stack([cv2.resize(m, (width, height), interpolation=cv2.INTER_LINEAR) for m in logits])


@lru_cache(maxsize=16)
def _antialias_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights [out, taps] of PyTorch's antialiased bilinear resize along one
    axis: a triangle filter, widened by the scale when downsampling, normalised per output pixel."""
    scale = in_size / out_size
    support = max(scale, 1.0)
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    centers = scale * (np.arange(out_size) + 0.5)
    lo = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    taps = int((hi - lo).max())
    index = lo[:, None] + np.arange(taps)[None, :]
    weight = np.maximum(0.0, 1.0 - np.abs((index - centers[:, None] + 0.5) * inv))
    weight[index >= hi[:, None]] = 0.0
    weight /= weight.sum(axis=1, keepdims=True)
    return np.minimum(index, in_size - 1), weight.astype(np.float32)


def antialias_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of [H, W] or [H, W, C] float data, as
    F.interpolate(mode="bilinear", antialias=True) and torchvision's Resize compute it. When
    enlarging, the filter is plain bilinear (align_corners=False), borders included."""
    image = np.asarray(image, np.float32)
    rows_index, rows_weight = _antialias_taps(image.shape[0], height)
    cols_index, cols_weight = _antialias_taps(image.shape[1], width)
    extra = (None,) * (image.ndim - 2)
    out = np.einsum("ht...,ht->h...", image[rows_index], rows_weight) if extra else (image[rows_index] * rows_weight[..., None]).sum(1)
    cols = out[:, cols_index]  # [h, w, taps, ...]
    return np.einsum("hwt...,wt->hw...", cols, cols_weight)
