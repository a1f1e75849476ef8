"""Camera encodings to RGB (padded rows included), refused encodings and short data, mask images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags")

from streamsam.errors import InputError  # noqa: E402
from streamsam.ros2 import images, types  # noqa: E402
from streamsam.ros2.codec import header  # noqa: E402


def image(pixels: np.ndarray, encoding: str, pad: int = 0):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    data = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)  # padding bytes at each row's end
    return types.message(types.IMAGE)(header=header(1, "cam"), height=h, width=w, encoding=encoding, is_bigendian=0,
                                      step=data.shape[1], data=data.reshape(-1))


@pytest.mark.parametrize("pad", [0, 6])
def test_encodings_to_rgb(pad):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 255, (5, 7, 1), dtype=np.uint8)
    np.testing.assert_array_equal(images.image_to_rgb(image(rgb, "rgb8", pad)), rgb)
    np.testing.assert_array_equal(images.image_to_rgb(image(rgb[:, :, ::-1].copy(), "bgr8", pad)), rgb)
    np.testing.assert_array_equal(images.image_to_rgb(image(np.concatenate([rgb, alpha], 2), "rgba8", pad)), rgb)
    np.testing.assert_array_equal(images.image_to_rgb(image(np.concatenate([rgb[:, :, ::-1], alpha], 2), "bgra8", pad)), rgb)
    gray = rgb[:, :, 0].copy()
    np.testing.assert_array_equal(images.image_to_rgb(image(gray, "mono8", pad)), np.repeat(gray[:, :, None], 3, 2))


def test_refused_images():
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(InputError, match="received '16UC1'.*expected one of rgb8"):
        images.image_to_rgb(image(rgb[:, :, :2].copy(), "16UC1"))
    short = image(rgb, "rgb8")
    short.data = short.data[:-3]
    with pytest.raises(InputError, match="truncated"):
        images.image_to_rgb(short)
    with pytest.raises(InputError, match="mono8"):
        images.mono_to_array(image(rgb, "rgb8"))


def test_mono_images_round_trip():
    labels8 = np.arange(12, dtype=np.uint8).reshape(3, 4)
    labels16 = labels8.astype(np.uint16) * 300
    for labels, encoding in ((labels8, "mono8"), (labels16, "mono16")):
        msg = images.mono_image(header(1, "cam"), labels)
        assert msg.encoding == encoding and msg.is_bigendian == 0
        back = types.deserialize(types.serialize(msg, types.IMAGE), types.IMAGE)
        np.testing.assert_array_equal(images.mono_to_array(back), labels)
