"""Every check of what a caller hands a session, one function per kind of input: frames, points,
labels, boxes, masks, object ids, frame indices, options, output paths.

Sessions call these first thing in each public method, so bad input raises InputError (a
ValueError) before any state or buffer changes, with a message "<subject> | received X;
expected Y. <what to do>". Checks only look at the arrays they are given: a frame is never copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contracts import LABEL_NEGATIVE, LABEL_POSITIVE
from .errors import InputError
from .image_ops import RESIZE_MODES

_NUMBER_KINDS = "iuf"  # numpy dtype kinds of numbers (bool is "b")


def _show(value: object) -> str:
    """A short description of what was received: arrays by dtype and shape, anything else by repr."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


def _numbers(value: object, subject: str, expected: str, kinds: str = _NUMBER_KINDS) -> np.ndarray:
    """`value` as a numpy array of numbers (no copy when it already is one): strings, None, objects
    and ragged lists are refused rather than cast."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # ragged nesting
        raise InputError(f"{subject} | received {_show(value)}; expected {expected}") from None
    if array.dtype.kind not in kinds:
        raise InputError(f"{subject} | received {_show(value)}; expected {expected}")
    return array


def check_int(value: object, subject: str, minimum: int | None = None, limit: int | None = None, expected: str = "an integer") -> int:
    """An integer (Python or numpy; bool is not one) with minimum <= value < limit, as a Python int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{subject} | received {_show(value)}; expected {expected}")
    value = int(value)
    if (minimum is not None and value < minimum) or (limit is not None and value >= limit):
        raise InputError(f"{subject} | received {value}; expected {expected}")
    return value


def check_flag(value: object, subject: str) -> bool:
    """A real bool (numpy's included): a truthy string or a number is a mistake, not an answer."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{subject} | received {_show(value)}; expected True or False")
    return bool(value)


# -- options


def check_options(max_objects: object, fill_hole_area: object, resize: object) -> tuple[int, int]:
    """A session's options when it opens: (max_objects, fill_hole_area) as ints."""
    check_resize(resize)
    return (
        check_int(max_objects, "max_objects", minimum=1, expected="a positive integer (objects tracked at once)"),
        check_int(fill_hole_area, "fill_hole_area", minimum=0, expected="an integer >= 0 (pixels; 0 turns hole filling off)"),
    )


def check_resize(resize: object) -> str:
    if not isinstance(resize, str) or resize not in RESIZE_MODES:
        raise InputError(f"resize | received {_show(resize)}; expected one of {RESIZE_MODES}")
    return resize


# -- frames


def check_frame(frame: object, size: tuple[int, int] | None = None, subject: str = "frame") -> np.ndarray:
    """An H x W x 3 uint8 RGB array (what OpenCV / PyAV decoders give, in RGB), of `size` (H, W)
    when the session already has one."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{subject} | received {_show(frame)}; expected a numpy array H x W x 3 uint8 RGB")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
        raise InputError(f"{subject} | received shape {frame.shape}; expected (H, W, 3) RGB")
    if frame.dtype != np.uint8:
        hint = " (NaN values included)" if frame.dtype.kind == "f" and np.isnan(frame).any() else ""
        raise InputError(
            f"{subject} | received dtype {frame.dtype}{hint}; expected uint8 0..255. "
            "Convert with np.clip(x * 255, 0, 255).astype(np.uint8) for 0..1 floats."
        )
    if size is not None and frame.shape[:2] != tuple(size):
        raise InputError(
            f"{subject} | received size {frame.shape[1]}x{frame.shape[0]}; expected {size[1]}x{size[0]} "
            "like the stream's earlier frames. Call reset() to start a new stream."
        )
    return frame


def check_has_frame(frame_size: tuple[int, int] | None) -> tuple[int, int]:
    """A stream's current frame size: prompts apply to the current frame, so there must be one."""
    if frame_size is None:
        raise InputError("prompt | received a prompt before any frame; expected track(frame) first: prompts apply to the current frame")
    return frame_size


