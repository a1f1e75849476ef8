"""Which form of the memory_attention graph is fastest on ONNX Runtime CPU? (DESIGN.md, "The four graphs")

    python -m benchmarks.memory_attention_forms [--image-sizes 512 1024] [--runs 5] [--runs-1024 3] [--out DIR]

Forms, all from sam2.1_hiera_tiny with seeded random weights:
  masked_mpf2  the exported graph (streamsam.contracts): 8 memory + 17 pointer slots with validity flags
  masked_mpf1  the same exported with max_prompted_frames=1: 7 + 16 slots, none wasted in steady state
  dynamic      memory and pointer slot axes dynamic in ONNX, no flags: run with exactly the valid
               memories (what one static TensorRT profile per fill level would compute)

Each (form, session options) runs in a fresh process (onnxruntime + numpy only), so its session
creation time and peak RSS are its own. Outputs are compared between forms on the same valid content.
Writes memory_attention_forms_cpu-<machine>.md and .json to --out (benchmarks/results by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.export_models import RESULTS, machine_id

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
            tpos = self.maskmem_tpos_enc.reshape(self.num_maskmem, mem)[(self.num_maskmem - 1 - memory_tpos).long()]
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
    (memory_slots 8) the prompted memory goes in slot 0, slot 1 stays empty and recent frames follow,
    like the runtime's ring; empty slots hold zeros. memory_slots == memories + empty slots at the end."""
    exact = exact_inputs(content, memories, pointers)
    objects = exact["memory"].shape[0]
    g = exact["memory"].shape[-1]
    memory = np.zeros((objects, memory_slots, 64, g, g), np.float32)
    tpos = np.zeros((objects, memory_slots), np.int32)
    valid = np.zeros((objects, memory_slots), bool)
    spare = memory_slots - 7  # extra prompted-frame slots
    order = [0] + [1 + spare + i for i in range(memories - 1)]  # slot of each valid memory
    memory[:, order], tpos[:, order], valid[:, order] = exact["memory"], exact["memory_tpos"], True
    ptrs = np.zeros((objects, pointer_slots, 256), np.float32)
    ptr_tpos = np.zeros((objects, pointer_slots), np.float32)
    ptr_valid = np.zeros((objects, pointer_slots), bool)
    ptrs[:, :pointers], ptr_tpos[:, :pointers], ptr_valid[:, :pointers] = exact["obj_ptrs"], exact["obj_ptr_tpos"], True
    return {"image_embed": exact["image_embed"], "memory": memory, "memory_tpos": tpos, "memory_valid": valid,
            "obj_ptrs": ptrs, "obj_ptr_tpos": ptr_tpos, "obj_ptr_valid": ptr_valid}


def all_valid_inputs(content: dict[str, np.ndarray], memory_slots: int, pointer_slots: int) -> dict[str, np.ndarray]:
    """Every slot valid (8 memories: 2 prompted + 6 recent; 17 pointers): the graph's worst case."""
    slotted = slotted_inputs(content, 7, 16, memory_slots, pointer_slots)
    slotted["memory"][:, 1] = content["memory"][:, 0] * 0.5
    slotted["memory_valid"][:] = True
    slotted["obj_ptrs"][:, 16:] = content["obj_ptrs"][:, :1]
    slotted["obj_ptr_valid"][:] = True
    return slotted


# ---------------------------------------------------------------- ONNX Runtime side (child process)


