"""Many camera streams on one machine: one MultiStreamTracker process against one process per stream.

    python -m benchmarks multi_stream [--streams 1 2 4 8] [--frames 30] [--config sam2.1_hiera_tiny --image-size 512]

Exports the config from seeded random weights once (or takes --onnx-dir). Each stream is a
generated video of its own (benchmarks.ours.MovingSquares, its own seed) with --objects objects
clicked on frame 0. For each stream count N:

- batched: one process, one MultiStreamTracker over the N streams, ONNX Runtime with as many threads
  as the machine has cores;
- separate: N processes, one StreamTracker each, ONNX Runtime with cores // N threads each (at
  least 1), so the threads add up to the cores (beyond N = cores, one thread each: N threads).

Every process loads its model and runs --warmup frames (the prompted frame among them) before a
common start (a file barrier), then times --frames frames. Throughput is all streams' timed frames
over the wall time from the first start to the last end. Masks: each stream's low-res masks of the
timed frames, batched against separate, as per-frame IoU. Writes
benchmarks/results/multi_stream_<machine>.{json,md}, or into --out. Refuses to run when the 1-minute
load average is above side_by_side's threshold, unless --allow-busy (the report flags it).
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
from .side_by_side import BUSY_LOAD

BARRIER_POLL_S = 0.01
BARRIER_TIMEOUT_S = 600


def thread_split(cores: int, streams: int) -> int:
    """ONNX Runtime threads of each of `streams` processes, so that they add up to the cores."""
    return max(1, cores // streams)


def worker(args) -> None:
    """One measured process: `batched` runs all --stream-seeds in one MultiStreamTracker, `single`
    runs the one stream in a StreamTracker. Writes timings and masks to --result."""
    from streamsam import MultiStreamTracker, OnnxRuntimeBackend, StreamTracker

    from .ours import MovingSquares

    backend = OnnxRuntimeBackend(args.onnx_dir, threads=args.threads)
    videos = {seed: MovingSquares(args.image_size, args.objects, seed=seed) for seed in args.stream_seeds}
    if args.worker == "batched":
        tracker = MultiStreamTracker(backend, max_streams=len(videos), max_objects=args.objects)
        for seed in videos:
            tracker.add_stream(seed)

        def step(t: int) -> dict:
            return tracker.track({seed: video.frame(t) for seed, video in videos.items()})

        def click(seed: int, k: int, center) -> None:
            tracker.add_points(seed, k + 1, [center])
    else:
        (seed,) = videos
        tracker = StreamTracker(backend, max_objects=args.objects)

        def step(t: int) -> dict:
            return {seed: tracker.track(videos[seed].frame(t))}

        def click(seed: int, k: int, center) -> None:
            tracker.add_points(k + 1, [center])

    for t in range(args.warmup):
        step(t)
        if t == 0:
            for seed, video in videos.items():
                for k, center in enumerate(video.centers):
                    click(seed, k, center)
    Path(args.result + ".ready").touch()
    go = Path(args.go)
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark worker | received no start signal ({go}) in {BARRIER_TIMEOUT_S} s")
        time.sleep(BARRIER_POLL_S)
    masks = {seed: [] for seed in videos}
    start = time.time()
    for t in range(args.warmup, args.warmup + args.frames):
        for seed, result in step(t).items():
            masks[seed].append(result.low_res_logits > 0)
    end = time.time()
    np.savez_compressed(args.result + ".npz", **{str(seed): np.stack(m) for seed, m in masks.items()})
    Path(args.result + ".json").write_text(json.dumps({"start": start, "end": end, "threads": args.threads}))


def run_processes(jobs: list[dict], onnx_dir: Path, settings: argparse.Namespace, work: Path) -> dict:
    """Start every job's process, wait for all to be warm, start them together; returns throughput
    and each stream's masks."""
    go = work / f"go-{time.monotonic_ns()}"
    procs, results = [], []
    for index, job in enumerate(jobs):
        result = str(work / f"job-{go.name}-{index}")
        cmd = [sys.executable, "-m", "benchmarks.multi_stream", "--worker", job["mode"], "--onnx-dir", str(onnx_dir),
               "--threads", str(job["threads"]), "--stream-seeds", *map(str, job["seeds"]), "--result", result, "--go", str(go),
               "--image-size", str(settings.image_size), "--objects", str(settings.objects), "--frames", str(settings.frames),
               "--warmup", str(settings.warmup)]  # fmt: skip
        procs.append(subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1]))
        results.append(result)
    deadline = time.monotonic() + BARRIER_TIMEOUT_S
    while not all(Path(r + ".ready").exists() for r in results):
        failed = [p.args for p in procs if p.poll() not in (None, 0)]
        if failed or time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise RuntimeError(f"multi_stream | a worker failed or never got ready: {failed or 'timeout'}")
        time.sleep(BARRIER_POLL_S)
    go.touch()
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"multi_stream | worker {p.args} exited with {p.returncode}")
    times = [json.loads(Path(r + ".json").read_text()) for r in results]
    masks = {}
    for r in results:
        with np.load(r + ".npz") as data:
            masks.update({int(k): data[k] for k in data.files})
    streams = sum(len(j["seeds"]) for j in jobs)
    wall = max(t["end"] for t in times) - min(t["start"] for t in times)
    return {"frames_per_s": streams * settings.frames / wall, "wall_s": wall, "processes": len(jobs),
            "threads": [j["threads"] for j in jobs], "masks": masks}  # fmt: skip


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per frame and object IoU of boolean masks [frames, objects, h, w] (1 where both are empty)."""
    inter = np.logical_and(a, b).sum((-1, -2))
    union = np.logical_or(a, b).sum((-1, -2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def export_graphs(config: str, image_size: int, out: Path) -> Path:
    from .ours import export_seeded

    export_seeded(config, image_size, out)
    return out


def markdown(meta: dict, rows: list[dict]) -> str:
    lines = [
        f"# Multi-stream throughput ({meta['config']} at {meta['image_size']}, {meta['objects']} objects per stream, ONNX Runtime CPU)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']} ({meta['cpu']}), {meta['cores']} cores; load average (1 min) {meta['load_average_start'][0]:.2f} "
        f"at the start, {meta['load_average_end'][0]:.2f} at the end" + (" (BUSY: above the threshold, figures are a share of the machine)" if meta["busy"] else "") + ".",
        f"Timed frames per stream: {meta['frames']} after {meta['warmup']} warm-up frames (the click on frame 0 among them).",
        "Batched: one process, one MultiStreamTracker, all cores' threads. Separate: one process per stream, "
        "cores // streams threads each (at least 1).",
        "",
        "| streams | batched frames/s | separate frames/s | batched / separate | separate threads per process | min IoU batched vs separate | mean IoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['streams']} | {r['batched']['frames_per_s']:.2f} | {r['separate']['frames_per_s']:.2f} | "
                     f"{r['batched']['frames_per_s'] / r['separate']['frames_per_s']:.2f}x | {r['separate']['threads'][0]} | "
                     f"{r['min_iou']:.4f} | {r['mean_iou']:.4f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks multi_stream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--frames", type=int, default=30, help="timed frames per stream")
    p.add_argument("--warmup", type=int, default=3, help="frames before timing (>= 1: frame 0 is clicked)")
    p.add_argument("--objects", type=int, default=2, help="objects per stream")
    p.add_argument("--config", default="sam2.1_hiera_tiny")
    p.add_argument("--image-size", type=int, default=512)
    p.add_argument("--onnx-dir", type=Path, help="graphs exported already (default: export the config from seeded weights)")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="threads in all (default: the machine's cores)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD} (flagged in the report)")
    # one measured process (started by the benchmark itself)
    p.add_argument("--worker", choices=("batched", "single"), help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stream-seeds", type=int, nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--go", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.warmup < 1 or args.frames < 1 or min(args.streams) < 1 or args.cores < 1:
        p.error("--warmup, --frames, --streams and --cores | received a value below 1; expected >= 1 each")
    start_load = os.getloadavg()
    if start_load[0] > BUSY_LOAD and not args.allow_busy:
        p.error(f"load average | received {start_load[0]:.2f} (1 min); expected below {BUSY_LOAD}, an otherwise idle machine. "
                "Stop what else runs and wait a minute, or pass --allow-busy (the report flags it)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="multi_stream-") as tmp:
        work = Path(tmp)
        onnx_dir = args.onnx_dir or export_graphs(args.config, args.image_size, work / "graphs")
        for n in args.streams:
            seeds = list(range(n))
            batched = run_processes([{"mode": "batched", "threads": args.cores, "seeds": seeds}], onnx_dir, args, work)
            separate = run_processes([{"mode": "single", "threads": thread_split(args.cores, n), "seeds": [s]} for s in seeds], onnx_dir, args, work)
            ious = np.concatenate([mask_iou(batched["masks"][s], separate["masks"][s]).ravel() for s in seeds])
            row = {"streams": n, "min_iou": float(ious.min()), "mean_iou": float(ious.mean())}
            for name, measured in (("batched", batched), ("separate", separate)):
                row[name] = {k: v for k, v in measured.items() if k != "masks"}
            rows.append(row)
            print(f"{n} streams: batched {batched['frames_per_s']:.2f} frames/s, separate {separate['frames_per_s']:.2f} frames/s, "
                  f"min IoU {row['min_iou']:.4f}", flush=True)  # fmt: skip
    end_load = os.getloadavg()
    command = ("python -m benchmarks multi_stream --streams " + " ".join(map(str, args.streams)) + f" --frames {args.frames} --warmup {args.warmup}"
               f" --objects {args.objects} --config {args.config} --image-size {args.image_size} --cores {args.cores}"
               + (" --allow-busy" if args.allow_busy else ""))  # fmt: skip
    meta = {"command": command, "machine": machine_id(), "cpu": cpu_model_name(), "cores": args.cores, "config": args.config,
            "image_size": args.image_size, "objects": args.objects, "frames": args.frames, "warmup": args.warmup,
            "load_average_start": start_load, "load_average_end": end_load, "busy": start_load[0] > BUSY_LOAD}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"multi_stream_cpu-{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    report = markdown(meta, rows)
    stem.with_suffix(".md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
