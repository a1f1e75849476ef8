"""The side-by-side benchmark's results: JSON (everything measured), a markdown summary and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .ours import FULL_FILL, percentiles

GRAPHS = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
# Memory growth is measured from here: by frame 16 every ring of the bank is full (6 recent memories,
# 15 recent pointers), and the memory attention's inputs, now only the filled slots, stop growing.
WARM_UP_FRAMES = 20


def steady(records: list[dict], key=lambda r: r["ms"]) -> list[float]:
    """Values of the frames at full memory (fill 7): the steady state of a stream."""
    return [key(r) for r in records if r.get("fill", FULL_FILL) >= FULL_FILL and r["index"] >= FULL_FILL]


def official_frames(peer: dict) -> list[dict]:
    """The official run's frames, tagged with the fill level ours uses (prompted frame 0)."""
    return [dict(f, fill=min(f["index"], FULL_FILL)) for f in peer["frames"]]


def ratio(theirs: float | None, ours: float | None) -> str:
    return f"{theirs / ours:.2f}x" if theirs and ours else "-"


def growth_kb_per_frame(records: list[dict], skip: int = WARM_UP_FRAMES) -> float:
    """Slope of RSS over the frames after the first `skip` (the bank and the allocator warming up), KB per frame."""
    rows = records[skip:]
    if len(rows) < 2:
        return float("nan")
    x = np.array([r["index"] for r in rows], float)
    y = np.array([r["rss_mb"] for r in rows], float)
    return float(np.polyfit(x, y, 1)[0] * 1e3)


def per_frame_table(data: dict) -> list[str]:
    ours, official = data["ours"]["tracking"], data["peers"].get("official", {})
    fills = list(range(1, FULL_FILL + 1))
    lines = ["| objects | runtime | " + " | ".join(f"fill {f}" for f in fills) + " | steady p50 | steady p90 | official / ours |",
             "|---|---|" + "---|" * (len(fills) + 3)]
    for objects, records in ours.items():
        rows = [("ours", records)]
        if str(objects) in official or objects in official:
            rows.append(("official", official_frames(official.get(str(objects), official.get(objects)))))
        p50 = {}
        for name, recs in rows:
            by_fill = {f: np.median([r["ms"] for r in recs if r["fill"] == f and r["index"] > 0]) for f in fills}
            values = steady(recs)
            p50[name] = float(np.median(values)) if values else None
            cells = " | ".join(f"{by_fill[f]:.0f}" for f in fills)
            tail = ratio(p50.get("official"), p50.get("ours")) if name == "official" else ""
            lines.append(f"| {objects} | {name} | {cells} | {p50[name]:.0f} | {np.percentile(values, 90):.0f} | {tail} |")
    return lines


def effective_peak(machine: dict) -> float:
    """FP32 GFLOP/s the fractions are taken of: ONNX Runtime's measured GEMM rate (what our graphs'
    matrix work can reach). Results from before it was measured: the higher of the nominal peak and
    torch's SGEMM rate."""
    if machine.get("gemm_gflops"):
        return machine["gemm_gflops"]
    return max(machine["peak"].get("gflops") or 0.0, machine["sgemm_gflops"])


def repeat_lines(data: dict) -> list[str]:
    """A/B/A: ours' steady state before and after the peers ran, and how far apart."""
    again = data["ours"].get("again")
    if not again:
        return ["Ours was timed once (no A/B/A repeat)."]
    lines = ["A/B/A: ours timed before and after the official side; steady p50 ms per frame, first / second run (spread):"]
    for objects, records in data["ours"]["tracking"].items():
        second = again["tracking"].get(objects, again["tracking"].get(str(objects)))
        a, b = float(np.median(steady(records))), float(np.median(steady(second)))
        lines.append(f"- {objects} object(s): {a:.0f} / {b:.0f} ({100 * abs(a - b) / min(a, b):.1f} %)")
    return lines


def machine_line(data: dict) -> str:
    s, m = data["settings"], data["machine"]
    peak = m["peak"]
    line = f"Machine: {m['cpu']}, {m['cores']} cores, {s['threads']} thread(s) per side. "
    nominal = f"Nominal FP32 peak {peak.get('gflops') or float('nan'):.0f} GFLOP/s ({peak.get('why')})"
    if m.get("gemm_gflops"):
        line += (f"Ceiling: ONNX Runtime's measured FP32 GEMM, {m['gemm_gflops']:.0f} GFLOP/s (2048^3). {nominal}; "
                 f"torch SGEMM {m['sgemm_gflops']:.0f} GFLOP/s. ")
    else:  # results from before ONNX Runtime's rate was measured
        line += f"{nominal}, torch SGEMM {m['sgemm_gflops']:.0f} GFLOP/s; fractions below are of the higher, {effective_peak(m):.0f}. "
    loads = m.get("load_average")
    if loads:
        line += "Load average (1 min): " + ", ".join(f"{k.replace('_', ' ')} {v[0]:.2f}" for k, v in loads.items()) + "."
    else:
        line += f"Load average {m['load_average_end'][0]:.1f} at the end."
    if m.get("busy"):
        line += " **The machine was busy when the run started (--allow-busy): these figures are a share of it.**"
    return line + "  "


