"""`streamsam demo`: until the demo model is trained and bundled (issue 5), the command says what is
missing and how to make it, and writes nothing."""

from __future__ import annotations

from streamsam.cli import main as cli_main


def test_demo_says_what_is_missing_when_the_model_is_not_installed(monkeypatch, tmp_path, capsys):
    import streamsam.demo as demo

    monkeypatch.setattr(demo, "DEMO_MODEL", tmp_path)
    assert cli_main(["demo", "--out", str(tmp_path / "x.mp4")]) == 1
    err = capsys.readouterr().err
    assert "clip.json" in err and "training.package_demo" in err
    assert not any(p.suffix == ".mp4" for p in tmp_path.iterdir())


def test_a_packaged_model_and_clip_run_through_the_demo(monkeypatch, tmp_path, capsys):
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
    package = tmp_path / "demo_model"
    package_demo.main(["--checkpoint", str(checkpoint), "--out", str(package)])
    capsys.readouterr()

    monkeypatch.setattr(demo, "DEMO_MODEL", package)
    video, clip, masks = demo.demo_clip()
    assert masks.shape[0] == clip["settings"]["num_frames"] and len(clip["clicks"]) == masks.shape[1] >= 2
    for k, click in enumerate(clip["clicks"]):
        x, y = click["point"]
        assert masks[0, k, int(y), int(x)]  # each click is inside its object
    out = tmp_path / "demo.mp4"
    assert cli_main(["demo", "--max-frames", "6", "--threads", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 frames:" in printed and "ms per tracked frame" in printed
    assert printed.count("mean IoU") == len(clip["clicks"])
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 6