def check_video(frames):
    """An offline predictor's open video."""
    if frames is None:
        raise InputError("video | received no video; expected init_state(video) first")
    return frames


def check_frame_index(frame_idx: object, num_frames: int, subject: str = "frame index") -> int:
    return check_int(frame_idx, subject, 0, num_frames, expected=f"0 <= frame_idx < {num_frames}, an integer")


def check_frame_count(count: object, subject: str) -> int | None:
    """A number of frames (None: no limit)."""
    return None if count is None else check_int(count, subject, minimum=0, expected="None or an integer >= 0 (frames)")


# -- object ids


def check_object_id(obj_id: object) -> int:
    return check_int(obj_id, "object id", expected="an integer (numpy integers too; not bool)")


def check_known_object(obj_id: object, object_ids: list[int]) -> int:
    obj_id = check_object_id(obj_id)
    if obj_id not in object_ids:
        raise InputError(f"object id | received {obj_id}; expected one of the tracked objects {list(object_ids)}")
    return obj_id


def check_object_slot(obj_id: object, object_ids: list[int], max_objects: int) -> int:
    """An id to prompt: a tracked object's, or a new one while there is room for it."""
    obj_id = check_object_id(obj_id)
    if obj_id not in object_ids and len(object_ids) >= max_objects:
        raise InputError(
            f"add object {obj_id} | received a {max_objects + 1}th object; expected at most max_objects="
            f"{max_objects}. Remove an object or open the session with a larger max_objects."
        )
    return obj_id


# -- prompts


