"""Sources named by one string, the writers, and `streamsam track` / `segment` end to end,
including the failures a user meets: a source that does not open, a file that ends early, a camera
that disconnects mid-stream, a prompt outside the frame."""

from __future__ import annotations

import importlib.util
import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from conftest import moving_square_video
from streamsam.cli import main as cli_main
from streamsam.errors import StreamSamError
from streamsam.progress import Progress
from streamsam.sources import FrameSource, SourceDisconnected, parse_source


def write_video(path, frames, fps=10, codec="libx264"):
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    write_video(path, list(moving_square_video(12)))
    return path


@pytest.mark.parametrize(
    "uri, kind, live",
    [("0", "camera", True), ("/dev/video1", "v4l2", True), ("csi://0", "csi", True), ("rtsp://cam/stream", "rtsp", True),
     ("videotestsrc ! videoconvert ! appsink", "gstreamer", True)],
)
def test_source_strings(uri, kind, live):
    spec = parse_source(uri)
    assert (spec.kind, spec.live) == (kind, live)


def test_files_and_folders_give_every_frame(clip, tmp_path):
    with FrameSource(str(clip)) as source:
        frames = [f for _, f in source]
    assert len(frames) == 12 and frames[0].shape == (180, 240, 3) and not source.ended_early
    for i, frame in enumerate(frames[:3]):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.png")
    with FrameSource(str(tmp_path)) as source:
        assert [i for i, _ in source] == [0, 1, 2]


def test_a_source_that_does_not_open_says_what_is_accepted(tmp_path):
    with pytest.raises(StreamSamError, match="not an existing file or folder; expected a video file"):
        parse_source(str(tmp_path / "missing.mp4"))
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    with pytest.raises(StreamSamError, match="FFmpeg cannot open"):
        FrameSource(str(fake)).open()


def test_a_file_that_ends_early_is_reported(tmp_path):
    full = tmp_path / "full.avi"
    write_video(full, list(moving_square_video(30)), codec="mpeg4")
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with FrameSource(str(cut)) as source:
        count = sum(1 for _ in source)
    assert source.expected_frames == 30 and count < 30 and source.ended_early


def test_live_source_drops_stale_frames_then_reports_the_disconnect(clip):
    import time

    source = FrameSource(str(clip), live=True, reconnect_seconds=0.3)
    seen = []
    with source:
        with pytest.raises(SourceDisconnected, match="after frame 12"):
            for index, _ in source:
                seen.append(index)
                time.sleep(0.25)  # slower than the clip's 10 FPS
    assert source.dropped > 0 and len(seen) + source.dropped == 12
    assert seen == sorted(seen)


def test_track_command_writes_overlay_rle_and_png(reduced_graphs, clip, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_main(["track", "--source", str(clip), "--point", "40,50", "--box", "100,100,200,170", "--onnx-dir", str(reduced_graphs),
                     "--out", str(out / "overlay.mp4"), "--out", str(out / "masks.jsonl"), "--out", str(out / "png"), "--resize", "fast"])
    assert code == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "file source" in printed and "2 object(s)" in printed and "12 frames" in printed
    # stderr is not a terminal here: whole progress lines, no carriage returns piling up in a log
    assert "\r" not in captured.err and captured.err.splitlines()[-1].startswith("12/12 frames (100 %)")
    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 12
    lines = [json.loads(line) for line in (out / "masks.jsonl").read_text().splitlines()]
    assert len(lines) == 12 and [o["id"] for o in lines[-1]["objects"]] == [1, 2]
    assert lines[0]["objects"][0]["rle"]["size"] == [180, 240]
    assert len(list((out / "png").glob("*.png"))) == 24


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_rewrites_one_line_on_a_terminal_and_writes_tenths_to_a_log():
    log = io.StringIO()
    progress = Progress(200, live=False, stream=log)
    for done in range(1, 201):
        progress.update(done, 0)
    progress.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 10  # a line at each tenth (the test takes far under 10 s)
    assert lines[0].startswith("20/200 frames (10 %)") and lines[-1].startswith("200/200 frames (100 %)")

    terminal = _Terminal()
    progress = Progress(None, live=True, stream=terminal)
    for done in range(1, 4):
        progress.update(done, dropped=done - 1)
    progress.close()
    written = terminal.getvalue()
    assert written.count("\r") == 3 and written.endswith("\n")  # one line, rewritten, ended by close()
    assert written.rsplit("\r", 1)[-1].startswith("3 frames,") and written.endswith("2 stale frames dropped\n")


def test_track_command_when_the_camera_disconnects(reduced_graphs, clip, tmp_path, capsys):
    code = cli_main(["track", "--source", str(clip), "--live", "--point", "40,50", "--onnx-dir", str(reduced_graphs),
                     "--out", str(tmp_path / "o.mp4"), "--resize", "fast"])
    printed = capsys.readouterr().out
    assert code == 1 and "stopped:" in printed and "session's state is kept" in printed
    with av.open(str(tmp_path / "o.mp4")) as container:  # what was tracked is written and playable
        assert sum(1 for _ in container.decode(video=0)) >= 1


def test_track_command_refuses_prompts_outside_the_frame(reduced_graphs, clip, capsys):
    code = cli_main(["track", "--source", str(clip), "--point", "5000,10", "--onnx-dir", str(reduced_graphs)])
    assert code == 1
    assert "outside the 240x180 frame" in capsys.readouterr().err


def test_segment_command(reduced_graphs, tmp_path, capsys):
    image = tmp_path / "img.png"
    Image.fromarray(next(moving_square_video(1))).save(image)
    code = cli_main(["segment", str(image), "--point", "40,50", "--onnx-dir", str(reduced_graphs), "--out", str(tmp_path / "m.png"),
                     "--overlay", str(tmp_path / "overlay.png")])
    assert code == 0 and "written to" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "m.png")).shape == (180, 240)


def test_track_without_a_model_flag_uses_the_bundled_demo_model_or_says_what_to_pass(monkeypatch, reduced_graphs, clip, tmp_path, capsys):
    import streamsam.demo as demo

    monkeypatch.setattr(demo, "DEMO_MODEL", tmp_path / "not_installed")
    assert cli_main(["track", "--source", str(clip), "--point", "40,50", "--max-frames", "2"]) == 1
    assert "--checkpoint, --onnx-dir or --engine-dir" in capsys.readouterr().err
    monkeypatch.setattr(demo, "DEMO_MODEL", reduced_graphs)  # any exported folder stands in for the bundled one
    assert cli_main(["track", "--source", str(clip), "--point", "40,50", "--max-frames", "2", "--resize", "fast"]) == 0
    printed = capsys.readouterr().out
    assert "the bundled demo model" in printed and "2 frames" in printed


def test_track_on_engines_says_where_tensorrt_comes_from_when_it_is_missing(reduced_graphs, clip, tmp_path, capsys):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed: this checks the error of a machine without it")
    code = cli_main(["track", "--source", str(clip), "--point", "40,50", "--engine-dir", str(tmp_path), "--onnx-dir", str(reduced_graphs)])
    assert code == 1
    err = capsys.readouterr().err
    assert "tensorrt | received ImportError" in err and "pip install tensorrt" in err
