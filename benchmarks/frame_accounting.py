"""Where a tracked frame's milliseconds go, and what a click costs a live stream.

    python -m benchmarks frame_accounting [--config tiny] [--image-size 1024] [--threads 2]

One StreamTracker on generated frames at the model size (the graphs exported from seeded weights, in
a subprocess, so the exporter's torch is not in this process's resident memory). Object 1 is clicked
on frame 0; after its bank is full (7 memories, frame 7 on), object 2 is clicked on frame
--add-at, and the stream runs on until object 2's bank is full too. Reports:
- session open: the backend's four ONNX Runtime sessions, then StreamTracker (its preallocated bank);
- per frame: wall ms of track() (masks read), each graph call's ms, and the rest (resize, normalise,
  the bank's slot gather and writes, hole filling, upsampling, result objects): the time outside the
  graph calls, as a share of the frame;
- the click's own ms (mask decoder and memory encoder on the clicked frame), and the frames after a
  click against the steady state at the same object count (the first frame after a click is the
  first memory-attention call at a new object count, or the session's first);
- resident memory after each frame (one and two objects).
Writes benchmarks/results/frame_accounting_<config>_<size>_<machine>.{json,md}.
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
from .ours import export_seeded_apart, FULL_FILL, MovingSquares, TimedBackend, rss_mb
from .side_by_side import BUSY_LOAD, refuse_busy


def steady(records: list[dict], objects: int, first: int) -> list[dict]:
    """Frames from `first` on that track `objects` objects and are not a click's frame."""
    return [r for r in records if r["objects"] == objects and r["index"] >= first and r["click_ms"] == 0]


def run_stream(onnx_dir: Path, size: int, threads: int, add_at: int, frames: int) -> dict:
    from streamsam import OnnxRuntimeBackend, StreamTracker

    start = time.perf_counter()
    backend = OnnxRuntimeBackend(onnx_dir, threads=threads)
    sessions_ms = (time.perf_counter() - start) * 1e3
    start = time.perf_counter()
    timed = TimedBackend(backend)
    tracker = StreamTracker(timed, max_objects=2)
    tracker_ms = (time.perf_counter() - start) * 1e3
    scene = MovingSquares(size, objects=2)
    clicks = {0: 1, add_at: 2}
    records = []
    for index in range(frames):
        frame = scene.frame(index)
        start = time.perf_counter()
        tracker.track(frame).masks
        tracked = time.perf_counter()
        graphs: dict[str, float] = {}
        for graph, seconds in timed.take():
            graphs[graph] = graphs.get(graph, 0.0) + seconds * 1e3
        click_ms = 0.0
        if index in clicks:  # a click on this frame, timed apart from its tracking
            obj_id = clicks[index]
            tracker.add_points(obj_id, [scene.center(index, obj_id - 1)]).masks
            click_ms = (time.perf_counter() - tracked) * 1e3
            timed.take()
        ms = (tracked - start) * 1e3
        records.append({"index": index, "objects": tracker.num_objects - (1 if index in clicks else 0),
                        "ms": ms, "graphs_ms": graphs, "outside_ms": ms - sum(graphs.values()),
                        "click_ms": click_ms, "rss_mb": rss_mb()})
    return {"open_ms": {"sessions": sessions_ms, "tracker": tracker_ms}, "frames": records}


