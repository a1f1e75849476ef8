"""What Ray adds to a step of streamsam.serve, and what starting it costs.

    python -m benchmarks.serve_overhead [--streams 4] [--frames 30] [--width 640 --height 480]

With the demo model and one worker (one ONNX Runtime thread), the same frames go through a
StreamWorker twice: in this process, and as a Ray actor behind StreamCluster. The difference of the
median step times is what Ray adds per step (the frames out, each stream's result and StreamState
back, the scheduling); a no-op actor call gives the floor. Also: ray.init of a local cluster, and a
worker's start until ready. Writes benchmarks/results/serve_overhead_<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.export_models import RESULTS, cpu_model_name, machine_id


def frames_for(streams: int, count: int, width: int, height: int) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import moving_square_video

    videos = [list(moving_square_video(count, height, width, seed=i)) for i in range(streams)]
    return [{f"s{i}": videos[i][t] for i in range(streams)} for t in range(count)]


def timed_steps(step, steps: list[dict]) -> list[float]:
    times = []
    for frames in steps:
        start = time.perf_counter()
        step(frames)
        times.append(time.perf_counter() - start)
    return times[len(times) // 5 :]  # after the warm-up


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--calls", type=int, default=200, help="no-op actor calls timed")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import ray

    from streamsam.demo import DEMO_MODEL
    from streamsam.serve import Prompt, StreamCluster, StreamWorker, WorkerOptions

    steps = frames_for(args.streams, args.frames, args.width, args.height)
    prompt = {s: [Prompt(1, "points", ((40.0, 50.0),))] for s in steps[0]}
    options = WorkerOptions(str(DEMO_MODEL), max_streams=args.streams, max_objects=1, threads=1)

    local = StreamWorker("local", options)
    for s in steps[0]:
        local.add_stream(s)
    local.step(steps[0], prompt)
    in_process = timed_steps(local.step, steps[1:])
    local.close()

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init_s = time.perf_counter() - start
    start = time.perf_counter()
    cluster = StreamCluster(DEMO_MODEL, workers=1, streams_per_worker=args.streams, max_objects=1, threads=1)
    worker_start_s = time.perf_counter() - start
    for s in steps[0]:
        cluster.add_stream(s, prompt[s])
    cluster.step(steps[0])
    over_ray = timed_steps(cluster.step, steps[1:])
    actor = cluster.actor(cluster.worker_of("s0"))
    noop = []
    for _ in range(args.calls):
        start = time.perf_counter()
        ray.get(actor.ready.remote())
        noop.append(time.perf_counter() - start)
    state_bytes = max(s["nbytes"] for s in cluster.stats().values())
    cluster.close()
    ray.shutdown()

    med = lambda xs: 1000 * statistics.median(xs)  # noqa: E731
    report = {
        "command": "python -m benchmarks.serve_overhead " + " ".join(argv if argv is not None else sys.argv[1:]),
        "cpu": cpu_model_name(), "load_average_end": os.getloadavg(), "ray": ray.__version__,
        "streams": args.streams, "frame": [args.height, args.width], "steps_timed": len(over_ray),
        "step_in_process_ms": med(in_process), "step_over_ray_ms": med(over_ray),
        "ray_adds_per_step_ms": med(over_ray) - med(in_process), "noop_actor_call_ms": med(noop),
        "state_bytes_per_stream": state_bytes, "ray_init_s": ray_init_s, "worker_start_s": worker_start_s,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"serve_overhead_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(f"""# What Ray adds to a serve step

`{report['command']}` on {report['cpu']} (load average at the end {report['load_average_end']}), ray {report['ray']}:
{args.streams} streams of {args.width}x{args.height} on one worker, demo model, one object each.

| | ms |
|---|---|
| step in process (median) | {report['step_in_process_ms']:.1f} |
| step over Ray (median) | {report['step_over_ray_ms']:.1f} |
| Ray adds per step | {report['ray_adds_per_step_ms']:.1f} |
| no-op actor call | {report['noop_actor_call_ms']:.2f} |

Each step carries {args.streams} frames out and {args.streams} StreamStates of {state_bytes / 2**20:.2f} MB back.
Start-up: ray.init {ray_init_s:.1f} s, a worker ready {worker_start_s:.1f} s.
""")
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
