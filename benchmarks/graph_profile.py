"""Where each graph's time goes, by operator type: ONNX Runtime's own profiler on a steady-state frame.

    python -m benchmarks graph_profile [--config tiny] [--image-size 1024] [--threads 1]

A StreamTracker tracks one object clicked on frame 0 of generated frames until its bank is full
(frame 7); the inputs of each graph call of the next frame are kept, and each graph is then run on
them in a session of its own with ONNX Runtime's profiler on (the runtime's session options, the
same threads): one warm-up run, then --runs profiled runs. Reports per graph the ms per call by
operator type (summed over its nodes) and the share of matrix work (MatMul, Gemm, Conv and their
fused forms), i.e. how much of a graph a faster GEMM could speed up at most. The graphs are exported
from seeded weights in a subprocess (or --onnx-dir). Writes benchmarks/results/graph_profile_<config>
_<size>_<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from .export_models import RESULTS, cpu_model_name, machine_id
from .ours import export_seeded_apart, FULL_FILL, MovingSquares
from .side_by_side import BUSY_LOAD, refuse_busy

MATRIX_OPS = {"MatMul", "Gemm", "Conv", "FusedMatMul", "FusedConv", "FusedGemm", "ConvTranspose", "MatMulNBits",
              "QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul"}


class RecordingBackend:
    """Hands calls on to `backend`; while `recording`, keeps a copy of each graph call's inputs."""

    def __init__(self, backend) -> None:
        self.backend, self.manifest = backend, backend.manifest
        self.recording, self.calls = False, {}

    def run(self, graph, inputs, outputs) -> None:
        if self.recording:
            self.calls[graph] = {name: np.array(value) for name, value in inputs.items()}
        self.backend.run(graph, inputs, outputs)


def steady_inputs(onnx_dir: Path, size: int, threads: int) -> dict[str, dict[str, np.ndarray]]:
    """Each graph's inputs on the first frame at 7 memories (frame FULL_FILL + 1 after a click on 0)."""
    from streamsam import OnnxRuntimeBackend, StreamTracker

    recorder = RecordingBackend(OnnxRuntimeBackend(onnx_dir, threads=threads))
    tracker = StreamTracker(recorder, max_objects=1, resize="fast")
    scene = MovingSquares(size, objects=1)
    for index in range(FULL_FILL + 2):
        recorder.recording = index == FULL_FILL + 1
        tracker.track(scene.frame(index)).masks
        if index == 0:
            tracker.add_points(1, [scene.centers[0]])
    return recorder.calls


def profile_graph(path: Path, inputs: dict[str, np.ndarray], threads: int, runs: int, prefix: str) -> dict:
    import onnxruntime as ort

    from streamsam.backend import cpu_memory_options

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    cpu_memory_options(ort, options)
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        session.run(None, inputs)
    events = json.loads(Path(session.end_profiling()).read_text())
    model_runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    timed = model_runs[1:]  # the first run is the warm-up
    start = timed[0]["ts"]
    by_op: dict[str, float] = defaultdict(float)
    nodes: dict[str, int] = defaultdict(int)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start:
            by_op[e["args"]["op_name"]] += e["dur"] / 1e3 / len(timed)
            nodes[e["args"]["op_name"]] += 1
    call_ms = [e["dur"] / 1e3 for e in timed]
    kernels_ms = sum(by_op.values())
    return {"call_ms": call_ms, "kernels_ms": kernels_ms,
            "ops": {op: {"ms": ms, "share": ms / kernels_ms, "nodes": nodes[op] // len(timed)}
                    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "matrix_share": sum(ms for op, ms in by_op.items() if op in MATRIX_OPS) / kernels_ms}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks graph_profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--onnx-dir", type=Path, help="graphs exported already (default: export the config from seeded weights)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD}")
    args = p.parse_args(argv)
    load_start = refuse_busy(args.allow_busy)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx_dir
        if onnx_dir is None:
            onnx_dir = export_seeded_apart(args.config, args.image_size, Path(tmp) / "graphs")
        from streamsam.manifest import read_manifest

        manifest = read_manifest(onnx_dir)
        calls = steady_inputs(onnx_dir, args.image_size, args.threads)
        graphs = {name: profile_graph(onnx_dir / manifest.graphs[name].file, inputs, args.threads, args.runs,
                                      str(Path(tmp) / name)) for name, inputs in calls.items()}
    load_end = os.getloadavg()
    command = "python -m benchmarks graph_profile" + (" " + " ".join(argv) if argv else "")
    report = {"command": command, "cpu": cpu_model_name(), "cores": os.cpu_count(), "threads": args.threads,
              "config": args.config, "image_size": args.image_size, "load_average_start": load_start,
              "load_average_end": load_end, "graphs": graphs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"graph_profile_{args.config}_{args.image_size}_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Where each graph's time goes: {args.config} at {args.image_size}, {cpu_model_name()}, {args.threads} thread(s)", "",
             f"Command: `{command}`  ",
             f"Load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end. One object at 7 memories; "
             f"ONNX Runtime's profiler, {args.runs} runs after a warm-up; ms per call summed over each operator type's nodes. "
             "Matrix work = MatMul, Gemm, Conv and their fused forms.", ""]
    for name, g in graphs.items():
        lines += [f"## {name}: {np.median(g['call_ms']):.1f} ms per call, {g['matrix_share']:.0%} of it matrix work", "",
                  "| operator | nodes | ms per call | share |", "| --- | --- | --- | --- |"]
        shown = [(op, o) for op, o in g["ops"].items() if o["share"] >= 0.005]
        lines += [f"| {op} | {o['nodes']} | {o['ms']:.1f} | {o['share']:.1%} |" for op, o in shown]
        rest = [o for o in g["ops"].values() if o["share"] < 0.005]
        if rest:
            lines.append(f"| {len(rest)} other types | {sum(o['nodes'] for o in rest)} | {sum(o['ms'] for o in rest):.1f} | "
                         f"{sum(o['share'] for o in rest):.1%} |")
        lines.append("")
    stem.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
