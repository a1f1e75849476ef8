"""benchmarks/official_side.py, the peers' side of the side-by-side benchmark.

The helpers run here (torch only). The official models run only where the official venv is
(STREAMSAM_OFFICIAL_PYTHON, or /work/venv-official/bin/python): CI has no sam2, so that test skips
there and never counts as passing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks import official_side as side

OFFICIAL_PYTHON = Path(os.environ.get("STREAMSAM_OFFICIAL_PYTHON", "/work/venv-official/bin/python"))


def test_the_benchmark_command_lines_parse():
    """The exact argument lists benchmarks/side_by_side.py passes (every subcommand takes --threads)."""
    common = ["--config", "sam2.1_hiera_tiny", "--image-size", "512", "--threads", "1", "--out", "r.json"]
    assert side.parse_args(["flops", *common]).command == "flops"
    video = side.parse_args(["video", *common, "--weights", "w.pt", "--frames-dir", "d", "--prompts", "p.json"])
    assert (video.frames, video.image_size, video.threads) == (None, 512, 1)
    sam = side.parse_args(["sam-image", "--model", "vit_h", "--image-size", "512", "--repeats", "3",
                           "--warmup", "1", "--threads", "1", "--out", "r.json"])
    assert (sam.model, sam.repeats, sam.warmup) == ("vit_h", 3, 1)


def test_config_names_map_to_the_official_yaml_files():
    assert side.config_file("sam2.1_hiera_tiny") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert side.config_file("sam2_hiera_b+") == "configs/sam2/sam2_hiera_b+.yaml"
    assert side.config_file("sam2.1_hiera_base_plus") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    with pytest.raises(side.OfficialSideError, match="expected one of"):
        side.config_file("sam2.1_hiera_huge")
    assert "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]" in side.size_overrides(512)
    with pytest.raises(side.OfficialSideError, match="multiple of 32"):
        side.size_overrides(500)


def test_attention_on_the_cpu_is_counted():
    """FlopCounterMode alone counts 0 for the CPU attention kernel; ours counts QK^T + AV."""
    q, k = torch.randn(1, 2, 64, 32), torch.randn(1, 2, 96, 32)
    with torch.inference_mode():
        flops = side.flops_of(lambda: F.scaled_dot_product_attention(q, k, k))
    assert flops == 2 * (2 * 2 * 64 * 96 * 32)


def test_stage_timer_attributes_time_to_each_stage_and_restores_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    original_forward = model.forward
    timer = side.StageTimer()
    timer.wrap_method(model, "forward", "whole")
    timer.hook_module(model[0], "linear")
    model(torch.zeros(1, 4))
    first = timer.take()
    assert set(first) == {"whole", "linear"} and first["whole"] >= first["linear"] > 0
    assert timer.take() == {"whole": 0.0, "linear": 0.0}
    timer.remove()
    model(torch.zeros(1, 4))
    assert timer.take() == {"whole": 0.0, "linear": 0.0}
    assert model.forward == original_forward and not model[0]._forward_hooks


def test_bad_prompt_files_say_what_is_expected(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"frame": 0, "objects": [{"obj_id": 1, "points": [[1, 2]], "labels": []}]}))
    with pytest.raises(side.OfficialSideError, match="expected"):
        side.read_prompts(path)
    path.write_text(json.dumps({"frame": 0, "objects": []}))
    with pytest.raises(side.OfficialSideError, match="at least one"):
        side.read_prompts(path)


@pytest.mark.skipif(not OFFICIAL_PYTHON.is_file(), reason=f"no official venv ({OFFICIAL_PYTHON})")
def test_official_flops_of_memory_attention_match_the_analytic_count(tmp_path):
    """The official stages at 256: memory attention over 7 memories + 16 pointers, counted by
    hand (projections, attention, MLP of 4 layers) equals what the official side reports."""
    out = tmp_path / "flops.json"
    subprocess.run([str(OFFICIAL_PYTHON), str(Path(side.__file__)), "flops", "--config", "sam2.1_hiera_tiny",
                    "--image-size", "256", "--threads", "1", "--out", str(out)],
                   check=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=120)
    result = json.loads(out.read_text())
    n, d, kv, ffn = 16 * 16, 256, 64, 2048
    m = 7 * n + 16 * (d // kv)
    per_layer = 2 * (4 * n * d * d + 2 * n * n * d  # self-attention: q, k, v, out + QK^T, AV
                     + 2 * n * d * d + 2 * m * kv * d + 2 * n * m * d  # cross-attention
                     + 2 * n * d * ffn)  # MLP
    assert result["flops"]["memory_attention"] == 4 * per_layer
    assert result["threads"] == 1 and result["torch_num_threads"] == 1
