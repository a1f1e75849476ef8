"""ONNX export: four graphs and a manifest, each graph checked on ONNX Runtime against PyTorch,
and the symbolic axes (objects, points) really dynamic."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from streamsam.cli import main as cli_main
from streamsam.contracts import GRAPH_NAMES, MEMORY_SLOTS, POINTER_SLOTS
from streamsam.export.config import get_config
from streamsam.export.modeling import memory_attention
from streamsam.export.modeling.sam2_model import Sam2Model
from streamsam.export.onnx_export import GRAPH_WRAPPERS, ExportOptions, example_inputs, export_model
from streamsam.export.random_weights import seeded_state_dict
from streamsam.manifest import read_manifest


@pytest.fixture(scope="module")
def reduced_model():
    model = Sam2Model(get_config("reduced"))
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    return model.eval()


@pytest.fixture(scope="module")
def exported(reduced_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("reduced_graphs")
    lines: list[str] = []
    manifest = export_model(reduced_model, out, ExportOptions(max_prompted_frames=2), progress=lines.append)
    return out, manifest, lines


def test_export_writes_four_checked_graphs_and_a_manifest(exported):
    out, manifest, lines = exported
    assert len(lines) == 4 and all("ONNX Runtime max abs error" in line for line in lines)
    assert read_manifest(out) == manifest
    data = json.loads((out / "manifest.json").read_text())
    assert data["config"]["name"] == "reduced" and data["dims"]["image_size"] == 256
    assert data["dims"]["memory_slots"] == 2 + 6 and data["dims"]["pointer_slots"] == 2 + 15
    assert set(data["contracts"]) == set(GRAPH_NAMES)
    for name in GRAPH_NAMES:
        assert (out / f"{name}.onnx").stat().st_size == data["graphs"][name]["size_bytes"]
        assert len(data["graphs"][name]["sha256"]) == 64
    assert {"torch", "onnx", "onnxruntime", "streamsam"} <= set(data["versions"])


@pytest.mark.parametrize("objects, points, slots", [(1, 1, None), (3, 5, {MEMORY_SLOTS: 3, POINTER_SLOTS: 5})])
def test_graphs_match_pytorch_at_other_object_point_and_slot_counts(exported, reduced_model, objects, points, slots):
    out, manifest, _ = exported
    for name, contract in manifest.contracts.items():
        session = ort.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        inputs = example_inputs(contract, manifest.dims, objects=objects, points=points, seed=7, slots=slots)
        got = session.run(contract.output_names, inputs)
        wrapper = GRAPH_WRAPPERS[name](reduced_model)
        with torch.no_grad():
            want = wrapper(*(torch.from_numpy(inputs[n]) for n in contract.input_names))
        want = want if isinstance(want, tuple) else (want,)
        for spec, have, expected in zip(contract.outputs, got, want):
            expected = expected.numpy()
            assert have.shape == expected.shape, (name, spec.name)
            if "masks" in spec.name:
                decided = np.abs(expected) > 1e-3
                assert np.array_equal(np.sign(have[decided]), np.sign(expected[decided])), (name, spec.name)
            else:
                assert np.abs(have - expected).max() <= 1e-3, (name, spec.name)


def test_memory_attention_chunks_its_queries_without_changing_the_result(monkeypatch):
    # even chunks of at most 512 queries: the 256 input's 16x16 grid is one, 384's two, 1024's eight
    assert [memory_attention.query_chunk_size(n) for n in (256, 576, 4096)] == [256, 288, 512]
    torch.manual_seed(0)
    attention = memory_attention.RoPEAttention(32, 16).eval()
    q, kv = torch.randn(2, 1100, 32), torch.randn(2, 300, 16)
    rope = memory_attention.rope_tables(torch.randn(1100, 16)), memory_attention.rope_tables(torch.randn(300, 16))
    bias = torch.where(torch.rand(2, 1, 1, 300) < 0.3, memory_attention.MASKED_KEY_BIAS, 0.0)
    with torch.no_grad():
        chunked = attention(q, kv, kv, *rope, bias)  # 3 chunks of 367 / 366 queries
        monkeypatch.setattr(memory_attention, "QUERY_CHUNK_TOKENS", 2048)
        whole = attention(q, kv, kv, *rope, bias)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_cli_export_from_a_checkpoint_file(tmp_path, reduced_model, capsys):
    ckpt = tmp_path / "reduced.pt"
    torch.save({"model": reduced_model.state_dict()}, ckpt)
    code = cli_main(["export", "--checkpoint", str(ckpt), "--image-size", "256", "--out", str(tmp_path / "g")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "loaded" in printed and "reduced" in printed and "[4/4] memory_encoder" in printed
    assert read_manifest(tmp_path / "g").config["name"] == "reduced"


def test_cli_reports_a_bad_checkpoint_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    code = cli_main(["export", "--checkpoint", str(bad), "--out", str(tmp_path / "g")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("streamsam export: error: checkpoint") and "Traceback" not in err


def test_float16_weight_storage_halves_the_graphs_and_keeps_their_outputs(exported, reduced_model, tmp_path):
    """The bundled demo model ships this way: parameters stored in float16, computed in float32.
    The graphs must be much smaller, run on ONNX Runtime, and stay close to the float32 graphs
    (rounding the weights to float16 is the only change)."""
    import onnx

    out32, manifest32, _ = exported
    manifest16 = export_model(reduced_model, tmp_path, ExportOptions(max_prompted_frames=2, weights="float16"), progress=None)
    assert manifest16.config["stored_weights"] == "float16"
    total32 = sum(g.size_bytes for g in manifest32.graphs.values())
    total16 = sum(g.size_bytes for g in manifest16.graphs.values())
    assert total16 < 0.65 * total32
    decoder = onnx.load(str(tmp_path / "mask_decoder.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in decoder.graph.initializer)
    # the PyTorch model passed in is untouched (the exporter rounds a copy)
    assert any((p.detach().half().float() != p.detach()).any() for p in reduced_model.parameters())
    contract = manifest16.contracts["image_encoder"]
    inputs = example_inputs(contract, manifest16.dims, objects=1, points=1)
    got = ort.InferenceSession(str(tmp_path / "image_encoder.onnx")).run(None, inputs)
    want = ort.InferenceSession(str(out32 / "image_encoder.onnx")).run(None, inputs)
    for g, w in zip(got, want):
        assert np.abs(g - w).max() < 0.05 * np.abs(w).max()


def test_export_options_reject_an_unknown_weight_dtype():
    with pytest.raises(ValueError, match="weights='bfloat16'"):
        ExportOptions(weights="bfloat16")