def per_graph_table(data: dict) -> list[str]:
    ours = data["ours"]
    machine = data["machine"]
    peak = effective_peak(machine)
    objects = min(int(k) for k in ours["tracking"])  # the fewest objects measured (1 by default)
    records = ours["tracking"].get(objects) or ours["tracking"].get(str(objects))
    official = data["peers"].get("official", {})
    theirs = official.get(objects) or official.get(str(objects))
    official_records = official_frames(theirs) if theirs else []
    official_flops = data["peers"].get("official_flops", {}).get("flops", {})
    lines = ["| graph | ours p50 ms | p90 | p99 | official mean ms | official / ours | ours GFLOP (one call) | official GFLOP | ours GFLOP/s | of the ceiling |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for graph in GRAPHS:
        values = steady(records, key=lambda r, g=graph: r["graphs_ms"].get(g, 0.0))
        stats = percentiles(values)
        # the official stage timers are named after our graphs (benchmarks/official_side.py)
        theirs = steady(official_records, key=lambda r, g=graph: r["stages_ms"].get(g, 0.0)) if official_records else []
        theirs_ms = float(np.mean(theirs)) if theirs else None
        per_object = 1 if graph == "image_encoder" else objects  # FLOPs were counted for one object
        flops = ours["flops"][graph] * per_object
        rate = flops / (stats["p50"] / 1e3) / 1e9
        their_flops = official_flops.get(graph, 0) * per_object
        lines.append(
            f"| {graph} | {stats['p50']:.1f} | {stats['p90']:.1f} | {stats['p99']:.1f} | "
            f"{theirs_ms:.1f} | {ratio(theirs_ms, stats['p50'])} | {flops / 1e9:.2f} | "
            f"{their_flops / 1e9 if their_flops else float('nan'):.2f} | {rate:.1f} | {100 * rate / peak:.0f} % |"
            if theirs_ms is not None else
            f"| {graph} | {stats['p50']:.1f} | {stats['p90']:.1f} | {stats['p99']:.1f} | - | - | {flops / 1e9:.2f} | - | {rate:.1f} | "
            f"{100 * rate / peak:.0f} % |"
        )
    frame_flops = sum(v * (1 if g == "image_encoder" else objects) for g, v in ours["flops"].items())
    frame_ms = float(np.median(steady(records)))
    rate = frame_flops / (frame_ms / 1e3) / 1e9
    outside = percentiles(steady(records, key=lambda r: r["ms"] - sum(r["graphs_ms"].values())))
    lines.append(f"| outside the graph calls (resize, normalise, bank, masks) | {outside['p50']:.1f} | {outside['p90']:.1f} | "
                 f"{outside['p99']:.1f} | | | | | | {100 * outside['p50'] / frame_ms:.1f} % of the frame |")
    lines.append(f"| **frame** ({objects} object(s), steady) | {frame_ms:.1f} | | | | | {frame_flops / 1e9:.2f} | | {rate:.1f} | {100 * rate / peak:.0f} % |")
    return lines


def image_mode_table(data: dict) -> list[str]:
    ours = data["ours"]["image_mode"]
    enc, dec = percentiles(ours["set_image"]), percentiles(ours["predict"])
    total = enc["p50"] + dec["p50"]
    lines = ["| model | encoder p50 ms | decoder p50 ms | total ms | its time / ours |", "|---|---|---|---|---|",
             f"| ours ({data['settings']['config']}) | {enc['p50']:.0f} | {dec['p50']:.1f} | {total:.0f} | 1.00x |"]
    names = {"sam2_image": f"official SAM 2 ({data['settings']['config']})", "sam_vit_b": "SAM ViT-B", "sam_vit_h": "SAM ViT-H"}
    for key, name in names.items():
        peer = data["peers"].get(key)
        if peer:
            e, d = peer["ms"]["encoder"]["p50"], peer["ms"]["decoder"]["p50"]
            lines.append(f"| {name} | {e:.0f} | {d:.1f} | {e + d:.0f} | {ratio(e + d, total)} |")
    return lines


def memory_lines(data: dict) -> list[str]:
    ours = data["ours"]["stream"]
    warm = min(WARM_UP_FRAMES, len(ours) - 1)
    lines = [f"- ours (StreamTracker, frames arriving one at a time): RSS {ours[warm]['rss_mb']:.0f} MB after frame "
             f"{warm}, {ours[-1]['rss_mb']:.0f} MB after frame {len(ours) - 1}; slope "
             f"{growth_kb_per_frame(ours):+.1f} KB per frame; peak {max(r['rss_mb'] for r in ours):.0f} MB (sampled after each frame)"]
    official = data["peers"].get("official", {}).get("stream")
    if official:
        frames = official["frames"]
        warm = min(WARM_UP_FRAMES, len(frames) - 1)
        lines.append(
            f"- official (SAM2VideoPredictor, init_state on the {len(frames)}-frame JPEG folder): RSS {official.get('rss_mb_after_init_state', float('nan')):.0f} MB "
            f"after init_state (it loads and resizes every frame first), {frames[warm]['rss_mb']:.0f} MB after frame "
            f"{warm}, {frames[-1]['rss_mb']:.0f} MB after frame {len(frames) - 1}; slope "
            f"{growth_kb_per_frame(frames):+.1f} KB per frame; peak {official.get('peak_rss_mb', float('nan')):.0f} MB")
    return lines


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    series = [("ours", data["ours"]["stream"])]
    official = data["peers"].get("official", {}).get("stream")
    if official:
        series.append(("official sam2", official["frames"]))
    for name, records in series:
        a.plot([r["index"] for r in records], [r["ms"] for r in records], lw=0.8, label=name)
        b.plot([r["index"] for r in records], [r["rss_mb"] for r in records], label=name)
    a.set_ylabel("ms per frame")
    a.set_yscale("log")
    b.set_ylabel("resident memory (MB)")
    b.set_xlabel("frame")
    a.legend()
    s = data["settings"]
    fig.suptitle(f"{s['config']} at {s['image_size']}, 1 object, {s['threads']} thread(s), {data['machine']['cpu']}")
    fig.savefig(path, dpi=100)


def write_report(data: dict, stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.json").write_text(json.dumps(data, indent=1, default=float))
    s, m = data["settings"], data["machine"]
    lines = [
        f"# {s['config']} at {s['image_size']}: ours against the official predictor and SAM ({m['cpu']}, {s['threads']} thread(s))", "",
        f"Command: `{data['command']}`  ",
        machine_line(data),
        f"Versions: {', '.join(f'{k} {v}' for k, v in data['versions'].items())}. Ours: ONNX Runtime CPU (FP32). "
        "Official: sam2 SAM2VideoPredictor, PyTorch FP32 on the CPU.", "",
        "## Milliseconds per frame, by memory fill level (frames after a click on frame 0)", "",
        "Median of the frames at each fill level; steady = frames at 7 memories. On the CPU our memory attention "
        "is passed only the filled slots (TensorRT engines keep them fixed), so, like the official one's, its cost grows with fill.", "",
        *per_frame_table(data), "",
        *repeat_lines(data), "",
        f"## Per graph ({min(int(k) for k in data['ours']['tracking'])} object(s), steady state)", "",
        "Ours: ONNX Runtime call time (p50 / p90 / p99), all objects in one call. Official: mean time per frame of "
        "its methods at our graphs' boundaries (forward_image, _prepare_memory_conditioned_features, _forward_sam_heads, "
        "_encode_new_memory; one object at a time, summed). GFLOP: matrix products, "
        "convolutions and attention, torch.utils.flop_counter, for all objects of the call; ours at the steady state's filled slots.", "",
        *per_graph_table(data), "",
        "## Image mode (encoder, then one click with three masks)", "",
        *image_mode_table(data), "",
        f"## Memory along a {s['stream_frames']}-frame stream (1 object)", "",
        *memory_lines(data), "",
        "## Export and engine build", "",
        f"- export of the four graphs (onnx.checker and the ONNX Runtime check included): {data['ours']['export_s']:.1f} s",
        "- TensorRT engine build: not run (TensorRT cannot be installed on this machine; docs/design.md, Engines)", "",
    ]
    Path(f"{stem}.md").write_text("\n".join(lines))
    try:
        plot(data, Path(f"{stem}.png"))
    except ImportError:
        print("matplotlib not installed: no plot")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    """Re-render the markdown and the plot of a results JSON: python -m benchmarks.side_by_side_report FILE.json"""
    import sys

    for name in argv if argv is not None else sys.argv[1:]:
        path = Path(name)
        write_report(json.loads(path.read_text()), path.with_name(path.name.removesuffix(".json")))


if __name__ == "__main__":
    main()
