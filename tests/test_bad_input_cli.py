"""User errors on the command line: one `error:` line, exit code 1 (ours) or 2 (argparse), no
traceback, and no output file left by a run that produced nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import moving_square_video
from streamsam.cli import main

FRAMES = list(moving_square_video(3))


def run(argv: list[str], capsys) -> tuple[int, str]:
    """The exit code and stderr of `streamsam ARGV`; argparse's own errors exit through SystemExit."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def folder(tmp_path):
    """A folder of frames: the first two readable, the third a corrupt file."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(FRAMES[:2]):
        Image.fromarray(frame).save(frames / f"{index:05d}.png")
    (frames / "00002.png").write_bytes(b"not a png")
    return frames


@pytest.mark.parametrize("option", ["--max-frames", "--threads"])
def test_a_zero_count_is_refused_rather_than_read_as_no_limit(tmp_path, capsys, option):
    code, err = run(["track", "--source", tmp_path, "--point", "1,1", option, "0"], capsys)
    assert code == 2 and "received '0'; expected a whole number >= 1" in error_line(err)


def test_an_output_under_a_file_is_refused_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = run(["track", "--source", tmp_path, "--point", "1,1", "--out", tmp_path / "afile" / "masks.jsonl"], capsys)
    assert code == 1 and "which is a file; expected a file path under a folder" in error_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_run_that_fails_on_its_first_frame_leaves_no_file(reduced_graphs, folder, tmp_path, capsys):
    (folder / "00000.png").write_bytes(b"broken")
    out = tmp_path / "out" / "masks.jsonl"
    code, err = run(["track", "--source", folder, "--point", "40,50", "--out", out, "--onnx-dir", reduced_graphs, "--threads", 1], capsys)
    assert code == 1 and "00000.png" in error_line(err)
    assert not out.exists() and not out.parent.exists()


def test_a_run_that_produced_frames_keeps_them_and_names_the_bad_file(reduced_graphs, folder, tmp_path, capsys):
    out = tmp_path / "masks.jsonl"
    code, err = run(["track", "--source", folder, "--point", "40,50", "--out", out, "--onnx-dir", reduced_graphs, "--threads", 1], capsys)
    assert code == 1 and "00002.png" in error_line(err) and "received" in error_line(err)
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 1]


def test_segment_on_a_non_image_names_it(reduced_graphs, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, err = run(["segment", text, "--point", "10,10", "--out", tmp_path / "m.png", "--onnx-dir", reduced_graphs], capsys)
    assert code == 1 and "notes.txt" in error_line(err)
    assert not (tmp_path / "m.png").exists()


@pytest.mark.parametrize("out, message", [("afile/m.png", "which is a file"), ("m.xyz", "received suffix '.xyz'")])
def test_segment_refuses_an_output_it_cannot_write(reduced_graphs, tmp_path, capsys, out, message):
    image = tmp_path / "image.png"
    Image.fromarray(FRAMES[0]).save(image)
    (tmp_path / "afile").write_text("x")
    code, err = run(["segment", image, "--point", "10,10", "--out", tmp_path / out, "--onnx-dir", reduced_graphs], capsys)
    assert code == 1 and message in error_line(err)
    assert not (tmp_path / out).exists()


def test_segment_into_a_missing_folder_creates_it(reduced_graphs, tmp_path, capsys):
    image = tmp_path / "image.png"
    Image.fromarray(FRAMES[0]).save(image)
    out = tmp_path / "new" / "dir" / "m.png"
    code, _ = run(["segment", image, "--point", "40,50", "--out", out, "--onnx-dir", reduced_graphs], capsys)
    assert code == 0 and np.asarray(Image.open(out)).shape == FRAMES[0].shape[:2]
