"""`streamsam demo` and the bundled demo model: what training.package_demo writes, what the demo
does with it, the command saying what is missing when it is not installed, and the bundled model on
the real bedroom video."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import SHARED_DATA
from streamsam.cli import main as cli_main

# Of the bundled clip's 3 clicked objects, the 2 that the bundled model follows through the first 24
# frames (measured 0.74 and 0.86 mean IoU; the other, 0.42, is lost for a while): the demo must keep showing them.
DEMO_TRACKED_OBJECTS, DEMO_MIN_IOU = 2, 0.6


def test_demo_says_what_is_missing_when_the_model_is_not_installed(monkeypatch, tmp_path, capsys):
    import streamsam.demo as demo

    monkeypatch.setattr(demo, "DEMO_MODEL", tmp_path)
    assert cli_main(["demo", "--out", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err
    assert "clip.json" in err and "training.package_demo" in err
    assert not any(p.suffix == ".mp4" for p in tmp_path.iterdir())
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    assert cli_main(["demo", "--out", str(tmp_path / "x.mp4"), "--model", str(empty)]) == 1
    assert str(empty / "clip.json") in capsys.readouterr().err


def test_a_packaged_model_and_clip_run_through_the_demo(tmp_path, capsys):
    """training.package_demo writes what `streamsam demo` reads (float16-stored graphs, an H.264
    clip, its true masks and clicks); the demo tracks it and reports time and IoU per object. The
    weights here are random: the path is judged, not the masks."""
    import json

    import av
    import torch

    import streamsam.demo as demo
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.random_weights import seeded_state_dict
    from training import package_demo
    from training.demo_config import DEMO_CONFIG

    checkpoint = tmp_path / "run" / "model.pt"
    checkpoint.parent.mkdir()
    torch.save({"model": seeded_state_dict(Sam2Model(DEMO_CONFIG).state_dict())}, checkpoint)
    (checkpoint.parent / "recipe.json").write_text(json.dumps({"seed": 0}))
    package = tmp_path / "my_demo"
    package_demo.main(["--checkpoint", str(checkpoint), "--out", str(package)])
    capsys.readouterr()

    video, clip, masks = demo.demo_clip(package)
    assert masks.shape[0] == clip["settings"]["num_frames"] and len(clip["clicks"]) == masks.shape[1] >= 2
    for k, click in enumerate(clip["clicks"]):
        x, y = click["point"]
        assert masks[0, k, int(y), int(x)]  # each click is inside its object
    out = tmp_path / "demo.mp4"
    assert cli_main(["demo", "--max-frames", "6", "--threads", "1", "--out", str(out), "--model", str(package)]) == 0
    printed = capsys.readouterr().out
    assert "model my_demo" in printed  # --model, not the bundled one
    assert "6 frames:" in printed and "ms per tracked frame" in printed
    assert printed.count("mean IoU") == len(clip["clicks"])
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6


# -- the bundled demo model (runtime/demo_model/, training/package_demo.py)

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "demo_model"
BEDROOM = SHARED_DATA / "bedroom.mp4"


def test_the_bundled_demo_model_says_how_it_was_made_and_how_well_it_tracks():
    from streamsam.manifest import file_sha256, read_manifest

    manifest = read_manifest(BUNDLED)  # the graphs' contract, checked as the runtime checks it
    assert manifest.config["name"] == "demo_384" and manifest.dims.image_size == 384  # trained at 256, shipped at 384
    for graph in manifest.graphs.values():  # what ships is what was exported and evaluated
        assert file_sha256(BUNDLED / graph.file) == graph.sha256
    size = sum(p.stat().st_size for p in BUNDLED.iterdir())
    assert size < 12e6, f"the bundled model and clip take {size / 1e6:.1f} MB; the issue asks for a few MB"
    recipe = json.loads((BUNDLED / "recipe.json").read_text())
    assert recipe["config"]["name"] == "demo" and isinstance(recipe["seed"], int) and recipe["command"].startswith("python -m training.train")
    assert recipe["packaged"]["checkpoint"] == "model.pt"  # of the run whose record this is
    assert recipe["recipe"]["loss_weights"]["absent_score"] > 1  # the last phase: absent objects
    assert recipe["packaged"]["config"] == manifest.config["name"]
    phases = []  # each run's recipe keeps the recipe of the run it started from (--init)
    while recipe:
        phases.append(recipe)
        recipe = (recipe.get("init") or {}).get("recipe")
    assert phases[-1]["probe"] == "training.probe_decoder" and phases[-1]["features"] == "oracle"  # 1: the decoder on oracle features
    assert any(p.get("memory_match_init") and p.get("oracle_features") for p in phases)  # 2: memory on oracle features
    assert not phases[0]["oracle_features"]  # and last, the real image encoder
    scores = json.loads((BUNDLED / "eval.json").read_text())
    j_and_f = {(row["prompt"], row["memory"]): row["j_and_f"] for row in scores["results"] if row.get("clicks", 0) <= 1}
    for prompt in ("click", "box", "mask"):
        assert j_and_f[(prompt, "on")] > j_and_f[(prompt, "off")]


def test_streamsam_demo_tracks_the_objects_of_the_bundled_clip(tmp_path, capsys):
    import re

    import av

    out = tmp_path / "demo.mp4"
    assert cli_main(["demo", "--max-frames", "24", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    ious = [float(v) for v in re.findall(r"mean IoU (\d\.\d+)", printed)]
    assert len(ious) == 3 and sum(v > DEMO_MIN_IOU for v in ious) >= DEMO_TRACKED_OBJECTS, printed
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 24


@pytest.mark.skipif(not BEDROOM.exists(), reason=f"real media not found at {SHARED_DATA}")
def test_track_on_the_real_bedroom_video_with_the_bundled_model(tmp_path, capsys):
    """Quality is not judged (the demo model never saw a real image): the whole command is."""
    import av

    out, masks = tmp_path / "bedroom.mp4", tmp_path / "masks.jsonl"
    assert cli_main(["track", "--source", str(BEDROOM), "--point", "420,270", "--max-frames", "8", "--threads", "1",
                     "--out", str(out), "--out", str(masks)]) == 0
    assert "the bundled demo model" in capsys.readouterr().out
    lines = [json.loads(line) for line in masks.read_text().splitlines()]
    assert len(lines) == 8
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8 and frames[0].shape == (540, 960, 3)
