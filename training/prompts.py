"""Prompts simulated from ground-truth masks, as SAM 2 trains and is evaluated.

Masks are numpy bool arrays [n, H, W] (one row per object) in model-input pixels; points come back
as float32 [n, k, 2] (x, y) at pixel centres' integer coordinates and labels int32 [n, k] with the
prompt encoder's codes (1 positive, 0 negative, 2 / 3 box corners).
"""

from __future__ import annotations

import numpy as np

from streamsam.contracts import LABEL_BOX_BOTTOM_RIGHT, LABEL_BOX_TOP_LEFT, LABEL_NEGATIVE, LABEL_POSITIVE

BOX_NOISE = 0.1  # official sample_box_points: noise of 10 % of the box side...
BOX_NOISE_BOUND_FRACTION = 20 / 1024  # ...at most 20 pixels of a 1024 input


def _check_masks(masks: np.ndarray) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.dtype != bool:
        raise ValueError(f"prompts | received masks {masks.dtype} {masks.shape}; expected bool [n, H, W]")
    return masks


def _uniform_pixel(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(region)
    i = int(rng.integers(len(ys)))
    return float(xs[i]), float(ys[i])


def error_clicks(rng: np.random.Generator, targets: np.ndarray, predictions: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One click per object, uniform over its error pixels (official training sampling): positive
    in a missed part (false negative), negative in a false positive. Without predictions every
    target pixel is an error: a uniform positive click in the object. Where the prediction is
    exact (or the object and prediction are both empty), a negative click in the background.
    -> points [n, 1, 2], labels [n, 1]."""
    targets = _check_masks(targets)
    predictions = np.zeros_like(targets) if predictions is None else _check_masks(predictions)
    n, h, w = targets.shape
    points = np.zeros((n, 1, 2), np.float32)
    labels = np.zeros((n, 1), np.int32)
    for i in range(n):
        fn = targets[i] & ~predictions[i]
        fp = predictions[i] & ~targets[i]
        errors = fn | fp
        if errors.any():
            x, y = _uniform_pixel(rng, errors)
            labels[i, 0] = LABEL_POSITIVE if fn[int(y), int(x)] else LABEL_NEGATIVE
        else:
            background = ~targets[i]
            x, y = _uniform_pixel(rng, background) if background.any() else (w / 2, h / 2)
            labels[i, 0] = LABEL_NEGATIVE
        points[i, 0] = (x, y)
    return points, labels


def center_clicks(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official evaluation click: the object pixel farthest from its boundary
    (sample_one_point_from_error_center with no prediction). Objects must be non-empty."""
    import cv2

    targets = _check_masks(targets)
    n = len(targets)
    points = np.zeros((n, 1, 2), np.float32)
    for i, mask in enumerate(targets):
        if not mask.any():
            raise ValueError(f"center_clicks | received an empty mask for object {i}; expected a visible object")
        # Pad so that the frame border counts as boundary.
        padded = np.pad(mask.astype(np.uint8), 1)
        distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points[i, 0] = (x, y)
    return points, np.full((n, 1), LABEL_POSITIVE, np.int32)


def error_center_clicks(targets: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official evaluation's correction click (sample_one_point_from_error_center): the pixel
    farthest from the boundary of the errors, positive in a missed part, negative in a false
    positive, whichever error reaches deeper. Where the prediction is exact, a positive click at
    the object's centre (a user satisfied with a mask adds nothing that moves it).
    -> points [n, 1, 2], labels [n, 1]."""
    import cv2

    targets, predictions = _check_masks(targets), _check_masks(predictions)
    if targets.shape != predictions.shape:
        raise ValueError(f"error_center_clicks | received targets {targets.shape} and predictions {predictions.shape}; expected equal shapes")
    n = len(targets)
    points, labels = center_clicks(targets)
    for i in range(n):
        depths = []
        for error in (targets[i] & ~predictions[i], predictions[i] & ~targets[i]):  # missed, then false positive
            # Pad so that the frame border counts as boundary.
            distance = cv2.distanceTransform(np.pad(error.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
            depths.append(distance)
        missed, extra = depths
        if max(missed.max(), extra.max()) == 0:
            continue
        deeper = missed if missed.max() >= extra.max() else extra
        y, x = np.unravel_index(int(np.argmax(deeper)), deeper.shape)
        points[i, 0] = (x, y)
        labels[i, 0] = LABEL_POSITIVE if deeper is missed else LABEL_NEGATIVE
    return points, labels


def tight_boxes(targets: np.ndarray) -> np.ndarray:
    """Each object's bounding box (x0, y0, x1, y1), corners on pixel edges: [n, 4]."""
    targets = _check_masks(targets)
    boxes = np.zeros((len(targets), 4), np.float32)
    for i, mask in enumerate(targets):
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            raise ValueError(f"tight_boxes | received an empty mask for object {i}; expected a visible object")
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return boxes


def noisy_box_points(rng: np.random.Generator, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes as two corner points (labels 2, 3), each coordinate moved by Gaussian noise of 10 %
    of the box side, bounded as the official training does; -> points [n, 2, 2], labels [n, 2]."""
    boxes = tight_boxes(targets)
    h, w = targets.shape[1:]
    sides = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], axis=1)  # [n, 2] (w, h)
    bound = BOX_NOISE_BOUND_FRACTION * max(h, w)
    noise = rng.standard_normal((len(boxes), 4)) * np.concatenate([sides, sides], axis=1) * BOX_NOISE
    boxes = boxes + np.clip(noise, -bound, bound).astype(np.float32)
    boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, w)
    boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, h)
    corners = np.stack([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    labels = np.tile(np.array([[LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]], np.int32), (len(boxes), 1))
    return corners.astype(np.float32), labels
