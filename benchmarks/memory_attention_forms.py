"""Which form of the memory_attention graph is fastest on ONNX Runtime CPU? (docs/design.md, "One path")

    python -m benchmarks.memory_attention_forms [--image-sizes 512 1024] [--runs 7] [--runs-1024 7] [--options ...] [--out DIR]

Forms, all from sam2.1_hiera_tiny with seeded random weights:
  masked_mpf2  the exported graph (streamsam.contracts): 8 memory + 17 pointer slots with validity flags
  masked_mpf1  the same exported with max_prompted_frames=1: 7 + 16 slots, none wasted in steady state
  dynamic      memory and pointer slot axes dynamic in ONNX, no flags: run with exactly the valid
               memories (what one static TensorRT profile per fill level would compute)

Each (form, session options) is profiled alone in a fresh process (onnxruntime + numpy only: session
creation time, peak RSS, outputs); latency is then timed with all sessions of a size in one process,
round-robin, so that load from other jobs hits every form alike. Outputs are compared between forms
on the same valid content.
Writes memory_attention_forms_cpu-<machine>.md and .json to --out (benchmarks/results by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.export_models import RESULTS, machine_id, peak_rss_mb

CONFIG = "sam2.1_hiera_tiny"
# (memories, pointers) of the valid content per fill level: frame 1 after the prompt, frame 3, steady state.
FILL_LEVELS = {1: 1, 4: 4, 7: 16}
SESSION_OPTIONS = {
    "default": {},  # ORT_ENABLE_ALL, ORT's default thread count
    "extended": {"graph_optimization_level": "ORT_ENABLE_EXTENDED"},
    "threads2": {"intra_op_num_threads": 2},
}


# ---------------------------------------------------------------- model and graphs (torch side)


def build_tiny(image_size: int):
    from streamsam.export.checkpoint import build_model
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.random_weights import seeded_state_dict

    config = get_config(CONFIG, image_size)
    return build_model(config, seeded_state_dict(Sam2Model.expected_shapes(config)))


def dynamic_wrapper(model):
    """MemoryAttentionGraph without validity flags and without Python-int slot counts, so that the
    slot axes stay symbolic when traced (the stock forward computes the RoPE key tables and reshapes
    from Python ints, which the tracer bakes in)."""
    import torch

    from streamsam.export.graphs.memory_attention import MemoryAttentionGraph
    from streamsam.export.modeling.position_encoding import get_1d_sine_pe

    class DynamicMemoryAttention(MemoryAttentionGraph):
        def forward(self, image_embed, memory, memory_tpos, obj_ptrs, obj_ptr_tpos):
            attention = self.memory_attention
            objects, mem, split = memory.shape[0], self.mem_dim, self.d_model // self.mem_dim
            curr = image_embed.flatten(2).transpose(1, 2).expand(objects, -1, -1)  # [B, HW, d]
            hw = curr.shape[1]
            # [B, M, mem, g, g] -> [B, M*HW, mem]; flatten keeps M symbolic
            memory_tokens = memory.flatten(3).transpose(2, 3).flatten(1, 2)
            # as MemoryAttentionGraph: distance 0 (prompted) -> maskmem_tpos_enc[-1], distance d -> [d - 1]
            distance = memory_tpos.long()
            index = torch.where(distance == 0, torch.full_like(distance, self.num_maskmem - 1), distance - 1)
            tpos = self.maskmem_tpos_enc.reshape(self.num_maskmem, mem)[index]
            memory_pos = (self.memory_grid_pos[None, None] + tpos[:, :, None, :]).flatten(1, 2)
            ptr_tokens = obj_ptrs.reshape(objects, -1, mem)
            ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(obj_ptr_tpos, dim=self.d_model))  # [B, P, mem]
            ptr_pos = ptr_pos[:, :, None, :].expand(-1, -1, split, -1).flatten(1, 2)
            memory_all = torch.cat([memory_tokens, ptr_tokens], dim=1)
            memory_keys = memory_all + torch.cat([memory_pos, ptr_pos], dim=1)
            # RoPE: the grid's tables once per memory (broadcast against a [B, M, 1, 1] zero made from
            # the input, so M stays symbolic), identity rotation for the pointer tokens.
            cos, sin = (t.to(curr.dtype).expand(objects, -1, -1) for t in attention._grid_rope(hw, curr.device))
            per_memory = (memory_tpos[:, :, None, None] * 0).to(curr.dtype)
            per_ptr_token = (ptr_tokens[:, :, :1] * 0).expand(-1, -1, self.d_model)
            k_cos = torch.cat([(cos[:, None] + per_memory).flatten(1, 2), per_ptr_token + 1], dim=1)
            k_sin = torch.cat([(sin[:, None] + per_memory).flatten(1, 2), per_ptr_token], dim=1)
            output = curr + 0.1 * self.curr_pos[None]
            for layer in attention.layers:
                output = layer(output, memory_all, memory_keys, (cos, sin), (k_cos, k_sin), None)
            g = image_embed.shape[2]
            return attention.norm(output).transpose(1, 2).reshape(objects, self.d_model, g, g)

    return DynamicMemoryAttention(model).eval()


def check_dynamic_matches_stock(model, content: dict[str, np.ndarray], memories: int = 4, pointers: int = 4) -> float:
    """The dynamic wrapper must compute what MemoryAttentionGraph computes (PyTorch, same valid content)."""
    import torch

    from streamsam.export.graphs.memory_attention import MemoryAttentionGraph

    exact = exact_inputs(content, memories, pointers)
    slotted = slotted_inputs(content, memories, pointers, 8, 17)
    _, contract = masked_contract(model, 2)
    with torch.no_grad():
        stock = MemoryAttentionGraph(model).eval()(*(torch.from_numpy(slotted[n]) for n in contract.input_names))
        ours = dynamic_wrapper(model)(*(torch.from_numpy(exact[n]) for n in DYNAMIC_INPUTS))
    diff = float((stock - ours).abs().max())
    if diff > 1e-4:
        raise AssertionError(f"dynamic wrapper | differs from MemoryAttentionGraph by {diff:.3g}; expected <= 1e-4 (has the graph changed?)")
    return diff


def masked_contract(model, max_prompted_frames: int):
    from streamsam.contracts import MEMORY_ATTENTION, graph_contracts
    from streamsam.export.onnx_export import model_dims

    dims = model_dims(model.config, max_prompted_frames)
    return dims, graph_contracts(dims)[MEMORY_ATTENTION]


def export_masked(model, max_prompted_frames: int, path: Path) -> float:
    """The production export path (export_graph) of MemoryAttentionGraph; returns seconds."""
    from streamsam.export.graphs.memory_attention import MemoryAttentionGraph
    from streamsam.export.onnx_export import example_inputs, export_graph

    dims, contract = masked_contract(model, max_prompted_frames)
    start = time.perf_counter()
    export_graph(MemoryAttentionGraph(model).eval(), contract, example_inputs(contract, dims, 2, 1), path, opset=17)
    return time.perf_counter() - start


DYNAMIC_INPUTS = ["image_embed", "memory", "memory_tpos", "obj_ptrs", "obj_ptr_tpos"]
DYNAMIC_AXES = {
    "memory": {0: "objects", 1: "memories"},
    "memory_tpos": {0: "objects", 1: "memories"},
    "obj_ptrs": {0: "objects", 1: "pointers"},
    "obj_ptr_tpos": {0: "objects", 1: "pointers"},
    "conditioned_embed": {0: "objects"},
}


def export_dynamic(wrapper, inputs: dict[str, np.ndarray], names: list[str], path: Path) -> float:
    """TorchScript export with the slot axes dynamic (traced with 3 memories and 5 pointers)."""
    import torch

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, tuple(torch.from_numpy(inputs[n]) for n in names), str(path), input_names=names,
            output_names=["conditioned_embed"], dynamic_axes={k: v for k, v in DYNAMIC_AXES.items() if k in names or k == "conditioned_embed"},
            opset_version=17, dynamo=False, do_constant_folding=True,
        )
    return time.perf_counter() - start


# ---------------------------------------------------------------- inputs


def valid_content(g: int, objects: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Steady-state content, valid memories first: 1 prompted (tpos 0) + 6 recent (tpos 1..6), 16 pointers."""
    rng = np.random.default_rng(seed)
    return {
        "image_embed": rng.normal(0, 1, (1, 256, g, g)).astype(np.float32),
        "memory": rng.normal(0, 1, (objects, 7, 64, g, g)).astype(np.float32),
        "memory_tpos": np.tile(np.arange(7, dtype=np.int32), (objects, 1)),
        "obj_ptrs": rng.normal(0, 1, (objects, 16, 256)).astype(np.float32),
        "obj_ptr_tpos": np.tile((np.arange(16, dtype=np.float32) - 15) / 15, (objects, 1)),
    }


