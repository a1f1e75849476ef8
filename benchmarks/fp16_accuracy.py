"""Accuracy, size and CPU latency of the FP16 graphs (engines/fp16.py) against the FP32 export.

    python -m benchmarks.fp16_accuracy [--configs reduced tiny] [--no-1024] [--out PATH]

For the golden configs (tests/golden: 'reduced', and 'tiny' = sam2.1_hiera_tiny at 256, seeded
weights), on ONNX Runtime CPU:

- the golden video sequences (tests/golden/video) replayed through our VideoPredictor twice, on the
  FP32 graphs and on their FP16 conversion: per frame and object, mask IoU at video resolution,
  object-score sign agreement and low-res logit errors, FP16 against FP32 (and against the official
  predictor); plus every multimask choice the two runs made differently and the FP32 margin between
  the two choices (a near-tie, below NEAR_TIE, is decided by any rounding); for the --reference
  configs (default: reduced) the FP16 replay once more on onnx's reference evaluator (below);
- the stage fixtures (tests/golden/parity.py cases): each graph's outputs, FP16 against FP32, on
  ONNX Runtime and, as a stand-in for TensorRT's FP16 arithmetic, on onnx's numpy reference
  evaluator (each FP16 op computed and rounded in FP16: ONNX Runtime's CPU provider has no FP16
  kernels for the arithmetic ops and runs them in FP32, see the op table);
- file sizes and median latency per graph (plus sam2.1_hiera_tiny at 1024 unless --no-1024).

Writes benchmarks/results/fp16_accuracy.md. Shared with tests/test_fp16.py: `replay_pair`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(GOLDEN))
import parity  # noqa: E402  (tests/golden/parity.py)
import video_parity  # noqa: E402  (tests/golden/video_parity.py)

from streamsam.backend import OnnxRuntimeBackend  # noqa: E402
from streamsam.contracts import GRAPH_NAMES, MASK_DECODER, OBJECTS, POINTS  # noqa: E402
from streamsam.engines.fp16 import KEEP_FP32, convert_folder  # noqa: E402

# Two multimask outputs whose FP32 predicted IoUs differ by less than this are a tie for FP16.
NEAR_TIE = 1e-3
IOU_TARGET = 0.97


class RecordingBackend(OnnxRuntimeBackend):
    """ONNX Runtime, keeping each mask decoder call's predicted IoUs and chosen masks."""

    def __init__(self, onnx_dir, threads: int | None = None) -> None:
        super().__init__(onnx_dir, threads=threads)
        self.decoder_calls: list[tuple[np.ndarray, np.ndarray]] = []  # (multimask_ious, low_res_masks)

    def run(self, graph, inputs, outputs) -> None:
        super().run(graph, inputs, outputs)
        self._record(graph, outputs)

    def _record(self, graph, outputs) -> None:
        if graph == MASK_DECODER:
            self.decoder_calls.append((outputs["multimask_ious"].copy(), outputs["low_res_masks"].copy()))


class ReferenceBackend(RecordingBackend):
    """onnx's numpy reference evaluator instead of ONNX Runtime: each FP16 op is computed and
    rounded in FP16, as TensorRT's FP16 layers are (slow: seconds per graph call)."""

    def __init__(self, onnx_dir, threads: int | None = None) -> None:
        from onnx.reference import ReferenceEvaluator

        from streamsam.manifest import read_manifest

        self.manifest = read_manifest(onnx_dir)
        self.decoder_calls = []
        self._evaluators = {g: ReferenceEvaluator(str(Path(onnx_dir) / e.file)) for g, e in self.manifest.graphs.items()}

    def run(self, graph, inputs, outputs) -> None:
        names = list(outputs)
        with np.errstate(over="ignore", invalid="ignore"):  # FP16 sigmoid: exp overflows in the branch np.where drops
            values = self._evaluators[graph].run(names, dict(inputs))
        for name, value in zip(names, values):
            outputs[name][...] = value
        self._record(graph, outputs)


