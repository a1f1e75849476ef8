"""Reduced precision as an explicit choice (runtime/precision.py): the OpenVINO backend reproduces
ONNX Runtime FP32, the INT8 image encoder tracks the demo clip within a measured bar, and every
choice this machine or folder cannot honour is an error that says what to do, never a silent FP32."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from streamsam.backend import open_backend
from streamsam.cli import main as cli_main
from streamsam.demo import DEMO_MODEL, demo_clip
from streamsam.errors import InputError, MissingDependencyError
from streamsam.manifest import file_sha256, read_manifest
from streamsam.precision import cpu_flags
from streamsam.stream_tracker import StreamTracker

from conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks.precision_accuracy import compare, read_frames, track_masks  # noqa: E402

pytest.importorskip("openvino")
from streamsam.openvino_backend import OpenVinoBackend, cpu_capabilities  # noqa: E402

HAS_BF16 = "BF16" in cpu_capabilities()
# INT8 image encoder (ONNX Runtime) against FP32 on the demo clip's first 24 frames: lowest per-frame
# mask IoU over the 3 objects measured 0.9826 (benchmarks/results/precision_accuracy.md has 72 frames).
INT8_DEMO_MIN_IOU = 0.97
INT8_DEMO_FRAMES = 24


def test_openvino_fp32_reproduces_onnxruntime_masks_on_the_reduced_golden_video(reduced_graphs):
    frames = list(np.load(REPO / "tests" / "golden" / "video" / "frames.npz")["frames"][:8])
    clicks = [(128, 128), (64, 192)]
    reference = track_masks(open_backend(reduced_graphs, threads=1), frames, clicks)
    openvino = track_masks(OpenVinoBackend(reduced_graphs, threads=1), frames, clicks)
    for row in compare(reference, openvino):
        assert row["min_iou"] >= 0.999 and row["score_sign_agreement"] == 1.0, row
    assert np.abs(reference[1] - openvino[1]).max() < 1e-3  # object scores: FP32 kernels, different order


def test_openvino_writes_into_the_callers_arrays():
    backend = OpenVinoBackend(DEMO_MODEL, threads=1)
    contract = backend.manifest.contracts["image_encoder"]
    # two frames: the multi-stream batch (the symbolic frames axis) goes through OpenVINO too
    image = np.random.default_rng(0).standard_normal(contract.inputs[0].concrete_shape(frames=2)).astype(np.float32)
    outputs = {s.name: np.full(s.concrete_shape(frames=2), np.nan, np.float32) for s in contract.outputs}
    before = {n: a.ctypes.data for n, a in outputs.items()}
    backend.run("image_encoder", {"image": image}, outputs)
    assert {n: a.ctypes.data for n, a in outputs.items()} == before
    assert all(np.isfinite(a).all() for a in outputs.values())
    backend.close()


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory):
    """The demo model's graphs (linked) with its INT8 encoder, written by `streamsam quantize`; the
    bundled model does not carry it (it would take the bundle past its size budget, tests/test_demo.py)."""
    folder = tmp_path_factory.mktemp("demo_int8")
    for path in DEMO_MODEL.glob("*.onnx"):
        (folder / path.name).symlink_to(path)
    shutil.copy(DEMO_MODEL / "manifest.json", folder / "manifest.json")
    with pytest.raises(InputError, match=f"streamsam quantize --onnx-dir {folder}"):
        open_backend(folder, "int8")
    assert cli_main(["quantize", "--onnx-dir", str(folder)]) == 0
    return folder


def test_int8_image_encoder_tracks_the_demo_clip_within_the_measured_bar(demo_int8):
    video, clip, _ = demo_clip()
    frames = read_frames(video, INT8_DEMO_FRAMES)
    clicks = [tuple(c["point"]) for c in clip["clicks"]]
    reference = track_masks(open_backend(demo_int8, threads=1), frames, clicks)
    int8 = track_masks(open_backend(demo_int8, "int8", threads=1), frames, clicks)
    rows = compare(reference, int8)
    assert min(r["min_iou"] for r in rows) >= INT8_DEMO_MIN_IOU, rows
    assert all(r["score_sign_agreement"] == 1.0 for r in rows), rows
    assert max(r["min_iou"] for r in rows) < 1.0  # the INT8 graph really ran: masks differ somewhere


def test_quantize_writes_the_int8_encoder_once_and_records_it(demo_int8):
    entry = read_manifest(demo_int8).int8_graphs["image_encoder"]
    assert entry.file == "image_encoder.int8.onnx" and file_sha256(demo_int8 / entry.file) == entry.sha256
    # measured 0.0436 on the demo model (0.22 with the full 8-bit weight range: REDUCE_RANGE)
    assert 0 < entry.max_abs_error["image_embed"] < 0.1
    assert read_manifest(DEMO_MODEL).int8_graphs == {}  # a manifest without the field reads as before


@pytest.mark.parametrize("precision, backend, message", [
    ("fp16", None, "precision | received 'fp16'; expected one of fp32, int8, bf16"),
    ("fp32", "tensorrt", "backend | received 'tensorrt'; expected one of onnxruntime, openvino"),
    ("bf16", "onnxruntime", "expected backend 'openvino'"),
])
def test_unknown_or_impossible_choices_are_input_errors(precision, backend, message):
    with pytest.raises(InputError, match=message.replace("|", r"\|")):
        open_backend(DEMO_MODEL, precision, backend)


@pytest.mark.skipif(HAS_BF16, reason="this CPU runs BF16")
def test_bf16_on_a_cpu_without_it_names_what_it_has_and_what_to_choose(capsys):
    with pytest.raises(InputError) as raised:
        StreamTracker(DEMO_MODEL, precision="bf16")
    text = str(raised.value)
    assert "received 'bf16'" in text and "avx512_bf16 or amx_bf16" in text and "fp32" in text
    assert ("avx2" in text) == ("avx2" in cpu_flags()) and "OpenVINO reports" in text
    assert cli_main(["demo", "--precision", "bf16", "--max-frames", "1"]) == 1
    assert "received 'bf16'" in capsys.readouterr().err


def test_openvino_not_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if absent: its import raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'streamsam\[openvino\]'"):
        open_backend(DEMO_MODEL, backend="openvino")


def test_a_precision_with_a_backend_passed_in_is_refused():
    with open_backend(DEMO_MODEL, threads=1) as backend:
        with pytest.raises(InputError, match="with a Backend passed in"):
            StreamTracker(backend, precision="int8")


def test_quantize_on_a_folder_without_graphs_says_what_it_expected(tmp_path, capsys):
    assert cli_main(["quantize", "--onnx-dir", str(tmp_path)]) == 1
    assert "expected a folder written by `streamsam export`" in capsys.readouterr().err


def test_track_command_runs_int8_on_openvino(demo_int8, tmp_path, capsys):
    video, clip, _ = demo_clip()
    masks = tmp_path / "masks.jsonl"
    x, y = clip["clicks"][0]["point"]
    assert cli_main(["track", "--source", str(video), "--point", f"{x},{y}", "--onnx-dir", str(demo_int8), "--precision", "int8",
                     "--backend", "openvino", "--threads", "1", "--max-frames", "3", "--out", str(masks)]) == 0
    assert len(masks.read_text().splitlines()) == 3