def check_points(points, labels, frame_size: tuple[int, int], required: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """points [k, 2] (x, y) in source pixels, labels [k] of exactly 1 (positive) / 0 (negative);
    labels default to positive. With `required`, at least one point (there is no box)."""
    expected = "points as [[x, y], ...], shape (k, 2), in source pixels"
    pts = np.zeros((0, 2), np.float32) if points is None else _numbers(points, "points", expected)
    if pts.size == 0:
        pts = np.zeros((0, 2), np.float32)  # [] and None: no clicks
    elif pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points | received shape {pts.shape}; expected {expected}")
    if required and len(pts) == 0:
        raise InputError("points | received no points and no box; expected at least one point (x, y) or a box")
    _check_inside(pts, frame_size, "points")
    if labels is None:
        return pts.astype(np.float32), np.full(len(pts), LABEL_POSITIVE, np.int32)
    lbl = _numbers(labels, "point labels", "a list of 1 (positive) / 0 (negative), one per point", kinds="biuf")
    if lbl.ndim != 1 and lbl.size:
        raise InputError(f"point labels | received shape {lbl.shape}; expected shape ({len(pts)},), one label per point")
    lbl = lbl.reshape(-1)
    if len(lbl) != len(pts):
        raise InputError(f"points | received {len(pts)} points and {len(lbl)} labels; expected one label per point")
    # Exactly 0 or 1: a 0.5 cast to int would silently become a negative click.
    bad = lbl[(lbl != LABEL_POSITIVE) & (lbl != LABEL_NEGATIVE)]
    if bad.size:
        raise InputError(
            f"point labels | received {bad.tolist()}; expected 1 (positive) or 0 (negative). "
            "Boxes go through the box argument (add_box in StreamTracker)."
        )
    return pts.astype(np.float32), lbl.astype(np.int32)


def check_box(box, frame_size: tuple[int, int]) -> np.ndarray:
    """box (x0, y0, x1, y1) in source pixels -> [2, 2] corners."""
    expected = "(x0, y0, x1, y1) in source pixels"
    b = _numbers(box, "box", expected)
    if b.shape not in ((4,), (1, 4), (2, 2)):
        raise InputError(f"box | received shape {b.shape}; expected one box {expected}")
    corners = b.astype(np.float32).reshape(2, 2)
    _check_inside(corners, frame_size, "box")
    if not (corners[1] > corners[0]).all():
        raise InputError(f"box | received {corners.reshape(-1).tolist()}; expected x1 > x0 and y1 > y0")
    return corners


def check_box_with_clicks(box, clear_old_points: bool) -> None:
    """A box is the first prompt of a frame (the official rule): it cannot add to earlier clicks."""
    if box is not None and not clear_old_points:
        raise InputError("box | received a box with clear_old_points=False; expected clear_old_points=True (a box comes before any click)")


def _check_inside(pts: np.ndarray, frame_size: tuple[int, int], what: str) -> None:
    h, w = frame_size
    if not np.isfinite(pts).all():
        raise InputError(f"{what} | received non-finite coordinates {pts.tolist()}; expected pixel coordinates")
    outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
    if outside.any():
        raise InputError(
            f"{what} | received {pts[outside].tolist()} outside the {w}x{h} frame; "
            f"expected x in [0, {w}] and y in [0, {h}] (source pixels)"
        )


def check_mask(mask, frame_size: tuple[int, int] | None, subject: str = "mask") -> np.ndarray:
    """An object's mask [H, W] as bool, taken as the official predictor takes it: any nonzero value
    is inside (so 0/255 and 0/1 masks are the same mask). NaN or inf is neither: an error.
    `frame_size` None: any 2-D size (the offline predictor resizes it to the model's input)."""
    expected = "a 2-D mask of bool or numbers (nonzero = inside)"
    m = _numbers(mask, subject, expected, kinds="biuf")
    if m.ndim != 2 or (frame_size is not None and m.shape != tuple(frame_size)):
        size = f"{tuple(frame_size)}, the frame size" if frame_size is not None else "(H, W)"
        raise InputError(f"{subject} | received shape {m.shape}; expected {size}")
    if m.dtype == bool:
        return m
    if m.dtype.kind == "f" and not np.isfinite(m).all():
        raise InputError(f"{subject} | received non-finite values (NaN or inf); expected {expected}. Replace them first, e.g. np.nan_to_num(mask)")
    return m != 0


def check_mask_input(mask_input, low_res_size: int) -> np.ndarray:
    """ImagePredictor's mask_input: low-res logits from a previous predict(), as [1, 1, h, w] float32."""
    lr = low_res_size
    expected = f"(1, {lr}, {lr}) low-res logits from a previous predict()"
    m = _numbers(mask_input, "mask_input", expected)
    if m.shape not in ((1, lr, lr), (lr, lr)):
        raise InputError(f"mask_input | received shape {m.shape}; expected {expected}")
    if not np.isfinite(m).all():
        raise InputError(f"mask_input | received non-finite values (NaN or inf); expected finite {expected}")
    return m.astype(np.float32).reshape(1, 1, lr, lr)


# -- files


def check_output_path(path: str | Path, folder: bool = False, subject: str = "output") -> Path:
    """A file (or with `folder`, a folder) the command may create: not a folder where a file is
    meant or the reverse, under folders that exist or can be made, writable. Nothing is created
    here, so a run that fails before its first frame leaves nothing behind."""
    path = Path(path)
    want = "a folder" if folder else "a file"
    if path.exists() and path.is_dir() != folder:
        raise InputError(f"{subject} {path} | received the path of an existing {'file' if folder else 'folder'}; expected {want} path")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{subject} {path} | received a path under {ancestor}, which is a file; expected {want} path under a folder")
    if not os.access(ancestor, os.W_OK):
        raise InputError(f"{subject} {path} | received a path under {ancestor}, which is not writable; expected a writable folder")
    return path


def positive_int(text: str) -> int:
    """An argparse type: a count that must be at least 1 (0 would silently mean "no limit")."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"received {text!r}; expected a whole number >= 1")
    return value