@dataclass(frozen=True)
class Step:
    """One object on one frame of a replay: what the predictor gave."""

    call: str
    frame: int
    obj_id: int
    logits: np.ndarray  # low-res [h, w]
    score: float
    official_iou: float  # against the official predictor


@dataclass(frozen=True)
class FrameDiff:
    """FP16 against FP32 for one object on one frame."""

    call: str
    frame: int
    obj_id: int
    iou: float  # masks at video resolution
    score_sign_equal: bool
    max_abs_error: float  # low-res logits
    mean_abs_error: float
    official_iou: float  # the FP16 run against the official predictor
    after_near_tie: bool  # this object's track in this call took another near-tied multimask output
    choice_flip_margin: float | None  # FP32 margin where this step's decoder call chose differently


@dataclass(frozen=True)
class ChoiceFlip:
    """A mask decoder call where FP16 chose another multimask output than FP32."""

    call_index: int
    row: int
    fp32_margin: float  # FP32 predicted IoU of its choice minus that of the FP16 choice


def replay(name: str, graphs: Path, threads: int | None = None, backend=RecordingBackend) -> tuple[list[Step], RecordingBackend]:
    """tests/golden/video_parity.replay on `graphs`, keeping every step's logits and the decoder calls."""
    steps: list[Step] = []
    compare = video_parity._compare

    def keep(call, frame, obj_ids, ours, official, our_scores, official_scores, size):
        checks = compare(call, frame, obj_ids, ours, official, our_scores, official_scores, size)
        by_id = {c.obj_id: c.iou for c in checks}
        for i, obj_id in enumerate(obj_ids):
            if obj_id in by_id:  # an object the official step reports on
                steps.append(Step(call, frame, obj_id, np.array(ours[i]), float(our_scores[i]), by_id[obj_id]))
        return checks

    backend = backend(graphs, threads=threads)
    with mock.patch.object(video_parity, "_compare", keep):
        video_parity.replay(name, backend)
    return steps, backend


def choice_flips(fp32: RecordingBackend, fp16: RecordingBackend) -> dict[tuple[int, int], ChoiceFlip]:
    """Decoder calls (same order in both runs: the call pattern does not depend on values) whose
    best-IoU multimask choice differs, keyed by (call index, row)."""
    if [i.shape for i, _ in fp32.decoder_calls] != [i.shape for i, _ in fp16.decoder_calls]:
        raise AssertionError("the FP32 and FP16 replays made different mask decoder calls")
    flips = {}
    for k, ((ious32, _), (ious16, _)) in enumerate(zip(fp32.decoder_calls, fp16.decoder_calls)):
        for row, (a, b) in enumerate(zip(ious32.argmax(1), ious16.argmax(1))):
            if a != b:
                flips[k, row] = ChoiceFlip(k, row, float(ious32[row, a] - ious32[row, b]))
    return flips


def _decoder_index(backend: RecordingBackend) -> dict[bytes, tuple[int, int]]:
    """A step's logits are one decoder output row as it came out (no hole filling in the replay)."""
    return {masks[row, 0].tobytes(): (k, row) for k, (_, masks) in enumerate(backend.decoder_calls) for row in range(len(masks))}


def compare_steps(name: str, fp32: tuple[list[Step], RecordingBackend], fp16: tuple[list[Step], RecordingBackend]) -> tuple[list[FrameDiff], list[ChoiceFlip]]:
    """Per step FP16 against FP32, marking each object's track after a near-tie choice flip."""
    (steps32, rec32), (steps16, rec16) = fp32, fp16
    if [(s.call, s.frame, s.obj_id) for s in steps32] != [(s.call, s.frame, s.obj_id) for s in steps16]:
        raise AssertionError("the FP32 and FP16 replays yielded different frames or objects")
    flips, index = choice_flips(rec32, rec16), _decoder_index(rec32)
    size = np.load(video_parity.VIDEO / "frames.npz")["frames"].shape[1:3]
    diffs, tied = [], set()
    for a, b in zip(steps32, steps16):
        flip = flips.get(index.get(a.logits.tobytes()))
        if flip is not None and flip.fp32_margin < NEAR_TIE:
            tied.add((a.call, a.obj_id))
        va, vb = video_parity._video_res(np.stack([a.logits, b.logits]), size)
        union = (va | vb).sum()
        err = np.abs(a.logits - b.logits)
        diffs.append(
            FrameDiff(
                a.call, a.frame, a.obj_id, 1.0 if union == 0 else float((va & vb).sum() / union),
                (a.score > 0) == (b.score > 0), float(err.max()), float(err.mean()), b.official_iou, (a.call, a.obj_id) in tied,
                None if flip is None else flip.fp32_margin,
            )
        )
    return diffs, sorted(flips.values(), key=lambda f: (f.call_index, f.row))


