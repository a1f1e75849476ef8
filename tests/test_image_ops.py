"""Pre- and post-processing against the PyTorch operations the official predictors use."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from streamsam.contracts import PIXEL_MEAN, PIXEL_STD
from streamsam.errors import StreamSamError
from streamsam.image_ops import antialias_resize, fill_holes, preprocess_frame, resize_logits

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("shape, size", [((64, 64), (16, 16)), ((180, 240), (256, 256)), ((540, 960), (256, 256))])
def test_antialias_resize_is_torch_antialiased_bilinear(shape, size):
    x = RNG.normal(size=shape).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x)[None, None], size=size, mode="bilinear", align_corners=False, antialias=True)
    np.testing.assert_allclose(antialias_resize(x, *size), want[0, 0].numpy(), atol=1e-5)


def test_resize_logits_is_torch_bilinear_within_opencv_precision():
    x = RNG.normal(0, 8, size=(2, 64, 64)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x)[None], size=(180, 240), mode="bilinear", align_corners=False)[0].numpy()
    assert np.abs(resize_logits(x, 180, 240) - want).max() < 5e-4


def _official_video_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """sam2.utils.misc._load_img_as_tensor + load_video_frames' normalisation, in torch."""
    img = np.array(Image.fromarray(frame).resize((size, size))) / 255.0
    t = torch.from_numpy(img).permute(2, 0, 1).to(torch.float32)
    return ((t - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]).numpy()


def _official_image(frame: np.ndarray, size: int) -> np.ndarray:
    """SAM2Transforms: ToTensor, Resize (antialiased bilinear), Normalize."""
    t = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0
    t = F.interpolate(t[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return ((t - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]).numpy()


@pytest.mark.parametrize("mode, official, atol", [("pil_bicubic", _official_video_frame, 1e-6), ("antialias_bilinear", _official_image, 2e-5)])
def test_preprocessing_matches_the_official_predictors(mode, official, atol):
    frame = RNG.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    out = np.zeros((1, 3, 64, 64), np.float32)
    preprocess_frame(frame, out, mode)
    np.testing.assert_allclose(out[0], official(frame, 64), atol=atol)


def test_fast_resize_is_close_and_unknown_modes_are_refused():
    yy, xx = np.mgrid[0:120, 0:200]
    smooth = 127 + 100 * np.sin(xx / 17.0)[..., None] * np.cos(yy / 11.0)[..., None] * np.array([1.0, 0.5, -0.7])
    frame = smooth.astype(np.uint8)
    exact, fast = np.zeros((1, 3, 64, 64), np.float32), np.zeros((1, 3, 64, 64), np.float32)
    preprocess_frame(frame, exact, "antialias_bilinear")
    preprocess_frame(frame, fast, "fast")
    assert np.abs(exact - fast).mean() < 0.02
    with pytest.raises(StreamSamError, match="expected one of"):
        preprocess_frame(frame, fast, "nearest")


def test_fill_holes_fills_small_background_components_only():
    logits = np.full((1, 20, 20), 5.0, np.float32)
    logits[0, 5:7, 5:7] = -3.0  # a 4-pixel hole
    logits[0, 10:15, 10:15] = -3.0  # a 25-pixel hole
    logits[0, 0, 19] = -1.0  # a 1-pixel background corner: also a small component
    filled = fill_holes(logits.copy(), max_area=8)
    assert (filled[0, 5:7, 5:7] == 0.1).all() and filled[0, 0, 19] == 0.1
    assert (filled[0, 10:15, 10:15] == -3.0).all()
    # 8-connectivity: a diagonal pair is one component of 2 pixels
    diag = np.full((1, 6, 6), 5.0, np.float32)
    diag[0, 2, 2] = diag[0, 3, 3] = -1.0
    assert (fill_holes(diag.copy(), 1)[0, 2:4, 2:4] > 0).sum() == 2  # not filled at max_area 1
    assert (fill_holes(diag.copy(), 2)[0, [2, 3], [2, 3]] == 0.1).all()
