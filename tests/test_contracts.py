"""The graph contracts are the single source of truth for names and shapes: check them for the
official tiny at 1024, the official sizes."""

import dataclasses

import pytest

from streamsam.contracts import GRAPH_NAMES, ModelDims, graph_contracts
from streamsam.manifest import GraphFile, Manifest, read_manifest
from streamsam.errors import StreamSamError

TINY_1024 = ModelDims(image_size=1024, d_model=256, mem_dim=64, num_maskmem=7, memory_slots=8, pointer_slots=17)


def test_tiny_1024_shapes_match_the_published_model():
    c = graph_contracts(TINY_1024)
    assert list(c) == list(GRAPH_NAMES)
    enc = c["image_encoder"]
    assert enc.tensor("image").concrete_shape(frames=1) == (1, 3, 1024, 1024)
    assert enc.tensor("high_res_feats_0").concrete_shape(frames=1) == (1, 32, 256, 256)
    assert enc.tensor("high_res_feats_1").concrete_shape(frames=1) == (1, 64, 128, 128)
    assert enc.tensor("image_embed").concrete_shape(frames=1) == (1, 256, 64, 64)
    att = c["memory_attention"]
    assert att.tensor("memory").shape == ("objects", "memory_slots", 64, 64, 64)
    assert att.tensor("obj_ptrs").shape == ("objects", "pointer_slots", 256)
    # the slot axes at capacity: 2 prompted + 6 recent memories, 2 prompted + 15 recent pointers
    assert att.tensor("memory").concrete_shape(objects=1, **TINY_1024.slot_capacity) == (1, 8, 64, 64, 64)
    assert att.tensor("obj_ptrs").concrete_shape(objects=1, **TINY_1024.slot_capacity) == (1, 17, 256)
    dec = c["mask_decoder"]
    assert dec.tensor("low_res_masks").shape == ("objects", 1, 256, 256)
    assert dec.tensor("point_coords").shape == ("objects", "points", 2)
    assert c["memory_encoder"].tensor("maskmem_features").shape == ("objects", 64, 64, 64)


def test_tensors_shared_between_graphs_agree():
    c = graph_contracts(TINY_1024)
    enc_out = {t.name: t for t in c["image_encoder"].outputs}
    dec_out = {t.name: t for t in c["mask_decoder"].outputs}
    for graph in ("memory_attention", "mask_decoder", "memory_encoder"):
        for spec in c[graph].inputs:
            if spec.name in enc_out:
                assert spec == enc_out[spec.name], (graph, spec.name)
    assert c["memory_attention"].outputs[0] == c["mask_decoder"].tensor("conditioned_embed")
    assert c["memory_encoder"].tensor("high_res_masks") == dec_out["high_res_masks"]
    assert c["memory_encoder"].tensor("object_score_logits") == dec_out["object_score_logits"]


def test_concrete_shape_names_missing_axes():
    spec = graph_contracts(TINY_1024)["mask_decoder"].tensor("point_coords")
    assert spec.concrete_shape(objects=2, points=3) == (2, 3, 2)
    with pytest.raises(ValueError, match="points"):
        spec.concrete_shape(objects=2)


def test_bad_dims_are_refused():
    with pytest.raises(ValueError, match="memory_slots"):
        dataclasses.replace(TINY_1024, memory_slots=3)


def test_manifest_round_trip_and_missing_folder(tmp_path):
    files = {g: GraphFile(f"{g}.onnx", "0" * 64, 1, {}) for g in GRAPH_NAMES}
    manifest = Manifest(config={"name": "x"}, dims=TINY_1024, graphs=files, opset=17, versions={})
    manifest.write(tmp_path)
    assert read_manifest(tmp_path) == manifest
    with pytest.raises(StreamSamError, match="streamsam export"):
        read_manifest(tmp_path / "nowhere")


def test_a_folder_of_the_previous_format_asks_for_a_re_export(tmp_path):
    """Format 1 had no frames axis and no row_frame: its graphs cannot run a multi-stream step."""
    import json

    files = {g: GraphFile(f"{g}.onnx", "0" * 64, 1, {}) for g in GRAPH_NAMES}
    Manifest(config={"name": "x"}, dims=TINY_1024, graphs=files, opset=17, versions={}).write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(StreamSamError, match="received format_version 1; expected 2. Re-export the graphs"):
        read_manifest(tmp_path)


def test_every_graph_reads_frames_and_each_row_names_its_frame():
    c = graph_contracts(TINY_1024)
    assert c["image_encoder"].tensor("image").shape == ("frames", 3, 1024, 1024)
    for graph in ("memory_attention", "mask_decoder", "memory_encoder"):
        assert c[graph].tensor("row_frame").shape == ("objects",) and c[graph].tensor("row_frame").dtype == "int32"
    assert c["mask_decoder"].tensor("high_res_feats_0").shape[0] == "frames"