def exact_inputs(content: dict[str, np.ndarray], memories: int, pointers: int) -> dict[str, np.ndarray]:
    """The first `memories` memories and last `pointers` pointers, no flags (dynamic form)."""
    return {
        "image_embed": content["image_embed"],
        "memory": np.ascontiguousarray(content["memory"][:, :memories]),
        "memory_tpos": np.ascontiguousarray(content["memory_tpos"][:, :memories]),
        "obj_ptrs": np.ascontiguousarray(content["obj_ptrs"][:, -pointers:]),
        "obj_ptr_tpos": np.ascontiguousarray(content["obj_ptr_tpos"][:, -pointers:]),
    }


def slotted_inputs(content: dict[str, np.ndarray], memories: int, pointers: int, memory_slots: int, pointer_slots: int) -> dict[str, np.ndarray]:
    """The same valid content in fixed-capacity slots with flags. With a spare prompted-frame slot
    (memory_slots 8) the prompted memory goes in slot 0, slot 1 is empty and recent frames follow,
    like the runtime's ring. Empty slots hold stale values (noise), which the flags must mask out."""
    exact = exact_inputs(content, memories, pointers)
    objects = exact["memory"].shape[0]
    g = exact["memory"].shape[-1]
    stale = np.random.default_rng(99)
    memory = stale.normal(0, 1, (objects, memory_slots, 64, g, g)).astype(np.float32)
    tpos = stale.integers(0, 7, (objects, memory_slots)).astype(np.int32)
    valid = np.zeros((objects, memory_slots), bool)
    spare = memory_slots - 7  # extra prompted-frame slots
    order = [0] + [1 + spare + i for i in range(memories - 1)]  # slot of each valid memory
    memory[:, order], tpos[:, order], valid[:, order] = exact["memory"], exact["memory_tpos"], True
    ptrs = stale.normal(0, 1, (objects, pointer_slots, 256)).astype(np.float32)
    ptr_tpos = stale.uniform(-1, 0, (objects, pointer_slots)).astype(np.float32)
    ptr_valid = np.zeros((objects, pointer_slots), bool)
    ptrs[:, :pointers], ptr_tpos[:, :pointers], ptr_valid[:, :pointers] = exact["obj_ptrs"], exact["obj_ptr_tpos"], True
    return {"image_embed": exact["image_embed"], "memory": memory, "memory_tpos": tpos, "memory_valid": valid,
            "obj_ptrs": ptrs, "obj_ptr_tpos": ptr_tpos, "obj_ptr_valid": ptr_valid,
            "row_frame": np.zeros(objects, np.int32)}  # one frame: every row reads it


