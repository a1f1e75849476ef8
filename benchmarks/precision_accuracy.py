"""Accuracy of each reduced precision, measured on masks: per-frame mask IoU against FP32 ONNX Runtime.

    python -m benchmarks precision_accuracy [--frames N] [--no-golden] [--out PATH]

For every precision/backend this machine can run (runtime/precision.py: OpenVINO FP32, INT8 image
encoder (`streamsam quantize`, dynamic) on ONNX Runtime and on OpenVINO, the static QDQ INT8
encoder (`--mode static`, calibrated on the demo clip) on ONNX Runtime, OpenVINO BF16 where the CPU
has it), a StreamTracker runs
the same frames and clicks as the FP32 ONNX Runtime reference, and each frame's masks (at the
source resolution) and object-score signs are compared: min and mean IoU per object.
OpenVINO FP32 against ONNX Runtime FP32 checks the backend itself (~1.0).

Sequences: (a) the bundled demo model on its clip and clicks; (b) the demo model on the real
bedroom video (/work/shared/data, skipped when absent; the click of tests/test_demo.py); (c) the
golden seeded-random configs (tests/golden: reduced, tiny@256) on the golden video frames (needs
torch to export them). Official weights cannot be measured here (no downloads).

Writes benchmarks/results/precision_accuracy.md and .json (accuracy only: no timing).
Shared with tests/test_precision.py: `track_masks`, `compare`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.export_models import cpu_model_name
from streamsam.backend import OnnxRuntimeBackend, open_backend
from streamsam.demo import DEMO_MODEL, iou
from streamsam.errors import StreamSamError
from streamsam.manifest import GraphFile
from streamsam.quantize import quantize_folder
from streamsam.stream_tracker import StreamTracker

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BEDROOM = Path(os.environ.get("STREAMSAM_SHARED_DATA", REPO.parent / "shared" / "data")) / "bedroom.mp4"
BEDROOM_CLICK = (420, 270)  # tests/test_demo.py
# (label, precision, backend) compared against ("fp32", "onnxruntime")
VARIANTS = (("openvino fp32", "fp32", "openvino"), ("onnxruntime int8", "int8", "onnxruntime"),
            ("openvino int8", "int8", "openvino"), ("openvino bf16", "bf16", "openvino"))
# `streamsam quantize --mode static` (QDQ MatMuls and Convs, calibrated on the demo clip) on ONNX Runtime
STATIC = ("onnxruntime int8 static", "int8", "onnxruntime")


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    from streamsam.sources import FrameSource

    frames = []
    with FrameSource(str(path)) as source:
        for index, frame in source:
            if index >= limit:
                break
            frames.append(frame)
    return frames


def track_masks(backend, frames, clicks) -> tuple[np.ndarray, np.ndarray]:
    """Masks [T, K, H, W] and object scores [T, K]: each click a new object on frame 0."""
    tracker = StreamTracker(backend, max_objects=len(clicks))
    masks, scores = [], []
    for index, frame in enumerate(frames):
        result = tracker.track(frame)
        if index == 0:
            for obj_id, point in enumerate(clicks, 1):
                result = tracker.add_points(obj_id, [point])
        masks.append(result.masks.copy())
        scores.append(result.object_scores.copy())
    tracker.close()
    backend.close()  # the tracker does not own a backend passed in
    return np.stack(masks), np.stack(scores)


def compare(reference, candidate) -> list[dict]:
    """Per object: min and mean IoU over frames, and the share of frames with equal score signs."""
    (ref_masks, ref_scores), (masks, scores) = reference, candidate
    rows = []
    for k in range(ref_masks.shape[1]):
        ious = np.array([iou(a, b) for a, b in zip(masks[:, k], ref_masks[:, k])])
        signs = float(np.mean((scores[:, k] > 0) == (ref_scores[:, k] > 0)))
        rows.append({"object": k + 1, "min_iou": float(ious.min()), "mean_iou": float(ious.mean()), "score_sign_agreement": signs})
    return rows


def quantized_copy(graphs: Path) -> tuple[Path, GraphFile]:
    """A copy of `graphs` (the graphs linked) with both INT8 encoders: dynamic, which the manifest
    records (open_backend's "int8"), and static QDQ calibrated on the demo clip (returned)."""
    copy = Path(tempfile.mkdtemp(prefix="precision_int8_"))
    for path in graphs.glob("*.onnx"):
        if ".int8" not in path.name:
            (copy / path.name).symlink_to(path.resolve())
    shutil.copy(graphs / "manifest.json", copy / "manifest.json")
    static = quantize_folder(copy, "static")
    quantize_folder(copy, "dynamic")
    return copy, static


def measure(name: str, graphs: Path, frames, clicks, threads: int | None) -> dict:
    graphs, static = quantized_copy(graphs)
    reference = track_masks(open_backend(graphs, threads=threads), frames, clicks)
    out = {"sequence": name, "frames": len(frames), "objects": len(clicks), "variants": {}}
    for label, precision, backend in VARIANTS + (STATIC,):
        try:
            if (label, precision, backend) == STATIC:
                candidate = OnnxRuntimeBackend(graphs, threads=threads, files={"image_encoder": static})
            else:
                candidate = open_backend(graphs, precision, backend, threads=threads)
        except StreamSamError as exc:  # what this machine cannot run is recorded, with why
            out["variants"][label] = {"skipped": str(exc).split(". ")[0]}
            continue
        out["variants"][label] = {"objects": compare(reference, track_masks(candidate, frames, clicks))}
        print(f"{name} {label}: " + ", ".join(f"min {r['min_iou']:.4f} mean {r['mean_iou']:.4f}" for r in out["variants"][label]["objects"]), flush=True)
    return out


def golden_sequences(frames_limit: int):
    """(name, graphs, frames, clicks) for the golden seeded configs, exported and quantized here."""
    sys.path.insert(0, str(REPO / "tests" / "golden"))
    from video_parity import VIDEO, export_golden_graphs

    media = np.load(VIDEO / "frames.npz")
    frames = list(media["frames"][:frames_limit])
    clicks = [(128, 128), (64, 192)]
    for name in ("reduced", "tiny"):
        out = Path(tempfile.mkdtemp(prefix=f"precision_{name}_"))
        export_golden_graphs(name, out)
        yield f"golden {name}{'@256' if name == 'tiny' else ''} (seeded weights, golden frames)", out, frames, clicks


def markdown(results: list[dict], command: str) -> str:
    lines = ["# Reduced precision: mask accuracy against FP32 ONNX Runtime", "",
             f"Command: `{command}`. Machine: {platform.machine()}, {cpu_model_name()}, "
             f"CPU flags with BF16: {'yes' if 'avx512_bf16' in open('/proc/cpuinfo').read() else 'no'}. "
             "Per-frame mask IoU at the source resolution, min and mean over frames per object; score sign "
             "agreement is the share of frames where the object-score sign (visible or not) equals FP32's. "
             "Official weights are not measured here (no downloads). Seeded random weights give mask "
             "logits near zero, where any rounding flips pixels (the reduced config's FP16 figures show the "
             "same), so their low IoUs measure that fragility as much as the quantization.", "",
             "| sequence | frames | variant | per object: min IoU / mean IoU / sign agreement |", "| --- | --- | --- | --- |"]
    for r in results:
        for label, v in r["variants"].items():
            cell = v.get("skipped") or "; ".join(
                f"{o['object']}: {o['min_iou']:.4f} / {o['mean_iou']:.4f} / {o['score_sign_agreement']:.2f}" for o in v["objects"])
            lines.append(f"| {r['sequence']} | {r['frames']} | {label} | {cell.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks precision_accuracy")
    parser.add_argument("--frames", type=int, default=72, help="frames per sequence (default 72: the whole demo clip)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-golden", action="store_true", help="skip the golden seeded configs (they need torch)")
    parser.add_argument("--out", type=Path, default=RESULTS / "precision_accuracy.md")
    args = parser.parse_args(argv)
    from streamsam.demo import demo_clip

    video, clip, _ = demo_clip()
    results = [measure("demo model, demo clip", DEMO_MODEL, read_frames(video, args.frames), [tuple(c["point"]) for c in clip["clicks"]], args.threads)]
    if BEDROOM.exists():
        results.append(measure("demo model, bedroom.mp4", DEMO_MODEL, read_frames(BEDROOM, args.frames), [BEDROOM_CLICK], args.threads))
    if not args.no_golden:
        results += [measure(*seq, args.threads) for seq in golden_sequences(args.frames)]
    command = "python -m benchmarks precision_accuracy" + (" " + " ".join(argv) if argv else "")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown(results, command))
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=2) + "\n")
    print(f"written {args.out} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    main(sys.argv[1:])