def replay_pair(
    name: str, fp32_dir: Path, fp16_dir: Path, threads: int | None = None, fp16_backend=RecordingBackend
) -> tuple[list[FrameDiff], list[ChoiceFlip]]:
    """Replay the golden video on both folders (the FP32 one on ONNX Runtime) and compare them step by step."""
    return compare_steps(name, replay(name, fp32_dir, threads), replay(name, fp16_dir, threads, fp16_backend))


def stage_errors(name: str, fp32_dir: Path, fp16_dir: Path) -> list[dict]:
    """Each stage fixture through the FP32 and FP16 graphs (ONNX Runtime; FP16 also on onnx's
    reference evaluator): max / mean abs error per output and the share of mask logits that
    change sign."""
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    rows = []
    for stage, make in parity.STAGE_CASES.items():
        s32 = ort.InferenceSession(str(fp32_dir / f"{stage}.onnx"), providers=["CPUExecutionProvider"])
        s16 = ort.InferenceSession(str(fp16_dir / f"{stage}.onnx"), providers=["CPUExecutionProvider"])
        ref = ReferenceEvaluator(str(fp16_dir / f"{stage}.onnx"))
        names = [o.name for o in s32.get_outputs()]
        for case in make(name):
            want = dict(zip(names, s32.run(names, case.inputs)))
            with np.errstate(over="ignore", invalid="ignore"):  # FP16 sigmoid: exp overflows in the branch np.where drops
                got = {"ort": dict(zip(names, s16.run(names, case.inputs))), "ref": dict(zip(names, ref.run(names, case.inputs)))}
            for out in names:
                row = {"stage": stage, "case": case.name, "output": out, "scale": float(np.abs(want[out]).max())}
                for runner, values in got.items():
                    err = np.abs(values[out] - want[out])
                    row[f"{runner}_max"], row[f"{runner}_mean"] = float(err.max()), float(err.mean())
                    if "masks" in out:
                        row[f"{runner}_flipped"] = float(((values[out] > 0) != (want[out] > 0)).mean())
                rows.append(row)
    return rows


