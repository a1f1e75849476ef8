"""sensor_msgs images <-> numpy: camera images in (raw and compressed), label and mask images out."""

from __future__ import annotations

import numpy as np

from ..errors import InputError, require
from . import types

# Raw encodings a camera publishes that map to RGB without interpolation: channel order per encoding.
RGB_ORDER = {"rgb8": (0, 1, 2), "bgr8": (2, 1, 0), "rgba8": (0, 1, 2), "bgra8": (2, 1, 0)}
GRAY = ("mono8",)
SUPPORTED = tuple(RGB_ORDER) + GRAY


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 uint8 RGB (a view where it can be)."""
    enc, h, w, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    if enc not in SUPPORTED:
        raise InputError(
            f"image encoding | received {enc!r}; expected one of {', '.join(SUPPORTED)}. "
            "Convert on the camera side (image_proc) or publish a CompressedImage (jpeg/png)."
        )
    channels = 1 if enc in GRAY else len(enc) - 1  # rgb8 -> 3, rgba8 -> 4
    data = np.frombuffer(msg.data, np.uint8)
    if h <= 0 or w <= 0 or step < w * channels or data.size < step * h:
        raise InputError(
            f"image {w}x{h} {enc} | received step {step} and {data.size} bytes; expected step >= {w * channels} "
            f"and step * height = {step * h} bytes. The message is truncated or its header is wrong."
        )
    rows = data[: step * h].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(rows, 3, axis=2)
    return rows[:, :, list(RGB_ORDER[enc])]


def compressed_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png, as image_transport's compressed plugin) -> RGB."""
    cv2 = require("cv2", "video")
    bgr = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"compressed image | received format {msg.format!r} ({len(msg.data)} bytes) that does not decode; expected jpeg or png")
    return bgr[:, :, ::-1]


def mono_image(header, pixels: np.ndarray):
    """A mono8 or mono16 sensor_msgs/Image of a 2-D uint8 / uint16 array (little-endian)."""
    enc = "mono8" if pixels.dtype == np.uint8 else "mono16"
    pixels = np.ascontiguousarray(pixels, pixels.dtype.newbyteorder("<"))
    h, w = pixels.shape
    return types.message(types.IMAGE)(
        header=header, height=h, width=w, encoding=enc, is_bigendian=0, step=w * pixels.itemsize,
        data=pixels.view(np.uint8).reshape(-1),
    )


def mono_to_array(msg) -> np.ndarray:
    """A mono8 / mono16 sensor_msgs/Image -> 2-D array (masks in prompts, label images read back)."""
    dtype = {"mono8": np.uint8, "mono16": np.dtype(">u2" if msg.is_bigendian else "<u2")}.get(msg.encoding)
    if dtype is None:
        raise InputError(f"mask image | received encoding {msg.encoding!r}; expected mono8 (or mono16)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(msg.data, np.uint8)
    size = np.dtype(dtype).itemsize
    if step < w * size or data.size < step * h:
        raise InputError(f"mask image {w}x{h} | received step {step} and {data.size} bytes; expected {w * size * h} bytes at least")
    return data[: step * h].reshape(h, step)[:, : w * size].copy().view(dtype).reshape(h, w)