def time_session(path: str, options: dict, cases: dict[str, dict[str, np.ndarray]], runs: int) -> dict:
    """Create one session and time each case: 1 warm-up, then `runs` timed runs. Runs in a fresh process."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    for key, value in options.items():
        setattr(so, key, getattr(ort.GraphOptimizationLevel, value) if key == "graph_optimization_level" else value)
    start = time.perf_counter()
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    created_s = time.perf_counter() - start
    out = {"session_s": created_s, "cases": {}}
    for name, inputs in cases.items():
        try:
            output = session.run(None, inputs)[0]
        except Exception as exc:  # a baked-in slot count fails here
            out["cases"][name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            continue
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, inputs)
            times.append(time.perf_counter() - start)
        out["cases"][name] = {"times_s": times, "output": output, "loadavg": os.getloadavg()}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_isolated(path: Path, options: dict, cases: dict, runs: int) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(time_session, str(path), options, cases, runs).result()


# ---------------------------------------------------------------- the measurement


def measure_size(image_size: int, objects: int, runs: int, option_names: list[str], work: Path) -> dict:
    """Export the three forms at this size and time them under each session option."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    g = image_size // 16
    model = build_tiny(image_size)
    content = valid_content(g, objects)
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

    cases = {
        "masked_mpf2": {
            "all 8+17 valid": all_valid_inputs(content, dims2.memory_slots, dims2.pointer_slots),
            **{f"{m}+{p} valid": slotted_inputs(content, m, p, dims2.memory_slots, dims2.pointer_slots) for m, p in FILL_LEVELS.items()},
        },
        "masked_mpf1": {f"{m}+{p} valid": slotted_inputs(content, m, p, dims1.memory_slots, dims1.pointer_slots) for m, p in FILL_LEVELS.items()},
        "dynamic": {f"{m}+{p} exact": exact_inputs(content, m, p) for m, p in FILL_LEVELS.items()},
    }
    results: dict = {"image_size": image_size, "objects": objects, "runs": runs, "export_s": export_s,
                     "file_bytes": {k: v.stat().st_size for k, v in files.items()}, "sessions": {}}
    outputs: dict[str, np.ndarray] = {}
    for form, path in files.items():
        for option in option_names:
            print(f"  {image_size} objects={objects} {form} [{option}]", flush=True)
            got = run_isolated(path, SESSION_OPTIONS[option], cases[form], runs)
            for case, r in got["cases"].items():
                if "output" in r:
                    outputs.setdefault(f"{form}: {case}", r.pop("output"))
                    t = np.array(r["times_s"])
                    r.update(median_s=float(np.median(t)), p90_s=float(np.percentile(t, 90)))
            results["sessions"][f"{form} [{option}]"] = got
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
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, fewer)
    except Exception as exc:
        return f"fails with 4 memories / 4 pointers after tracing with 8 / 17: {type(exc).__name__}: {str(exc).splitlines()[0][:240]}"
    return "runs with 4 memories / 4 pointers after tracing with 8 / 17 (counts not baked in)"


# ---------------------------------------------------------------- report


def environment(argv: list[str]) -> dict:
    import onnxruntime
    import torch

    return {"command": "python -m benchmarks.memory_attention_forms " + " ".join(argv), "cpu": machine_id(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
            "loadavg_start": os.getloadavg()}


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
        "P pointers. Each row is one session in a fresh process (session creation and peak RSS are that process's); "
        "latency = 1 warm-up run then the timed runs. Session options: default = ORT_ENABLE_ALL and ORT's default threads; "
        "extended = ORT_ENABLE_EXTENDED; threads2 = intra_op_num_threads=2.",
        "",
        f"Stock `MemoryAttentionGraph` exported with dynamic slot axes (256, TorchScript exporter): {stock}.",
        "",
    ]
    for s in sizes:
        out += [f"## image {s['image_size']} (grid {s['image_size'] // 16}), objects {s['objects']}, {s['runs']} timed runs", ""]
        out += ["| form [options] | case | median ms | p90 ms | session s | peak RSS MB | ONNX MB | load avg (1 min) |", "|---|---|---|---|---|---|---|---|"]
        for key, sess in s["sessions"].items():
            form = key.split(" ")[0]
            for case, r in sess["cases"].items():
                if "error" in r:
                    out.append(f"| {key} | {case} | error: {r['error']} | | | | | |")
                    continue
                out.append(f"| {key} | {case} | {ms(r['median_s'])} | {ms(r['p90_s'])} | {sess['session_s']:.2f} | {sess['peak_rss_mb']:.0f} | "
                           f"{s['file_bytes'][form] / 1e6:.1f} | {r['loadavg'][0]:.2f} |")
        out += ["", "Outputs, same valid content (max abs diff): " + "; ".join(f"{k}: {v:.1e}" for k, v in s["agreement"].items()) + ".",
                "Export s: " + ", ".join(f"{k} {v:.1f}" for k, v in s["export_s"].items()) + ".", ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case at sizes below 1024")
    parser.add_argument("--runs-1024", type=int, default=5, help="timed runs per case at 1024 and above")
    parser.add_argument("--options", nargs="+", default=list(SESSION_OPTIONS), choices=list(SESSION_OPTIONS))
    parser.add_argument("--options-1024", nargs="+", default=["default"], choices=list(SESSION_OPTIONS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scratch", default=tempfile.gettempdir())
    parser.add_argument("--tag", default="")
    args = parser.parse_args(argv)

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

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"memory_attention_forms{args.tag}_cpu-{env['cpu']}"
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "stock_dynamic_export": stock, "results": sizes}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, sizes, stock))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
