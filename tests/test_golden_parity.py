"""Stage-by-stage parity with the official sam2 package (tests/golden, made by make_golden.py with
the same seeded weights): our PyTorch graphs within 1e-4 of the official outputs, and the exported
ONNX graphs on ONNX Runtime CPU within 1e-3 (mask logits: equal signs except within 1e-3 of zero)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from conftest import GOLDEN

sys.path.insert(0, str(GOLDEN))
import parity  # noqa: E402  (tests/golden/parity.py)

from streamsam.export.random_weights import state_dict_sha256  # noqa: E402

TORCH_TOLERANCE = 1e-4
ONNX_TOLERANCE = 1e-3
STAGE_FIXTURES = [
    ("image_encoder", "reduced"),
    ("image_encoder", "tiny"),
    ("memory_attention", "reduced"),
    ("memory_attention", "reduced_sam2"),
    ("memory_attention", "tiny"),
    ("mask_decoder", "reduced"),
    ("mask_decoder", "tiny"),
    ("memory_encoder", "reduced"),
    ("memory_encoder", "reduced_sam2"),
    ("memory_encoder", "tiny"),
]


@pytest.mark.parametrize("name", ["reduced", "reduced_sam2", "tiny"])
def test_our_weights_and_keys_are_the_official_ones(name):
    meta = json.loads((GOLDEN / name / "config.json").read_text())
    model = parity.golden_model(name)
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == meta["state_dict_shapes"]
    assert state_dict_sha256(model.state_dict()) == meta["weights_sha256"]


@pytest.mark.parametrize("stage, name", STAGE_FIXTURES)
def test_pytorch_matches_official(stage, name):
    cases = parity.STAGE_CASES[stage](name)
    assert cases, f"no golden cases for {name}/{stage}"
    for case in cases:
        got = parity.run_torch(name, case)
        for expected in case.expected:
            err, _ = parity.compare(got, expected)
            assert err <= TORCH_TOLERANCE, f"{name}/{stage}/{case.name}/{expected.ours}: max abs error {err:.3g}"


@pytest.mark.parametrize("stage, name", STAGE_FIXTURES)
def test_onnx_runtime_matches_official(stage, name, tmp_path_factory):
    out_dir = str(tmp_path_factory.getbasetemp() / "golden_graphs")
    for case in parity.STAGE_CASES[stage](name):
        got = parity.run_onnx(name, case, out_dir)
        for expected in case.expected:
            err, flipped = parity.compare(got, expected, sign_margin=ONNX_TOLERANCE)
            what = f"{name}/{stage}/{case.name}/{expected.ours}"
            if expected.is_mask:
                assert flipped == 0, f"{what}: {flipped} mask logits of the wrong sign"
            else:
                assert err <= ONNX_TOLERANCE, f"{what}: max abs error {err:.3g}"


@pytest.mark.parametrize("name", ["reduced", "tiny"])
def test_mask_prompt_pointer_comes_from_the_decoder_on_the_downsampled_mask(name):
    """The official `_use_mask_as_output`: a mask prompt's pointer is the decoder's, run without
    points on `mask_downsample(mask)`, then gated by whether the mask has any pixel."""
    z = parity.load(name, "mask_decoder")
    model = parity.golden_model(name)
    mask = z["mask_as_output/in/mask_inputs"]
    with torch.no_grad():
        low = model.mask_downsample(torch.from_numpy(mask)).numpy()
    inputs = parity._decoder_inputs(z, model, None, None, low, multimask=False)
    case = parity.Case("mask_decoder", "mask_as_output", inputs, ())
    got = parity.run_torch(name, case)
    present = (mask.reshape(len(mask), -1) > 0).any(axis=1, keepdims=True).astype(np.float32)
    assert present[:, 0].tolist() == [1.0, 0.0], "the fixture holds one empty mask"
    obj_ptr = present * got["obj_ptr"] + (1 - present) * model.no_obj_ptr.detach().numpy()
    err = float(np.abs(obj_ptr - z["mask_as_output/out/obj_ptr"]).max())
    assert err <= TORCH_TOLERANCE, f"mask prompt obj_ptr: max abs error {err:.3g}"
