"""Memory attention's attention op on ONNX Runtime CPU: the exported form against fused kernels.

    python -m benchmarks attention_kernels [--threads 1 2] [--repeats 2] [--runs 3]

The exported graph attends as MatMul-Softmax-MatMul over 512-query chunks with an additive key bias
that masks empty bank slots (export/modeling/memory_attention.py); TensorRT fuses exactly that form.
Against it, at the model's sizes (one head of 256 channels; 7 memories + 16 pointers = 4 x 16 tokens):
- `mha_masked`: com.microsoft MultiHeadAttention with a key padding mask (the exact masking the
  runtime needs; ONNX Runtime takes its unfused path with a mask);
- `mha_flash`: MultiHeadAttention without a mask, ONNX Runtime's CPU flash-attention kernel. It cannot
  mask empty slots, so it would only serve a full bank: timed as the fused kernel's best case;
- `attention23`: the ONNX opset-23 Attention op without a mask (its mask must be [queries, keys],
  materialised per call, so it is timed unmasked too).
Each (form, size, threads) runs in a fresh process (the peak memory it adds is its own), the forms
alternating --repeats times (A/B/C/D/A/...). Outputs are checked against a float64 reference with
the same masking (256 query rows). GFLOP/s counts 4 x queries x keys x 256 (both products) and is
given as a fraction of ONNX Runtime's measured FP32 GEMM rate with the same threads. Writes
benchmarks/results/attention_kernels_<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .export_models import RESULTS, cpu_model_name, machine_id
from .flops import measured_gemm_gflops
from .ours import rss_mb
from .side_by_side import BUSY_LOAD, refuse_busy

CHANNELS = 256  # d_model: memory attention has one head of 256 channels
FORMS = ("exported", "mha_masked", "mha_flash", "attention23")
MASKED_FORMS = ("exported", "mha_masked")
# (name, queries, keys): a 32 x 32 / 64 x 64 grid attending to itself, and to 7 memories + 16 pointers.
SIZES = (("self 512", 1024, 1024), ("cross 512", 1024, 7 * 1024 + 64),
         ("self 1024", 4096, 4096), ("cross 1024", 4096, 7 * 4096 + 64))
MASKED_FRACTION = 8  # the last 1/8 of the keys masked (one empty memory slot of eight)


def attention_model(form: str, queries: int, keys: int):
    """One attention op, q [1, queries, 256], k and v [1, keys, 256] (projected, rotated), plus the
    mask input of the masked forms, as an ONNX model."""
    from onnx import TensorProto as T
    from onnx import helper as h

    from export.modeling.memory_attention import query_chunk_size

    inputs = [h.make_tensor_value_info(n, T.FLOAT, [1, s, CHANNELS]) for n, s in (("q", queries), ("k", keys), ("v", keys))]
    scale = CHANNELS**-0.5
    nodes, initializers, opsets = [], [], [h.make_opsetid("", 17)]
    if form == "exported":
        inputs.append(h.make_tensor_value_info("key_bias", T.FLOAT, [1, 1, 1, keys]))
        chunk = query_chunk_size(queries)
        chunks = queries // chunk
        initializers += [h.make_tensor("scale", T.FLOAT, [], [scale]), h.make_tensor("head_axis", T.INT64, [1], [1]),
                         h.make_tensor("chunks", T.INT64, [chunks], [chunk] * chunks)]
        nodes += [h.make_node("Mul", ["q", "scale"], ["q_scaled"]), h.make_node("Unsqueeze", ["q_scaled", "head_axis"], ["q_heads"]),
                  h.make_node("Transpose", ["k"], ["k_t"], perm=[0, 2, 1]), h.make_node("Unsqueeze", ["k_t", "head_axis"], ["k_heads"]),
                  h.make_node("Unsqueeze", ["v", "head_axis"], ["v_heads"]),
                  h.make_node("Split", ["q_heads", "chunks"], [f"q_chunk{i}" for i in range(chunks)], axis=2)]
        for i in range(chunks):
            nodes += [h.make_node("MatMul", [f"q_chunk{i}", "k_heads"], [f"logits{i}"]),
                      h.make_node("Add", [f"logits{i}", "key_bias"], [f"biased{i}"]),
                      h.make_node("Softmax", [f"biased{i}"], [f"weights{i}"], axis=-1),
                      h.make_node("MatMul", [f"weights{i}", "v_heads"], [f"out_chunk{i}"])]
        nodes += [h.make_node("Concat", [f"out_chunk{i}" for i in range(chunks)], ["out_heads"], axis=2),
                  h.make_node("Squeeze", ["out_heads", "head_axis"], ["out"])]
    elif form in ("mha_masked", "mha_flash"):
        opsets.append(h.make_opsetid("com.microsoft", 1))
        mask = []
        if form == "mha_masked":
            inputs.append(h.make_tensor_value_info("key_padding_mask", T.INT32, [1, keys]))
            mask = ["", "key_padding_mask"]
        nodes.append(h.make_node("MultiHeadAttention", ["q", "k", "v", *mask], ["out"], domain="com.microsoft",
                                 num_heads=1, scale=scale))
    elif form == "attention23":
        opsets = [h.make_opsetid("", 23)]
        nodes.append(h.make_node("Attention", ["q", "k", "v"], ["out"], q_num_heads=1, kv_num_heads=1, scale=scale))
    else:
        raise ValueError(f"attention_kernels | received form {form!r}; expected one of {', '.join(FORMS)}")
    graph = h.make_graph(nodes, form, inputs, [h.make_tensor_value_info("out", T.FLOAT, None)], initializers)
    model = h.make_model(graph, opset_imports=opsets)
    model.ir_version = 10
    return model


def feeds_for(form: str, queries: int, keys: int) -> tuple[dict, np.ndarray]:
    """Seeded inputs and the key validity (1 valid, 0 masked) the masked forms apply."""
    rng = np.random.default_rng(0)
    feeds = {"q": rng.standard_normal((1, queries, CHANNELS), np.float32),
             "k": rng.standard_normal((1, keys, CHANNELS), np.float32),
             "v": rng.standard_normal((1, keys, CHANNELS), np.float32)}
    valid = np.ones(keys, np.int32)
    if form in MASKED_FORMS:
        valid[-(keys // MASKED_FRACTION):] = 0
    if form == "exported":
        from export.modeling.memory_attention import MASKED_KEY_BIAS

        feeds["key_bias"] = np.where(valid == 1, 0.0, MASKED_KEY_BIAS).astype(np.float32)[None, None, None]
    elif form == "mha_masked":
        feeds["key_padding_mask"] = valid[None]
    return feeds, valid


def reference(feeds: dict, valid: np.ndarray, rows: int = 256) -> np.ndarray:
    """softmax(q k^T / 16) v in float64 over the valid keys, for the first `rows` queries."""
    q, k, v = (feeds[n][0].astype(np.float64) for n in "qkv")
    logits = q[:rows] @ k[valid == 1].T * CHANNELS**-0.5
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)) @ v[valid == 1]


def worker(form: str, queries: int, keys: int, threads: int, runs: int) -> dict:
    import onnxruntime

    model = attention_model(form, queries, keys).SerializeToString()
    feeds, valid = feeds_for(form, queries, keys)
    baseline_mb = rss_mb()  # interpreter, torch (the exporter's constants), the inputs
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    out = session.run(None, feeds)[0]  # warm-up: ONNX Runtime plans and allocates on the first run
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    error = float(np.abs(out[0, :256] - reference(feeds, valid)).max())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": times, "max_abs_error": error, "peak_mb_over_inputs": peak_mb - baseline_mb}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(prog="python -m benchmarks attention_kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=2, help="rounds over the forms, each in a fresh process")
    p.add_argument("--runs", type=int, default=3, help="timed runs per process, after one warm-up run")
    p.add_argument("--sizes", nargs="+", help="QUERIES:KEYS pairs instead of the model's four (tests)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD}")
    p.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        form, queries, keys, threads, runs = args.worker
        print(json.dumps(worker(form, int(queries), int(keys), int(threads), int(runs))))
        return None
    sizes = SIZES if not args.sizes else tuple((s, *map(int, s.split(":"))) for s in args.sizes)
    load_start = refuse_busy(args.allow_busy)
    gemm = {threads: measured_gemm_gflops(threads) for threads in args.threads}
    rows = []
    for threads in args.threads:
        for name, queries, keys in sizes:
            results = {form: [] for form in FORMS}
            for _ in range(args.repeats):
                for form in FORMS:
                    out = subprocess.run(
                        [sys.executable, "-m", "benchmarks.attention_kernels", "--worker", form, str(queries), str(keys),
                         str(threads), str(args.runs)],
                        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
                    results[form].append(json.loads(out.stdout.strip().splitlines()[-1]))
            gflop = 4 * queries * keys * CHANNELS / 1e9
            for form, runs in results.items():
                best_per_process = [min(r["ms"]) for r in runs]
                rows.append({"threads": threads, "size": name, "queries": queries, "keys": keys, "form": form,
                             "best_ms_per_process": best_per_process,
                             "max_abs_error": max(r["max_abs_error"] for r in runs),
                             "peak_mb_over_inputs": max(r["peak_mb_over_inputs"] for r in runs),
                             "gflops_per_s": gflop / (min(best_per_process) / 1e3)})
    load_end = os.getloadavg()
    command = "python -m benchmarks attention_kernels" + (" " + " ".join(argv) if argv else "")
    report = {"command": command, "cpu": cpu_model_name(), "cores": os.cpu_count(), "gemm_gflops": gemm,
              "load_average_start": load_start, "load_average_end": load_end, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"attention_kernels_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Memory attention's attention op on ONNX Runtime CPU ({cpu_model_name()})", "",
             f"Command: `{command}`  ",
             f"{os.cpu_count()} cores; load average (1 min) {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end. "
             f"ONNX Runtime FP32 GEMM (2048^3): " + ", ".join(f"{g:.0f} GFLOP/s with {t} thread(s)" for t, g in gemm.items()) + ".  ",
             "Each form in a fresh process per round; ms = the best of the timed runs in each process (rounds in order); "
             f"masked forms mask the last 1/{MASKED_FRACTION} of the keys; error = max |out - float64 reference|; "
             "peak MB over inputs = the process's peak resident memory less its resident memory once the inputs were made "
             "(what the session and its run added).", "",
             "| threads | size (queries x keys) | form | ms per process | GFLOP/s | of GEMM | max error | peak MB over inputs |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['threads']} | {row['size']} ({row['queries']} x {row['keys']}) | {row['form']} | "
                     f"{' / '.join(f'{v:.0f}' for v in row['best_ms_per_process'])} | {row['gflops_per_s']:.0f} | "
                     f"{row['gflops_per_s'] / gemm[row['threads']]:.0%} | {row['max_abs_error']:.1e} | {row['peak_mb_over_inputs']:.0f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return report


if __name__ == "__main__":
    main()
