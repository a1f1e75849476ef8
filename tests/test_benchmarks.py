"""`python -m benchmarks side_by_side` end to end on the reduced config, without its peers (they
need the official sam2 environment): every section of the report is measured and written."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main as bench_main


def test_side_by_side_writes_fill_levels_graphs_image_mode_and_memory(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = bench_main(["side_by_side", "--config", "reduced", "--image-size", "256", "--objects", "1,2", "--frames", "9",
                       "--stream-frames", "12", "--image-repeats", "2", "--peers", "none", "--out", str(tmp_path)])
    assert code == 0
    stem = "side_by_side_reduced_256_obj1-2_cpu-"
    (json_path,) = tmp_path.glob(stem + "*.json")
    data = json.loads(json_path.read_text())
    tracking = data["ours"]["tracking"]
    assert sorted(tracking) == ["1", "2"]
    frames = tracking["2"]
    assert [f["fill"] for f in frames] == [0, 1, 2, 3, 4, 5, 6, 7, 7]
    assert set(frames[-1]["graphs_ms"]) == {"image_encoder", "memory_attention", "mask_decoder", "memory_encoder"}
    assert all(v > 0 for v in data["ours"]["flops"].values())
    assert len(data["ours"]["stream"]) == 12 and len(data["ours"]["image_mode"]["set_image"]) == 2
    report = json_path.with_suffix(".md").read_text()
    assert "| 2 | ours |" in report and "| memory_attention |" in report and "python -m benchmarks side_by_side" in report
    assert json_path.with_suffix(".png").is_file()


def test_an_unknown_benchmark_is_named_with_the_known_ones(capsys):
    assert bench_main(["sideways"]) == 2
    assert "received 'sideways'; expected one of side_by_side" in capsys.readouterr().err
