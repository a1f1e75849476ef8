"""Official-format checkpoints: strict loading, config recognition, and clear errors on bad files."""

from __future__ import annotations

import pytest
import torch

from streamsam.errors import CheckpointError
from streamsam.export.checkpoint import detect_config, load_checkpoint
from streamsam.export.config import CONFIGS, get_config
from streamsam.export.modeling.sam2_model import Sam2Model
from streamsam.export.random_weights import seeded_state_dict


def _write_checkpoint(path, config_name: str, seed: int = 0):
    shapes = Sam2Model.expected_shapes(get_config(config_name))
    state = seeded_state_dict(shapes, seed=seed)
    torch.save({"model": state}, path)
    return state


def test_official_format_loads_strictly_and_the_config_is_recognised(tmp_path):
    path = tmp_path / "reduced.pt"
    state = _write_checkpoint(path, "reduced")
    model = load_checkpoint(path, image_size=256)
    assert model.config.name == "reduced"
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_small"])
def test_official_sizes_load_from_a_file_and_are_recognised(tmp_path, name):
    path = tmp_path / f"{name}.pt"
    _write_checkpoint(path, name)
    assert load_checkpoint(path, image_size=512).config.name == name


def test_every_official_version_and_size_is_recognised_from_its_shapes():
    for name, config in CONFIGS.items():
        shapes = Sam2Model.expected_shapes(config)
        state = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        detected = detect_config(state)
        if name in ("demo_384", "demo_512"):
            # The demo weights at other input sizes: weights do not say the input size, so they read as demo.
            assert detected.name == "demo" and Sam2Model.expected_shapes(detected) == shapes
        else:
            assert detected.name == name


def test_truncated_file_is_refused_with_what_was_received(tmp_path):
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    _write_checkpoint(path, "reduced")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"bytes that torch.load cannot read.*truncated"):
        load_checkpoint(path)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="expected a complete PyTorch checkpoint"):
        load_checkpoint(path)
    torch.save({"model": "not a state dict"}, path)
    with pytest.raises(CheckpointError, match=r'expected \{"model": state_dict\}'):
        load_checkpoint(path)


def test_missing_file_says_so(tmp_path):
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path / "absent.pt")


def test_checkpoint_of_another_config_names_keys_and_the_likely_config(tmp_path):
    path = tmp_path / "reduced.pt"
    _write_checkpoint(path, "reduced")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, config="sam2.1_hiera_tiny")
    message = str(info.value)
    assert "do not fit config 'sam2.1_hiera_tiny'" in message
    assert "shape mismatches" in message and "missing keys" in message
    assert "--config reduced" in message


def test_sam2_weights_named_as_sam2_1_list_the_missing_2_1_parameters(tmp_path):
    path = tmp_path / "reduced_sam2.pt"
    _write_checkpoint(path, "reduced_sam2")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, config="reduced", image_size=256)
    assert "no_obj_embed_spatial" in str(info.value)
    assert "--config reduced_sam2" in str(info.value)


def test_unsupported_image_size_is_refused(tmp_path):
    path = tmp_path / "reduced.pt"
    _write_checkpoint(path, "reduced")
    with pytest.raises(ValueError, match=r"received image_size=1000; expected a multiple of 32"):
        load_checkpoint(path, image_size=1000)


def test_every_official_version_and_size_has_exactly_the_official_keys_and_shapes():
    """tests/golden/official_state_dict_shapes.json.gz is read off the official sam2 package
    (make_golden.py --dump-keys), so an official checkpoint of any size loads strictly."""
    import gzip
    import json

    from conftest import GOLDEN

    official = json.loads(gzip.decompress((GOLDEN / "official_state_dict_shapes.json.gz").read_bytes()))["configs"]
    assert len(official) == 8
    for name, shapes in official.items():
        ours = {k: list(v) for k, v in Sam2Model.expected_shapes(get_config(name)).items()}
        missing, unexpected = sorted(set(shapes) - set(ours)), sorted(set(ours) - set(shapes))
        assert not missing and not unexpected, f"{name}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        assert ours == shapes, f"{name}: shapes differ"
