"""ImagePredictor against the same model run in PyTorch the way SAM2ImagePredictor runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import moving_square_video
from streamsam.contracts import PIXEL_MEAN, PIXEL_STD
from streamsam.errors import StreamSamError
from streamsam.export.config import get_config
from streamsam.export.graphs.image_encoder import ImageEncoderGraph
from streamsam.export.graphs.mask_decoder import MaskDecoderGraph
from streamsam.export.modeling.sam2_model import Sam2Model
from streamsam.export.random_weights import seeded_state_dict
from streamsam.image_predictor import ImagePredictor

IMAGE = next(moving_square_video(1, height=150, width=200, seed=4))


@pytest.fixture(scope="module")
def torch_model():
    model = Sam2Model(get_config("reduced"))
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    return model.eval()


def reference_predict(model, image, coords, labels, multimask):
    """SAM2ImagePredictor.set_image + predict, written with torch ops on our verified modules."""
    s = model.config.image_size
    t = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0
    t = F.interpolate(t[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    t = (t - torch.tensor(PIXEL_MEAN)[:, None, None]) / torch.tensor(PIXEL_STD)[:, None, None]
    with torch.no_grad():
        hr0, hr1, embed = ImageEncoderGraph(model)(t)
        embed = embed + model.no_mem_embed.reshape(1, -1, 1, 1)
        h, w = image.shape[:2]
        pts = torch.tensor(coords, dtype=torch.float32)[None] / torch.tensor([w, h]) * s
        lbl = torch.tensor(labels, dtype=torch.int32)[None]
        outs = MaskDecoderGraph(model)(embed, hr0, hr1, pts, lbl, torch.zeros(1, 1, s // 4, s // 4), torch.zeros(1, 1), torch.tensor([multimask]),
                                     torch.zeros(1, dtype=torch.int32))  # fmt: skip
    count = 3 if multimask else 1
    low_res = outs[0][0, :count]
    logits = F.interpolate(low_res[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    return logits.numpy(), outs[1][0, :count].numpy()


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_matches_the_reference(reduced_graphs, torch_model, multimask):
    predictor = ImagePredictor(reduced_graphs)
    predictor.set_image(IMAGE)
    coords, labels = [(60.0, 70.0), (150.0, 40.0)], [1, 0]
    logits, ious, low_res = predictor.predict(coords, labels, multimask_output=multimask, return_logits=True)
    want_logits, want_ious = reference_predict(torch_model, IMAGE, coords, labels, multimask)
    assert logits.shape == (3 if multimask else 1, 150, 200) and low_res.shape[-2:] == (64, 64)
    np.testing.assert_allclose(ious, want_ious, atol=1e-4)
    decided = np.abs(want_logits) > 1e-2
    assert np.array_equal(logits[decided] > 0, want_logits[decided] > 0)


def test_box_and_mask_feedback_and_errors(reduced_graphs):
    predictor = ImagePredictor(reduced_graphs)
    with pytest.raises(StreamSamError, match="set_image"):
        predictor.predict([(10, 10)], [1])
    predictor.set_image(IMAGE)
    masks, ious, low_res = predictor.predict(box=(40, 40, 120, 110), multimask_output=False)
    assert masks.shape == (1, 150, 200) and masks.dtype == bool
    again, _, _ = predictor.predict([(60, 70)], [1], mask_input=low_res, multimask_output=False)
    assert again.shape == (1, 150, 200)
    with pytest.raises(StreamSamError, match="outside the 200x150 frame"):
        predictor.predict([(250, 10)], [1])
    with pytest.raises(StreamSamError, match="no prompt"):
        predictor.predict()
    with pytest.raises(StreamSamError, match="low-res logits"):
        predictor.predict([(10, 10)], [1], mask_input=np.zeros((5, 5)))