def summarize(run: dict, add_at: int) -> dict:
    frames = run["frames"]
    one = steady(frames, 1, FULL_FILL)  # object 1 at 7 memories from frame 7
    two = steady(frames, 2, add_at + FULL_FILL)
    median = lambda rows, key: float(np.median([r[key] for r in rows]))  # noqa: E731
    steady_one, steady_two = median(one, "ms"), median(two, "ms")
    return {
        "open_ms": run["open_ms"],
        "first_frame_ms": frames[0]["ms"],
        "click_ms": {"object 1 (frame 0)": frames[0]["click_ms"], f"object 2 (frame {add_at})": frames[add_at]["click_ms"]},
        "after_click": {
            "frame 1 / steady with 1 object": frames[1]["ms"] / steady_one,
            f"frame {add_at + 1} / steady with 2 objects": frames[add_at + 1]["ms"] / steady_two,
        },
        "steady": {
            str(count): {"frames": [r["index"] for r in rows], "ms": median(rows, "ms"),
                         "graphs_ms": {g: float(np.median([r["graphs_ms"][g] for r in rows])) for g in rows[0]["graphs_ms"]},
                         "outside_ms": median(rows, "outside_ms"),
                         "outside_share": float(np.median([r["outside_ms"] / r["ms"] for r in rows])),
                         "rss_mb_last": rows[-1]["rss_mb"]}
            for count, rows in ((1, one), (2, two))
        },
    }


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(prog="python -m benchmarks frame_accounting", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--add-at", type=int, default=FULL_FILL + 5, help="the frame object 2 is clicked on")
    p.add_argument("--onnx-dir", type=Path, help="graphs exported already (default: export the config from seeded weights)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD}")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    frames = args.add_at + FULL_FILL + 4  # then 4 frames with both banks full
    if args.add_at < FULL_FILL + 2:
        p.error(f"--add-at must be at least {FULL_FILL + 2}: object 1 needs steady frames at {FULL_FILL} memories first")
    if args.worker:
        print(json.dumps(run_stream(args.onnx_dir, args.image_size, args.threads, args.add_at, frames)))
        return None
    load_start = refuse_busy(args.allow_busy)
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx_dir
        if onnx_dir is None:
            onnx_dir = export_seeded_apart(args.config, args.image_size, Path(tmp))
        out = subprocess.run([sys.executable, "-m", "benchmarks.frame_accounting", "--worker", "--onnx-dir", str(onnx_dir),
                              "--image-size", str(args.image_size), "--threads", str(args.threads), "--add-at", str(args.add_at)],
                             check=True, capture_output=True, text=True, cwd=root)
    run = json.loads(out.stdout.strip().splitlines()[-1])
    load_end = os.getloadavg()
    summary = summarize(run, args.add_at)
    command = "python -m benchmarks frame_accounting" + (" " + " ".join(argv) if argv else "")
    report = {"command": command, "cpu": cpu_model_name(), "cores": os.cpu_count(), "threads": args.threads,
              "config": args.config, "image_size": args.image_size, "add_at": args.add_at,
              "load_average_start": load_start, "load_average_end": load_end, "summary": summary, "frames": run["frames"]}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"frame_accounting_{args.config}_{args.image_size}_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    stem.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    s = report["summary"]
    graphs = list(s["steady"]["1"]["graphs_ms"])
    lines = [f"# Where a frame's time goes: {report['config']} at {report['image_size']}, {report['cpu']}", "",
             f"Command: `{report['command']}`  ",
             f"{report['cores']} cores, {report['threads']} thread(s); load average (1 min) {report['load_average_start'][0]:.2f} "
             f"at the start, {report['load_average_end'][0]:.2f} at the end (the run's own threads included). Object 1 clicked "
             f"on frame 0, object 2 on frame {report['add_at']}; steady = median of the frames with every bank full.", "",
             f"Session open: {s['open_ms']['sessions']:.0f} ms for the four ONNX Runtime sessions, "
             f"{s['open_ms']['tracker']:.1f} ms for StreamTracker (its bank); first frame {s['first_frame_ms']:.0f} ms.", "",
             "| objects | frame ms | " + " | ".join(graphs) + " | outside the graphs ms | outside share | resident MB |",
             "| --- | --- | " + "--- | " * len(graphs) + "--- | --- | --- |"]
    for count, row in s["steady"].items():
        lines.append(f"| {count} | {row['ms']:.1f} | " + " | ".join(f"{row['graphs_ms'][g]:.1f}" for g in graphs)
                     + f" | {row['outside_ms']:.1f} | {row['outside_share']:.2%} | {row['rss_mb_last']:.0f} |")
    lines += ["", "Clicks: " + "; ".join(f"{k} {v:.0f} ms" for k, v in s["click_ms"].items()) + " (the click's own call, "
              "after the frame was tracked).  ",
              "Frames after a click: " + "; ".join(f"{k} = {v:.2f}x" for k, v in s["after_click"].items()) + ".", "",
              "Every frame (ms, outside the graphs ms, resident MB):", ""]
    lines += [f"- {r['index']} ({r['objects']} object(s){', click' if r['click_ms'] else ''}): {r['ms']:.0f}, "
              f"{r['outside_ms']:.1f}, {r['rss_mb']:.0f}" for r in report["frames"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
