"""Export every official SAM 2 / SAM 2.1 config from a random-weight checkpoint and time it.

    python -m benchmarks.export_models [--configs sam2.1_hiera_tiny ...] [--image-size 1024] [--no-check] [--out DIR]

For each config: write a checkpoint in the official format ({"model": state_dict}, seeded random
weights), load it back with `load_checkpoint` WITHOUT naming the config (and check that it is
recognised), export the four graphs with the ONNX Runtime parity check on, and record checkpoint
size, load time, per-graph export / check time, file size and max abs error (from the manifest),
and the peak RSS. Each config runs in its own process so that the peak RSS is that config's.
Writes export_models_cpu-<machine>.md and .json to --out (benchmarks/results by default).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

OFFICIAL = [f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("tiny", "small", "base_plus", "large")]
RESULTS = Path(__file__).resolve().parent / "results"
# export_model's progress line: "[i/4] name: X MB, exported in E s, ... (T s in all)"
PROGRESS = re.compile(r"\[\d/4\] (\w+): .* exported in ([\d.]+) s.*\(([\d.]+) s in all\)")


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo (e.g. 'AMD EPYC'), else the platform's."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # no /proc/cpuinfo (not Linux): keep the fallback name
        pass
    return name


def machine_id() -> str:
    """Short CPU name for result file names, e.g. 'amd-epyc'."""
    return re.sub(r"[^a-z0-9]+", "-", cpu_model_name().lower()).strip("-")


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Unlike ru_maxrss, it does not inherit the parent's
    RSS at fork, so a spawned worker reports its own peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: KiB on most systems


def write_random_checkpoint(config_name: str, path: Path) -> None:
    """An official-format checkpoint of seeded random weights for `config_name`."""
    import torch

    from streamsam.export.config import CONFIGS
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.random_weights import seeded_state_dict

    state = seeded_state_dict(Sam2Model.expected_shapes(CONFIGS[config_name]))
    torch.save({"model": state}, path)


def measure_config(config_name: str, image_size: int, check: bool, scratch: str) -> dict:
    """Checkpoint -> load (config recognised) -> export; runs in a fresh process."""
    import torch

    from streamsam.export.checkpoint import load_checkpoint
    from streamsam.export.onnx_export import ExportOptions, export_model

    torch.set_num_threads(os.cpu_count() or 1)
    work = Path(tempfile.mkdtemp(prefix=f"{config_name}-", dir=scratch))
    try:
        ckpt = work / f"{config_name}.pt"
        start = time.perf_counter()
        write_random_checkpoint(config_name, ckpt)
        write_s = time.perf_counter() - start

        start = time.perf_counter()
        model = load_checkpoint(ckpt, image_size=image_size)  # no config named: recognised from the weights
        load_s = time.perf_counter() - start
        if model.config.name != config_name:
            raise AssertionError(f"{ckpt} | recognised as {model.config.name}; expected {config_name}")

        lines: list[str] = []

        def progress(line: str) -> None:
            print(f"  {config_name}: {line}", flush=True)
            lines.append(line)

        start = time.perf_counter()
        manifest = export_model(model, work / "onnx", ExportOptions(check=check), progress=progress)
        export_total_s = time.perf_counter() - start

        graphs = {}
        for line in lines:
            match = PROGRESS.search(line)
            if match is None:
                raise ValueError(f"export progress line | received {line!r}; expected {PROGRESS.pattern}")
            name, exported, in_all = match.group(1), float(match.group(2)), float(match.group(3))
            entry = manifest.graphs[name]
            graphs[name] = {
                "export_s": exported,
                "check_s": round(in_all - exported, 1) if check else None,
                "size_bytes": entry.size_bytes,
                "max_abs_error": max(entry.max_abs_error.values()) if entry.max_abs_error else None,
                "max_abs_error_per_output": entry.max_abs_error,
            }
        return {
            "config": config_name,
            "recognised_as": model.config.name,
            "image_size": image_size,
            "checked_on_ort": check,
            "checkpoint_bytes": ckpt.stat().st_size,
            "checkpoint_write_s": round(write_s, 2),
            "load_s": round(load_s, 2),
            "export_total_s": round(export_total_s, 1),
            "onnx_total_bytes": sum(g["size_bytes"] for g in graphs.values()),
            "graphs": graphs,
            "peak_rss_mb": round(peak_rss_mb()),
            "loadavg_after": os.getloadavg(),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def environment() -> dict:
    import onnx
    import onnxruntime
    import torch

    import streamsam

    return {
        "command": "python -m " + " ".join(["benchmarks.export_models", *sys.argv[1:]]),
        "cpu": machine_id(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {"streamsam": streamsam.__version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "loadavg_start": os.getloadavg(),
    }


def markdown(env: dict, rows: list[dict]) -> str:
    mb = lambda b: f"{b / 1e6:.1f}"  # noqa: E731
    out = [
        "# Export of the official configs (random weights)",
        "",
        f"Command: `{env['command']}`  ",
        f"CPU: {env['cpu']} ({env['cpu_count']} cores), torch {env['versions']['torch']}, onnx {env['versions']['onnx']}, "
        f"onnxruntime {env['versions']['onnxruntime']}, Python {env['python']}.  ",
        f"Load average (1/5/15 min) at start: {', '.join(f'{x:.2f}' for x in env['loadavg_start'])}; "
        f"wall time {env['wall_s']:.0f} s.",
        "",
        "Checkpoint: `{\"model\": state_dict}` of seeded random weights, loaded with `load_checkpoint` "
        "without a config name (recognised config below). Export with `export_model` (opset 17, "
        "max_prompted_frames 2); check = onnx.checker + ONNX Runtime CPU vs PyTorch on the same inputs. "
        "Peak RSS of the process that wrote, loaded and exported that config.",
        "",
        "| config | recognised | image | ckpt MB | load s | total export s | ONNX MB | peak RSS MB | load avg (1 min) after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['config']} | {'yes' if r['recognised_as'] == r['config'] else r['recognised_as']} | {r['image_size']} | "
            f"{mb(r['checkpoint_bytes'])} | {r['load_s']:.1f} | {r['export_total_s']:.1f} | {mb(r['onnx_total_bytes'])} | "
            f"{r['peak_rss_mb']} | {r['loadavg_after'][0]:.2f} |"
        )
    out += ["", "Per graph (export s / check s / MB / max abs error ORT vs PyTorch, all outputs):", ""]
    out += ["| config | graph | export s | check s | MB | max abs error |", "|---|---|---|---|---|---|"]
    for r in rows:
        for name, g in r["graphs"].items():
            err = "not checked" if g["max_abs_error"] is None else f"{g['max_abs_error']:.2e}"
            check = "-" if g["check_s"] is None else f"{g['check_s']:.1f}"
            out.append(f"| {r['config']} | {name} | {g['export_s']:.1f} | {check} | {mb(g['size_bytes'])} | {err} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=OFFICIAL, choices=OFFICIAL)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--no-check", action="store_true", help="skip onnx.checker and the ONNX Runtime parity check")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="where checkpoints and graphs are written (deleted after)")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)

    env = environment()
    start = time.perf_counter()
    rows = []
    context = multiprocessing.get_context("spawn")
    for name in args.configs:
        print(f"{name} at {args.image_size}...", flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            row = pool.submit(measure_config, name, args.image_size, not args.no_check, args.scratch).result()
        print(f"  {name}: load {row['load_s']} s, export {row['export_total_s']} s, peak RSS {row['peak_rss_mb']} MB", flush=True)
        rows.append(row)
    env["wall_s"] = time.perf_counter() - start

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"export_models{args.tag}_cpu-{env['cpu']}"
    stem.with_suffix(".json").write_text(json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(env, rows))
    print(f"wrote {stem}.md and .json")


if __name__ == "__main__":
    main()