def all_valid_inputs(content: dict[str, np.ndarray], memory_slots: int, pointer_slots: int) -> dict[str, np.ndarray]:
    """Every slot valid (8 memories: 2 prompted + 6 recent; 17 pointers): the graph's worst case."""
    slotted = slotted_inputs(content, 7, 16, memory_slots, pointer_slots)
    slotted["memory"][:, 1] = content["memory"][:, 0] * 0.5
    slotted["memory_tpos"][:, 1] = 0  # a second prompted frame
    slotted["memory_valid"][:] = True
    slotted["obj_ptrs"][:, 16:] = content["obj_ptrs"][:, :1]
    slotted["obj_ptr_valid"][:] = True
    return slotted


# ---------------------------------------------------------------- ONNX Runtime side (child processes)


def make_session(path: str, options: dict):
    import onnxruntime as ort

    so = ort.SessionOptions()
    for key, value in options.items():
        setattr(so, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level" else value)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def profile_session(path: str, options: dict, cases: dict[str, dict[str, np.ndarray]]) -> dict:
    """In a fresh process: session creation time, one run of every case (its output), peak RSS."""
    start = time.perf_counter()
    session = make_session(path, options)
    out = {"session_s": time.perf_counter() - start, "outputs": {}}
    for name, inputs in cases.items():
        out["outputs"][name] = session.run(None, inputs)[0]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def time_interleaved(sessions: dict[str, tuple[str, dict]], cases: dict[str, dict[str, dict[str, np.ndarray]]], runs: int) -> dict:
    """In one process: every (session, case) gets a warm-up run, then `runs` rounds of one timed run
    each, round-robin, so that a change of machine load hits all forms alike."""
    live = {key: make_session(path, options) for key, (path, options) in sessions.items()}
    jobs = [(key, case) for key in live for case in cases[key]]
    times: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
    cpu: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
    loads = []
    for key, case in jobs:
        live[key].run(None, cases[key][case])
    for _ in range(runs):
        for key, case in jobs:
            time.sleep(0.02)  # let the previous session's spinning threads park
            start, start_cpu = time.perf_counter(), time.process_time()
            live[key].run(None, cases[key][case])
            times[(key, case)].append(time.perf_counter() - start)
            cpu[(key, case)].append(time.process_time() - start_cpu)  # all threads; less sensitive to other jobs
        loads.append(os.getloadavg()[0])
    return {"times": times, "cpu": cpu, "loadavg_1min": loads}


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


# ---------------------------------------------------------------- the measurement


def measure_size(image_size: int, objects: int, runs: int, option_names: list[str], work: Path) -> dict:
    """Export the three forms at this size, profile each session alone, time them interleaved."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    g = image_size // 16
    model = build_tiny(image_size)
    content = valid_content(g, objects)
    torch_diff = check_dynamic_matches_stock(model, content)
    dims2, _ = masked_contract(model, 2)
    dims1, _ = masked_contract(model, 1)
    files = {"masked_mpf2": work / f"masked_mpf2_{image_size}.onnx", "masked_mpf1": work / f"masked_mpf1_{image_size}.onnx",
             "dynamic": work / f"dynamic_{image_size}.onnx"}
    export_s = {
        "masked_mpf2": export_masked(model, 2, files["masked_mpf2"]),
        "masked_mpf1": export_masked(model, 1, files["masked_mpf1"]),
    }
    trace_content = valid_content(g, 2, seed=1)
    export_s["dynamic"] = export_dynamic(dynamic_wrapper(model), exact_inputs(trace_content, 3, 5), DYNAMIC_INPUTS, files["dynamic"])
    del model

    # Every case is run once for the output comparison; latency is timed on the cases in TIMED.
    cases = {
        "masked_mpf2": {
            "all 8+17 valid": all_valid_inputs(content, dims2.memory_slots, dims2.pointer_slots),
            **{f"{m}+{p} valid": slotted_inputs(content, m, p, dims2.memory_slots, dims2.pointer_slots) for m, p in FILL_LEVELS.items()},
        },
        "masked_mpf1": {f"{m}+{p} valid": slotted_inputs(content, m, p, dims1.memory_slots, dims1.pointer_slots) for m, p in FILL_LEVELS.items()},
        "dynamic": {f"{m}+{p} exact": exact_inputs(content, m, p) for m, p in FILL_LEVELS.items()},
    }
    timed = {"masked_mpf2": ["all 8+17 valid", "7+16 valid"], "masked_mpf1": ["7+16 valid"], "dynamic": list(cases["dynamic"])}

    results: dict = {"image_size": image_size, "objects": objects, "runs": runs, "export_s": export_s,
                     "torch_dynamic_vs_stock_max_abs": torch_diff,
                     "file_bytes": {k: v.stat().st_size for k, v in files.items()}, "sessions": {}}
    outputs: dict[str, np.ndarray] = {}
    sessions, timed_cases = {}, {}
    for form, path in files.items():
        for option in option_names:
            key = f"{form} [{option}]"
            print(f"  {image_size} objects={objects}: profiling {key}", flush=True)
            profile = in_fresh_process(profile_session, str(path), SESSION_OPTIONS[option], cases[form])
            for case, output in profile.pop("outputs").items():
                outputs.setdefault(f"{form}: {case}", output)
            results["sessions"][key] = {**profile, "cases": {}}
            sessions[key] = (str(path), SESSION_OPTIONS[option])
            timed_cases[key] = {case: cases[form][case] for case in timed[form]}
    print(f"  {image_size} objects={objects}: timing {len(sessions)} sessions interleaved, {runs} rounds", flush=True)
    timing = in_fresh_process(time_interleaved, sessions, timed_cases, runs)
    for (key, case), times in timing["times"].items():
        t = np.array(times)
        cpu = timing["cpu"][(key, case)]
        results["sessions"][key]["cases"][case] = {"times_s": times, "min_s": float(t.min()), "median_s": float(np.median(t)),
                                                         "p90_s": float(np.percentile(t, 90)), "cpu_s": cpu, "median_cpu_s": float(np.median(cpu))}
    results["loadavg_1min_per_round"] = timing["loadavg_1min"]
    results["agreement"] = agreement(outputs)
    return results


def agreement(outputs: dict[str, np.ndarray]) -> dict[str, float]:
    """Max abs difference between forms on the same valid content (1, 4 and 7 memories)."""
    out = {}
    for m, p in FILL_LEVELS.items():
        ref = outputs.get(f"dynamic: {m}+{p} exact")
        for form in ("masked_mpf2", "masked_mpf1"):
            other = outputs.get(f"{form}: {m}+{p} valid")
            if ref is not None and other is not None:
                out[f"{form} vs dynamic, {m}+{p}"] = float(np.abs(ref - other).max())
    return out


def stock_graph_bakes_counts(work: Path) -> str:
    """Export the stock MemoryAttentionGraph with dynamic slot axes and run it with another count."""
    import onnxruntime as ort
    import torch

    from streamsam.export.graphs.memory_attention import MemoryAttentionGraph
    from streamsam.export.onnx_export import example_inputs

    model = build_tiny(256)
    dims, contract = masked_contract(model, 2)
    inputs = example_inputs(contract, dims, 2, 1)
    axes = {"memory": {1: "m"}, "memory_tpos": {1: "m"}, "memory_valid": {1: "m"}, "obj_ptrs": {1: "p"}, "obj_ptr_tpos": {1: "p"}, "obj_ptr_valid": {1: "p"}}
    path = work / "stock_dynamic_256.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(MemoryAttentionGraph(model).eval(), tuple(torch.from_numpy(inputs[n]) for n in contract.input_names), str(path),
                          input_names=contract.input_names, output_names=contract.output_names, dynamic_axes=axes, opset_version=17, dynamo=False)
    fewer = {k: (v[:, :4] if k in axes else v) for k, v in inputs.items()}
    quiet = ort.SessionOptions()
    quiet.log_severity_level = 4
    try:
        ort.InferenceSession(str(path), quiet, providers=["CPUExecutionProvider"]).run(None, fewer)
    except Exception as exc:
        return f"fails with 4 memories / 4 pointers after tracing with 8 / 17: {type(exc).__name__}: ...{str(exc).splitlines()[0][-260:]}"
    return "runs with 4 memories / 4 pointers after tracing with 8 / 17 (counts not baked in)"


# ---------------------------------------------------------------- report


def environment(argv: list[str]) -> dict:
    import onnxruntime
    import torch

    return {"command": "python -m benchmarks.memory_attention_forms " + " ".join(argv), "cpu": machine_id(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
            "loadavg_start": os.getloadavg()}


def summary(sizes: list[dict]) -> list[str]:
    """Default session options, every form against the exported graph (masked_mpf2) at 7+16."""
    out = ["## Summary (default session options; ratio = median CPU time / masked_mpf2 at 7+16 of the same size)", "",
           "| image, objects | masked_mpf2 8+17 | masked_mpf2 7+16 | masked_mpf1 7+16 | dynamic 7+16 | dynamic 4+4 | dynamic 1+1 |",
           "|---|---|---|---|---|---|---|"]
    picks = [("masked_mpf2", "all 8+17 valid"), ("masked_mpf2", "7+16 valid"), ("masked_mpf1", "7+16 valid"),
             ("dynamic", "7+16 exact"), ("dynamic", "4+4 exact"), ("dynamic", "1+1 exact")]
    for s in sizes:
        cases = {form: s["sessions"][f"{form} [default]"]["cases"] for form in ("masked_mpf2", "masked_mpf1", "dynamic")}
        ref = cases["masked_mpf2"]["7+16 valid"]["median_cpu_s"]
        cells = [f"{cases[f][c]['median_cpu_s'] * 1e3:.0f} ms ({cases[f][c]['median_cpu_s'] / ref:.2f})" for f, c in picks]
        out.append(f"| {s['image_size']}, {s['objects']} | " + " | ".join(cells) + " |")
    return out + [""]


def markdown(env: dict, sizes: list[dict], stock: str) -> str:
    ms = lambda s: f"{s * 1e3:.0f}"  # noqa: E731
    out = [
        "# memory_attention on ONNX Runtime CPU: masked fixed-capacity slots vs exact (dynamic) memory counts",
        "",
        f"Command: `{env['command']}`  ",
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['versions']['torch']}, onnxruntime {env['versions']['onnxruntime']}, "
        f"Python {env['python']}. Load average (1/5/15 min) at start: {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}; wall time {env['wall_s']:.0f} s.",
        "",
        f"{CONFIG}, seeded random weights, FP32, opset 17, CPUExecutionProvider. Forms: `masked_mpf2` = the exported graph "
        "(8 memory + 17 pointer slots, validity flags -> key bias); `masked_mpf1` = same with max_prompted_frames=1 (7 + 16 slots); "
        "`dynamic` = slot axes dynamic, no flags, run with exactly the valid memories. Cases `M+P`: M memories (1 prompted + M-1 recent), "
        "P pointers. Session creation time and peak RSS: each session alone in a fresh process (creation + one run of each case); "
        "latency (wall) and CPU time (all threads of the process, so less sensitive to other jobs; about cores x wall when alone): all sessions of one size live in one process, each timed case gets a warm-up run, then the timed runs go round-robin over the cases (so load changes hit all forms alike). Session options: default = ORT_ENABLE_ALL and ORT's default threads; "
        "extended = ORT_ENABLE_EXTENDED; threads2 = intra_op_num_threads=2.",
        "",
        f"Stock `MemoryAttentionGraph` exported with dynamic slot axes (256, TorchScript exporter): {stock}.",
        "",
        *summary(sizes),
    ]
    for s in sizes:
        out += [f"## image {s['image_size']} (grid {s['image_size'] // 16}), objects {s['objects']}, {s['runs']} timed runs", ""]
        out += ["| form [options] | case | median ms | p90 ms | min ms | median CPU ms | session s | peak RSS MB | ONNX MB |", "|---|---|---|---|---|---|---|---|---|"]
        for key, sess in s["sessions"].items():
            form = key.split(" ")[0]
            for case, r in sess["cases"].items():
                out.append(f"| {key} | {case} | {ms(r['median_s'])} | {ms(r['p90_s'])} | {ms(r['min_s'])} | {ms(r['median_cpu_s'])} | {sess['session_s']:.2f} | {sess['peak_rss_mb']:.0f} | "
                           f"{s['file_bytes'][form] / 1e6:.1f} |")
        loads = s["loadavg_1min_per_round"]
        out += ["", f"1-min load average over the timing rounds: {min(loads):.2f} to {max(loads):.2f}."]
        out += ["", "Outputs, same valid content (max abs diff, ONNX Runtime): " + "; ".join(f"{k}: {v:.1e}" for k, v in s["agreement"].items())
                + f". PyTorch, dynamic wrapper vs MemoryAttentionGraph at 4+4: {s['torch_dynamic_vs_stock_max_abs']:.1e}.",
                "Export s: " + ", ".join(f"{k} {v:.1f}" for k, v in s["export_s"].items()) + ".", ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case at sizes below 1024")
    parser.add_argument("--runs-1024", type=int, default=7, help="timed runs per case at 1024 and above")
    parser.add_argument("--options", nargs="+", default=list(SESSION_OPTIONS), choices=list(SESSION_OPTIONS))
    parser.add_argument("--options-1024", nargs="+", default=["default"], choices=list(SESSION_OPTIONS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--tag", default="")
    parser.add_argument("--report-only", type=Path, help="rewrite the markdown from this results JSON; measure nothing")
    args = parser.parse_args(argv)
    if args.report_only:
        saved = json.loads(args.report_only.read_text())
        args.report_only.with_suffix(".md").write_text(markdown(saved["environment"], saved["results"], saved["stock_dynamic_export"]))
        return

    env = environment(argv)
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="ma_forms-", dir=args.scratch))
    stock = stock_graph_bakes_counts(work)
    print(f"stock graph with dynamic axes: {stock}", flush=True)
    sizes = []
    for size in args.image_sizes:
        big = size >= 1024
        runs, options = (args.runs_1024, args.options_1024) if big else (args.runs, args.options)
        for objects in ([1] if big else [1, 2]):
            sizes.append(measure_size(size, objects, runs, options, work))
    env["wall_s"] = time.perf_counter() - start
    shutil.rmtree(work, ignore_errors=True)

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"memory_attention_forms{args.tag}_cpu-{env['cpu']}"
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "stock_dynamic_export": stock, "results": sizes}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, sizes, stock))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
