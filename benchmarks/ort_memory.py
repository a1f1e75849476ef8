"""ONNX Runtime's CPU memory settings: resident memory and time per frame, lean against its defaults.

    python -m benchmarks ort_memory [--config tiny] [--image-size 1024] [--frames 14] [--repeats 2] [--threads 2]

Lean (OnnxRuntimeBackend's default, backend.cpu_memory_options): one arena for the four sessions and
no memory patterns. Defaults: a per-session arena and a memory pattern per input shape, ONNX
Runtime's own. Each side runs in a fresh process (resident memory never shrinks within one),
alternating defaults / lean --repeats times (A/B/A/B), a StreamTracker on generated frames at the
model size with one object clicked on frame 0, so memory attention meets every fill level up to 7
memories. Reports the median ms per frame over the frames at 7 memories (from frame 8) and the
resident memory after each frame. Writes benchmarks/results/ort_memory_<config>_<size>_<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .export_models import RESULTS, cpu_model_name, machine_id
from .side_by_side import BUSY_LOAD, refuse_busy

STEADY_FROM = 8  # frames 0-7 fill the bank (the click's memory, then six recent ones)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def worker(args) -> None:
    """One side in this process: prints {"ms": [...], "rss_mb": [...]} as JSON."""
    from streamsam import OnnxRuntimeBackend, StreamTracker

    from .ours import MovingSquares

    backend = OnnxRuntimeBackend(args.onnx_dir, threads=args.threads, lean_memory=args.worker == "lean")
    tracker = StreamTracker(backend, max_objects=1)
    video = MovingSquares(args.image_size, objects=1)
    ms, rss = [], []
    for t in range(args.frames):
        frame = video.frame(t)
        start = time.perf_counter()
        tracker.track(frame)
        if t == 0:
            tracker.add_points(1, [video.centers[0]])
        ms.append((time.perf_counter() - start) * 1e3)
        rss.append(rss_mb())
    print(json.dumps({"ms": ms, "rss_mb": rss}))


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(prog="python -m benchmarks ort_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--frames", type=int, default=14)
    p.add_argument("--repeats", type=int, default=2, help="defaults / lean pairs, alternating")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--onnx-dir", type=Path, help="graphs exported already (default: export the config from seeded weights)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD}")
    p.add_argument("--worker", choices=("defaults", "lean"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.frames <= STEADY_FROM:
        p.error(f"--frames must exceed {STEADY_FROM}: the frames from {STEADY_FROM} on are at 7 memories")
    load_start = refuse_busy(args.allow_busy)
    runs = {"defaults": [], "lean": []}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx_dir
        if onnx_dir is None:
            from .ours import export_seeded

            onnx_dir = Path(tmp)
            export_seeded(args.config, args.image_size, onnx_dir)
        for _ in range(args.repeats):
            for side in runs:
                out = subprocess.run(
                    [sys.executable, "-m", "benchmarks.ort_memory", "--worker", side, "--onnx-dir", str(onnx_dir),
                     "--image-size", str(args.image_size), "--frames", str(args.frames), "--threads", str(args.threads)],
                    check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
                runs[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    load_end = os.getloadavg()
    rows = {}
    for side, results in runs.items():
        rows[side] = {
            "steady_ms_per_run": [float(np.median(r["ms"][STEADY_FROM:])) for r in results],
            "first_frame_ms_per_run": [r["ms"][0] for r in results],
            "rss_mb_at_end_per_run": [r["rss_mb"][-1] for r in results],
            "rss_mb_per_frame_first_run": results[0]["rss_mb"],
        }
    command = "python -m benchmarks ort_memory" + (" " + " ".join(argv) if argv else "")
    report = {"command": command, "cpu": cpu_model_name(), "cores": os.cpu_count(), "threads": args.threads,
              "config": args.config, "image_size": args.image_size, "frames": args.frames,
              "load_average_start": load_start, "load_average_end": load_end, "sides": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"ort_memory_{args.config}_{args.image_size}_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# ONNX Runtime CPU memory settings: {args.config} at {args.image_size}, {cpu_model_name()}", "",
             f"Command: `{command}`  ",
             f"{os.cpu_count()} cores, {args.threads} thread(s); load average (1 min) {load_start[0]:.2f} at the start, "
             f"{load_end[0]:.2f} at the end (the runs' own threads included). One object, {args.frames} frames per run, "
             f"sides alternating in fresh processes (defaults, lean, ...). Steady: median of frames {STEADY_FROM}+ (7 memories).", "",
             "| settings | steady ms per frame, each run | resident MB after the last frame, each run | first frame ms |",
             "| --- | --- | --- | --- |"]
    names = {"defaults": "ONNX Runtime defaults (arena per session, memory patterns)", "lean": "lean (one arena, no patterns; the default)"}
    for side, row in rows.items():
        lines.append(f"| {names[side]} | {' / '.join(f'{v:.0f}' for v in row['steady_ms_per_run'])} | "
                     f"{' / '.join(f'{v:.0f}' for v in row['rss_mb_at_end_per_run'])} | "
                     f"{' / '.join(f'{v:.0f}' for v in row['first_frame_ms_per_run'])} |")
    lines += ["", "Resident MB after each frame (first run of each side):", ""]
    lines += [f"- {side}: {', '.join(f'{v:.0f}' for v in row['rss_mb_per_frame_first_run'])}" for side, row in rows.items()]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
