"""`python -m benchmarks side_by_side` end to end on the reduced config, without its peers (they
need the official sam2 environment): every section of the report is measured and written."""

from __future__ import annotations

import json

import pytest

from benchmarks.__main__ import main as bench_main


def test_side_by_side_writes_fill_levels_graphs_image_mode_and_memory(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = bench_main(["side_by_side", "--config", "reduced", "--image-size", "256", "--objects", "1,2", "--frames", "9",
                       "--stream-frames", "12", "--image-repeats", "2", "--peers", "none", "--allow-busy", "--out", str(tmp_path)])
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
    # The ceiling is ONNX Runtime's measured GEMM rate; the load is recorded around each side.
    assert "Ceiling: ONNX Runtime's measured FP32 GEMM" in report and data["machine"]["gemm_gflops"] > 0
    assert {"start", "after_ours", "after_peers"} <= set(data["machine"]["load_average"])


def test_an_unknown_benchmark_is_named_with_the_known_ones(capsys):
    assert bench_main(["sideways"]) == 2
    assert "received 'sideways'; expected one of side_by_side" in capsys.readouterr().err


def test_the_nominal_peak_comes_from_vendor_and_family_not_the_flags_alone():
    from benchmarks.flops import flops_per_cycle

    avx512 = {"fma", "avx2", "avx512f"}
    assert flops_per_cycle("AuthenticAMD", 26, avx512)[0] == 64  # Zen 5: full-width AVX-512
    assert flops_per_cycle("AuthenticAMD", 25, avx512)[0] == 32  # Zen 4: the same flags, double-pumped
    assert flops_per_cycle("AuthenticAMD", 25, {"fma", "avx2"})[0] == 32  # Zen 3
    assert flops_per_cycle("GenuineIntel", 6, avx512)[0] == 64
    assert flops_per_cycle("HygonGenuine", 24, {"fma", "avx2"}) is None  # unknown: the measured rate alone


def test_onnx_runtimes_gemm_rate_is_measured():
    from benchmarks.flops import measured_gemm_gflops

    assert measured_gemm_gflops(1, size=256, repeats=2) > 1.0


def test_a_busy_machine_is_refused_before_anything_runs(monkeypatch, capsys):
    monkeypatch.setattr("os.getloadavg", lambda: (3.5, 2.0, 1.0))
    with pytest.raises(SystemExit) as stop:
        bench_main(["side_by_side", "--config", "reduced", "--image-size", "256", "--peers", "none"])
    assert stop.value.code == 2
    assert "load average | received 3.50 (1 min); expected below 0.75" in capsys.readouterr().err


def test_multi_stream_writes_throughput_and_mask_agreement_per_stream_count(tmp_path):
    from benchmarks.multi_stream import thread_split

    assert bench_main(["multi_stream", "--config", "reduced", "--image-size", "256", "--streams", "1", "2", "--frames", "2",
                       "--warmup", "1", "--allow-busy", "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("multi_stream_cpu-*.json")
    data = json.loads(json_path.read_text())
    assert [r["streams"] for r in data["rows"]] == [1, 2]
    for row in data["rows"]:
        assert row["batched"]["frames_per_s"] > 0 and row["separate"]["processes"] == row["streams"]
        assert row["min_iou"] >= 0.999  # the batched step's masks are the single-stream ones
    assert "| 2 |" in json_path.with_suffix(".md").read_text()
    assert [thread_split(16, n) for n in (1, 2, 4, 8, 32)] == [16, 8, 4, 2, 1]


def test_ort_memory_alternates_the_settings_in_fresh_processes(tmp_path):
    assert bench_main(["ort_memory", "--config", "reduced", "--image-size", "256", "--frames", "9", "--repeats", "1",
                       "--threads", "1", "--allow-busy", "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("ort_memory_reduced_256_*.json")
    sides = json.loads(json_path.read_text())["sides"]
    assert set(sides) == {"defaults", "lean"}
    for side in sides.values():
        assert len(side["rss_mb_per_frame_first_run"]) == 9 and len(side["steady_ms_per_run"]) == 1
    assert "lean (one arena, no patterns; the default)" in json_path.with_suffix(".md").read_text()


def test_attention_kernels_checks_every_form_against_a_float64_reference(tmp_path):
    assert bench_main(["attention_kernels", "--sizes", "256:640", "--threads", "1", "--repeats", "1", "--runs", "1",
                       "--allow-busy", "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("attention_kernels_*.json")
    rows = json.loads(json_path.read_text())["rows"]
    assert [r["form"] for r in rows] == ["exported", "mha_masked", "mha_flash", "attention23"]
    for row in rows:  # the exported form and the fused kernels compute the same attention
        assert row["max_abs_error"] < 1e-5 and row["gflops_per_s"] > 0


def test_frame_accounting_splits_each_frame_into_graph_calls_and_the_rest(tmp_path):
    assert bench_main(["frame_accounting", "--config", "reduced", "--image-size", "256", "--add-at", "9", "--threads", "1",
                       "--allow-busy", "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("frame_accounting_reduced_256_*.json")
    data = json.loads(json_path.read_text())
    frames = data["frames"]
    assert [f["objects"] for f in frames] == [0] + [1] * 9 + [2] * 10
    for f in frames:  # graph time plus the rest is the frame
        assert f["outside_ms"] >= 0 and abs(f["outside_ms"] + sum(f["graphs_ms"].values()) - f["ms"]) < 1e-6
    steady = data["summary"]["steady"]
    assert steady["1"]["frames"] == [7, 8] and steady["2"]["frames"] == [16, 17, 18, 19]
    assert set(steady["2"]["graphs_ms"]) == {"image_encoder", "memory_attention", "mask_decoder", "memory_encoder"}
    assert "| 2 |" in json_path.with_suffix(".md").read_text()


def test_graph_profile_breaks_each_graph_down_by_operator(tmp_path):
    assert bench_main(["graph_profile", "--config", "reduced", "--image-size", "256", "--runs", "1", "--allow-busy",
                       "--out", str(tmp_path)]) == 0
    (json_path,) = tmp_path.glob("graph_profile_reduced_256_*.json")
    graphs = json.loads(json_path.read_text())["graphs"]
    assert set(graphs) == {"image_encoder", "memory_attention", "mask_decoder", "memory_encoder"}
    for g in graphs.values():  # the operator shares account for the whole of a call's kernel time
        assert abs(sum(o["share"] for o in g["ops"].values()) - 1) < 1e-6 and 0 < g["matrix_share"] < 1
    assert "MatMul" in graphs["memory_attention"]["ops"] and "Conv" in graphs["image_encoder"]["ops"]
