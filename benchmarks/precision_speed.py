"""Per-frame CPU speed of each precision against FP32, in one process, round-robin: every variant
tracks the same frame in turn, so a change in machine load touches all of them alike.

    python -m benchmarks precision_speed [--config tiny] [--image-size 512] [--frames 60] [--threads N]

Variants (those this machine can run; the others are listed with why): FP32 on ONNX Runtime (the
reference), the INT8 image encoder dynamic (`streamsam quantize`) and static QDQ (`--mode static`,
calibrated on the demo clip) on ONNX Runtime, FP32 and dynamic INT8 on OpenVINO, BF16 on OpenVINO.
Seeded random weights (speed does not depend on them), moving-square frames at the model size, one
object. Reports the median per-frame milliseconds of the tracked frames (after --warmup) and of the
image encoder alone, and each relative to FP32 ONNX Runtime. Writes
benchmarks/results/precision_speed_<config>_<size>_<machine>.{json,md}: time it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from streamsam.backend import OnnxRuntimeBackend, open_backend
from streamsam.errors import StreamSamError
from streamsam.quantize import quantize_folder
from streamsam.stream_tracker import StreamTracker

from .export_models import RESULTS, cpu_model_name, machine_id
from .ours import MovingSquares, TimedBackend, export_seeded


def open_variants(graphs: Path, threads: int | None) -> tuple[dict, dict]:
    static = quantize_folder(graphs, "static")
    quantize_folder(graphs, "dynamic")  # the manifest's int8 entry, which open_backend opens
    openers = {
        "onnxruntime fp32": lambda: open_backend(graphs, threads=threads),
        "onnxruntime int8 dynamic": lambda: open_backend(graphs, "int8", threads=threads),
        "onnxruntime int8 static": lambda: OnnxRuntimeBackend(graphs, threads=threads, files={"image_encoder": static}),
        "openvino fp32": lambda: open_backend(graphs, backend="openvino", threads=threads),
        "openvino int8 dynamic": lambda: open_backend(graphs, "int8", "openvino", threads=threads),
        "openvino bf16": lambda: open_backend(graphs, "bf16", threads=threads),
    }
    backends, skipped = {}, {}
    for name, opener in openers.items():
        try:
            backends[name] = TimedBackend(opener())
        except StreamSamError as exc:
            skipped[name] = str(exc).split(". ")[0]
    return backends, skipped


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks precision_speed")
    p.add_argument("--config", default="tiny")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    load_at_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        graphs = Path(tmp)
        export_seeded(args.config, args.image_size, graphs)
        backends, skipped = open_variants(graphs, args.threads)
        trackers = {name: StreamTracker(b, max_objects=1) for name, b in backends.items()}
        video = MovingSquares(args.image_size, objects=1)
        size = args.image_size
        frame_ms = {name: [] for name in trackers}
        encoder_ms = {name: [] for name in trackers}
        for t in range(args.frames):
            frame = video.frame(t)
            for name, tracker in trackers.items():  # round-robin: each variant on the same frame in turn
                backends[name].take()
                start = time.perf_counter()
                tracker.track(frame)
                if t == 0:
                    tracker.add_points(1, [(size // 2, size // 2)])
                elapsed = (time.perf_counter() - start) * 1e3
                calls = backends[name].take()
                if t >= args.warmup:
                    frame_ms[name].append(elapsed)
                    encoder_ms[name].append(1e3 * sum(s for g, s in calls if g == "image_encoder"))
        for tracker in trackers.values():
            tracker.close()
    rows = {name: {"frame_ms": float(np.median(frame_ms[name])), "image_encoder_ms": float(np.median(encoder_ms[name]))} for name in trackers}
    base = rows.get("onnxruntime fp32")
    for row in rows.values():
        row["frame_vs_fp32"] = row["frame_ms"] / base["frame_ms"]
        row["image_encoder_vs_fp32"] = row["image_encoder_ms"] / base["image_encoder_ms"]
    command = "python -m benchmarks precision_speed" + (" " + " ".join(argv) if argv else "")
    result = {"command": command, "cpu": cpu_model_name(), "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(), "config": args.config,
              "image_size": args.image_size, "frames": args.frames, "warmup": args.warmup, "threads": args.threads,
              "variants": rows, "skipped": skipped}
    lines = [f"# Per-frame speed of each precision: {args.config} at {args.image_size}, {cpu_model_name()}", "",
             f"Command: `{command}`. Medians over {args.frames - args.warmup} tracked frames, one object, round-robin in one process; "
             f"load average (1 min) at the start {load_at_start[0]:.2f}, at the end {os.getloadavg()[0]:.2f}. "
             "'vs FP32' is time against FP32 ONNX Runtime's (below 1: faster).", "",
             "| variant | frame ms | vs FP32 | image encoder ms | vs FP32 |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {n} | {r['frame_ms']:.1f} | {r['frame_vs_fp32']:.2f} | {r['image_encoder_ms']:.1f} | {r['image_encoder_vs_fp32']:.2f} |" for n, r in rows.items()]
    lines += [f"| {n} | skipped: {why.replace('|', '/')} | | | |" for n, why in skipped.items()]
    stem = args.out / f"precision_speed_{args.config}_{args.image_size}_{machine_id()}"
    args.out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