def ort_fp32_ops(path: Path) -> tuple[Counter, Counter]:
    """Op types of an FP16 graph's FP16 nodes that ONNX Runtime CPU runs in FP32 (its
    InsertCastTransformer, at session creation) and those it runs in FP16."""
    import onnx
    import onnxruntime as ort

    def types(model):
        model = onnx.shape_inference.infer_shapes(model)
        values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
        return model, {v.name: v.type.tensor_type.elem_type for v in values}

    converted, before = types(onnx.load(str(path)))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = os.path.join(tmp, "session.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session, after = types(onnx.load(options.optimized_model_filepath))
    fp16_nodes = {n.name for n in converted.graph.node if n.op_type != "Cast" and any(before.get(o) == 10 for o in n.output)}
    in_fp32, in_fp16 = Counter(), Counter()
    for node in session.graph.node:
        if node.name in fp16_nodes:
            (in_fp32 if any(after.get(o) == 1 for o in node.output) else in_fp16)[node.op_type] += 1
    return in_fp32, in_fp16


def latency_ms(directory: Path, threads: int, repeats: int = 5) -> dict[str, float]:
    """Median ONNX Runtime CPU time per graph over `repeats` runs (2 objects, 3 points), after one warm-up."""
    from streamsam.export.onnx_export import example_inputs
    from streamsam.manifest import read_manifest

    backend = OnnxRuntimeBackend(directory, threads=threads)
    dims = backend.manifest.dims
    out = {}
    for name, contract in read_manifest(directory).contracts.items():
        inputs = example_inputs(contract, dims, objects=2, points=3)
        outputs = {s.name: np.empty(s.concrete_shape(**{OBJECTS: 2, POINTS: 3}), s.dtype) for s in contract.outputs}
        backend.run(name, inputs, outputs)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backend.run(name, inputs, outputs)
            times.append(time.perf_counter() - start)
        out[name] = 1000 * float(np.median(times))
    return out


def export_pair(name: str, root: Path, image_size: int | None = None) -> tuple[Path, Path]:
    """Export a golden config (or sam2.1 tiny at `image_size`) and convert it; returns both folders."""
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.onnx_export import ExportOptions, export_model
    from streamsam.export.random_weights import seeded_state_dict

    fp32, fp16 = root / name, root / f"{name}_fp16"
    if image_size is None:
        model = parity.golden_model(name)
    else:
        model = Sam2Model(get_config("sam2.1_hiera_tiny", image_size))
        model.load_state_dict(seeded_state_dict(model.state_dict()))
    export_model(model.eval(), fp32, ExportOptions(max_prompted_frames=2, check=image_size is None), progress=None)
    convert_folder(fp32, fp16, progress=None)
    return fp32, fp16


def _fmt(x: float) -> str:
    return f"{x:.2e}"


def video_section(name: str, diffs: list[FrameDiff]) -> list[str]:
    lines = []
    for call in dict.fromkeys(d.call for d in diffs):
        ds = [d for d in diffs if d.call == call]
        lines.append(
            f"| {name} | {call} | {len(ds)} | {min(d.iou for d in ds):.5f} | {sum(d.iou < IOU_TARGET for d in ds)} "
            f"| {sum(d.after_near_tie for d in ds)} | {sum(d.score_sign_equal for d in ds)}/{len(ds)} "
            f"| {_fmt(max(d.max_abs_error for d in ds))} | {_fmt(np.mean([d.mean_abs_error for d in ds]))} | {min(d.official_iou for d in ds):.5f} |"
        )
    clean = [d for d in diffs if not d.after_near_tie]
    lines.append(
        f"| **{name}** | **all** | {len(diffs)} | **{min(d.iou for d in diffs):.5f}** | {sum(d.iou < IOU_TARGET for d in diffs)} "
        f"| {len(diffs) - len(clean)} | {sum(d.score_sign_equal for d in diffs)}/{len(diffs)} "
        f"| {_fmt(max(d.max_abs_error for d in diffs))} | {_fmt(np.mean([d.mean_abs_error for d in diffs]))} | {min(d.official_iou for d in diffs):.5f} |"
    )
    return lines


def markdown(env: dict, video: dict, reference: dict, stages: dict, ops: dict, sizes: dict, command: str) -> str:
    out = [
        "# FP16 graphs (engines/fp16.py) against the FP32 export",
        "",
        f"Command: `{command}`  ",
        f"Machine: {env['cpu']} ({env['cpu_count']} cores), Python {env['python']}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + ".  ",
        "Runtime: ONNX Runtime CPU unless said otherwise; weights: seeded random (tests/golden/README.md).",
        "",
        "Kept in FP32 (engines/fp16.py, KEEP_FP32; graph inputs and outputs are FP32 too):",
        "",
    ]
    for graph, rules in KEEP_FP32.items():
        out.append(f"- {graph}: " + "; ".join(r.reason for r in rules))
    out += [
        "",
        "## Golden video replay: FP16 against FP32, per frame and object",
        "",
        f"The official script (48 frames, two objects, clicks, a box, corrections, mask prompts, propagation forward,",
        "in reverse and from frame 25) on our VideoPredictor, once per precision. IoU of the masks at video",
        f"resolution; '< {IOU_TARGET}': steps under the target; 'after near-tie': steps of an object's track after",
        f"FP16 chose another multimask output than FP32 where their FP32 predicted IoUs differed by < {NEAR_TIE}",
        "(a tie that any rounding decides; the track then follows the other mask); logit errors of the low-res",
        "logits; last column: the FP16 run against the official SAM2VideoPredictor.",
        "",
        "| config | call | steps | min IoU | < target | after near-tie | score signs equal | logits max abs err | logits mean abs err | min IoU vs official |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (diffs, flips) in video.items():
        out += video_section(name, diffs)
    if reference:
        out += [
            "",
            "The same, with the FP16 graphs on onnx's numpy reference evaluator (every FP16 op computed and rounded in",
            "FP16, the arithmetic TensorRT's FP16 layers do; ONNX Runtime CPU runs most of them in FP32, see below):",
            "",
            "| config | call | steps | min IoU | < target | after near-tie | score signs equal | logits max abs err | logits mean abs err | min IoU vs official |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, (diffs, flips) in reference.items():
            out += video_section(f"{name}, reference", diffs)[-1:]
        video = {**video, **{f"{name}, reference": pair for name, pair in reference.items()}}
    out += ["", "Multimask choices made differently by FP16 (FP32 margin of predicted IoU between the two choices):", ""]
    for name, (diffs, flips) in video.items():
        near = [f for f in flips if f.fp32_margin < NEAR_TIE]
        decisive = [d for d in diffs if d.choice_flip_margin is not None and d.choice_flip_margin >= NEAR_TIE and not d.after_near_tie]
        clean = [d for d in diffs if not d.after_near_tie]
        out.append(
            f"- {name}: {len(flips)} of {len(diffs)} steps' decoder calls; {len(near)} near-ties "
            f"({', '.join(f'{f.fp32_margin:.1e}' for f in near) or 'none'}), the other {len(flips) - len(near)} later on the "
            f"same tracks; {len(decisive)} on a track without an earlier near-tie. Min IoU outside tracks after a near-tie: "
            f"{min(d.iou for d in clean):.5f} over {len(clean)} steps"
        )
    out += [
        "",
        "## Stage fixtures: each graph, FP16 against FP32",
        "",
        "tests/golden/parity.py cases. 'ORT': ONNX Runtime CPU; 'reference': onnx.reference.ReferenceEvaluator, which",
        "computes and rounds every FP16 op in FP16 (closer to TensorRT's FP16 arithmetic; ONNX Runtime CPU runs",
        "most FP16 ops in FP32, see below). Mask rows: share of logits whose sign changes.",
        "",
        "| config | stage | case | output | max abs FP32 | ORT max abs err | ORT mean abs err | reference max abs err | reference mean abs err | sign changes ORT / reference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in stages.items():
        for r in rows:
            flips = f"{r['ort_flipped']:.1e} / {r['ref_flipped']:.1e}" if "ort_flipped" in r else "-"
            out.append(
                f"| {name} | {r['stage']} | {r['case']} | {r['output']} | {r['scale']:.2g} | {_fmt(r['ort_max'])} | {_fmt(r['ort_mean'])} "
                f"| {_fmt(r['ref_max'])} | {_fmt(r['ref_mean'])} | {flips} |"
            )
    out += [
        "",
        "## What ONNX Runtime CPU does with the FP16 ops",
        "",
        "It loads and runs every FP16 graph (no failure): at session creation its InsertCastTransformer gives the",
        "ops without an FP16 CPU kernel Cast nodes to FP32 and back, and runs whole regions of them in FP32. Op types",
        "of the FP16 nodes (nodes, all four graphs of the first config):",
        "",
        f"- run in FP32: {', '.join(f'{k} {v}' for k, v in ops['fp32'].most_common())}",
        f"- run in FP16: {', '.join(f'{k} {v}' for k, v in ops['fp16'].most_common())}",
        "",
        "So on this CPU the FP16 graph's error is mostly its FP16 weights and the FP16 tensors between regions;",
        "the reference column above adds FP16 arithmetic. TensorRT (strongly typed) runs these ops in FP16.",
        "",
        "## Files and ONNX Runtime CPU latency",
        "",
        f"Median of 5 runs after a warm-up, 2 objects, 3 points, {env['threads']} threads; load average (1 min) {env['load_start']:.2f}",
        f"at the start, {env['load']:.2f} at the end (the run's own threads included). FP16 on a CPU is not",
        "expected to be faster (the casts above); the sizes are what a TensorRT build reads.",
        "",
        "| config | graph | FP32 MB | FP16 MB | FP32 ms | FP16 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name, rows in sizes.items():
        for graph in GRAPH_NAMES:
            r = rows[graph]
            out.append(f"| {name} | {graph} | {r['fp32_mb']:.1f} | {r['fp16_mb']:.1f} | {r['fp32_ms']:.0f} | {r['fp16_ms']:.0f} |")
        total32, total16 = sum(r["fp32_mb"] for r in rows.values()), sum(r["fp16_mb"] for r in rows.values())
        out.append(f"| {name} | all | {total32:.1f} | {total16:.1f} | | |")
    return "\n".join(out) + "\n"


def environment(threads: int, load_start: tuple[float, float, float]) -> dict:
    import onnx
    import onnxruntime
    import torch

    import streamsam

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_start": load_start[0],
        "load": os.getloadavg()[0],
        "python": platform.python_version(),
        "versions": {"streamsam": streamsam.__version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def sizes_and_latency(fp32: Path, fp16: Path, threads: int) -> dict[str, dict]:
    t32, t16 = latency_ms(fp32, threads), latency_ms(fp16, threads)
    return {
        g: {
            "fp32_mb": (fp32 / f"{g}.onnx").stat().st_size / 1e6,
            "fp16_mb": (fp16 / f"{g}.onnx").stat().st_size / 1e6,
            "fp32_ms": t32[g],
            "fp16_ms": t16[g],
        }
        for g in GRAPH_NAMES
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["reduced", "tiny"], choices=["reduced", "tiny"])
    parser.add_argument("--no-1024", action="store_true", help="skip sizes and latency of sam2.1_hiera_tiny at 1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", nargs="*", default=["reduced"], choices=["reduced", "tiny"], help="configs also replayed on the reference evaluator (slow)")
    parser.add_argument("--out", type=Path, default=RESULTS / "fp16_accuracy.md")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    command = " ".join(["python -m benchmarks.fp16_accuracy", *(sys.argv[1:] if argv is None else argv)])
    video, reference, stages, sizes, ops = {}, {}, {}, {}, {"fp32": Counter(), "fp16": Counter()}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            fp32, fp16 = export_pair(name, Path(tmp))
            print(f"{name}: exported and converted", flush=True)
            stages[name] = stage_errors(name, fp32, fp16)
            if name == args.configs[0]:
                for graph in GRAPH_NAMES:
                    in_fp32, in_fp16 = ort_fp32_ops(fp16 / f"{graph}.onnx")
                    ops["fp32"] += in_fp32
                    ops["fp16"] += in_fp16
            sizes[name] = sizes_and_latency(fp32, fp16, args.threads)
            video[name] = replay_pair(name, fp32, fp16, threads=args.threads)
            diffs = video[name][0]
            print(f"{name}: replayed, min IoU {min(d.iou for d in diffs):.5f}", flush=True)
            if name in args.reference:
                reference[name] = replay_pair(name, fp32, fp16, threads=args.threads, fp16_backend=ReferenceBackend)
                print(f"{name}: replayed on the reference evaluator, min IoU {min(d.iou for d in reference[name][0]):.5f}", flush=True)
        if not args.no_1024:
            fp32, fp16 = export_pair("tiny_1024", Path(tmp), image_size=1024)
            sizes["sam2.1 tiny at 1024"] = sizes_and_latency(fp32, fp16, args.threads)
    text = markdown(environment(args.threads, load_start), video, reference, stages, ops, sizes, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
