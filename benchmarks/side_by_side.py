"""Ours against the official SAM 2 video predictor and SAM (ViT-B, ViT-H), in one run, on one
machine: per graph, per frame at each memory fill level and object count, the image mode, export
time and resident memory along a stream.

    python -m benchmarks side_by_side --config tiny --image-size 512 [--threads 1]

Both sides get the same seeded random weights (official key names), the same JPEG frames (square,
at the model's input size) and the same clicks. The peers run in their own virtual environment
(`--official-python`: torch, sam2 and segment-anything; tests/golden/README.md says how to make it)
through benchmarks/official_side.py. Writes benchmarks/results/side_by_side_<config>_<size>_<machine>
.{json,md,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .export_models import RESULTS, cpu_model_name, machine_id
from .flops import cpu_peak_gflops, measured_gemm_gflops, measured_sgemm_gflops
from .ours import FULL_FILL, MovingSquares, export_seeded, image_mode, stream_memory, track

OFFICIAL_SIDE = Path(__file__).resolve().parent / "official_side.py"
# A 1-minute load average above this before a run means something else is using the machine: the
# figures would be a share of it, not its speed (refused unless --allow-busy, and flagged then).
BUSY_LOAD = 0.75


def refuse_busy(allow_busy: bool) -> tuple[float, float, float]:
    """The load average at the start; exits when the machine is busy, unless allowed."""
    load = os.getloadavg()
    if load[0] > BUSY_LOAD and not allow_busy:
        sys.exit(f"load average {load[0]:.2f} > {BUSY_LOAD}: the machine is busy; time it alone (or --allow-busy)")
    return load

@dataclass(frozen=True)
class Settings:
    config: str = "sam2.1_hiera_tiny"
    image_size: int = 512
    threads: int = 1
    objects: tuple[int, ...] = (1, 2, 4)
    frames: int = 14  # per object count: the prompted frame, fill 1..7, then steady state at 7
    stream_frames: int = 300  # resident memory along a stream, one object
    image_repeats: int = 10
    warmup: int = 2
    peers: tuple[str, ...] = ("official", "sam2_image", "sam_vit_b", "sam_vit_h")
    official_python: str = "/work/venv-official/bin/python"
    repeat_ours: bool = True  # A/B/A: ours again after the peers, so drift shows as a spread

    @property
    def stem(self) -> str:
        """Results name: config, size, the object counts and threads when not the defaults, machine."""
        objects = "" if self.objects == Settings.objects else "_obj" + "-".join(map(str, self.objects))
        threads = "" if self.threads == Settings.threads else f"_t{self.threads}"
        return f"side_by_side_{self.config}_{self.image_size}{objects}{threads}_cpu-{machine_id()}"


def write_jpegs(frames: np.ndarray, folder: Path) -> np.ndarray:
    """The frames as the JPEG folder the official predictor reads; returns them decoded, so both
    sides see the same pixels."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    decoded = np.empty_like(frames)
    for t, frame in enumerate(frames):
        path = folder / f"{t:05d}.jpg"
        Image.fromarray(frame).save(path, quality=95)
        decoded[t] = np.asarray(Image.open(path).convert("RGB"))
    return decoded


def run_peer(settings: Settings, args: list[str], work: Path, name: str) -> dict:
    """benchmarks/official_side.py in the peers' environment, one thread as ours; its JSON."""
    out = work / f"{name}.json"
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads), TQDM_DISABLE="1")
    command = [settings.official_python, str(OFFICIAL_SIDE), *args, "--threads", str(settings.threads), "--out", str(out)]
    print(f"peer {name}: {' '.join(command[1:])}", flush=True)
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"peer {name} | exit {done.returncode}; stderr:\n{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def measure_ours(settings: Settings, work: Path) -> dict:
    """Export (here, with torch), then time the runtime in a fresh process that imports only
    streamsam and ONNX Runtime, as a deployment does: its resident memory is the runtime's."""
    print(f"ours: exporting {settings.config} at {settings.image_size}", flush=True)
    state, export_s, flops = export_seeded(settings.config, settings.image_size, work / "graphs")
    import torch

    torch.save({"model": state}, work / "weights.pt")
    del state
    videos = {}
    for key, objects, frames in [*((n, n, settings.frames) for n in settings.objects), ("stream", 1, settings.stream_frames)]:
        scene = MovingSquares(settings.image_size, objects)
        folder = work / f"frames_{key}"
        write_jpegs(np.stack([scene.frame(t) for t in range(frames)]), folder)
        prompts = {"frame": 0, "objects": [{"obj_id": k + 1, "points": [list(c)], "labels": [1]} for k, c in enumerate(scene.centers)]}
        (work / f"prompts_{key}.json").write_text(json.dumps(prompts))
        videos[key] = {"frames": str(folder), "prompts": str(work / f"prompts_{key}.json")}
    result = {"export_s": export_s, "flops": flops, "videos": videos}
    # The long stream gets a process of its own: its memory curve starts from a fresh runtime, not
    # from buffers that the 4-object runs grew.
    for task in (measure_runtime, measure_stream):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result.update(pool.submit(task, settings, work / "graphs", videos).result())
    return result


def measure_stream(settings: Settings, graphs: Path, videos: dict) -> dict:
    from streamsam import OnnxRuntimeBackend

    print(f"ours: {settings.stream_frames}-frame stream", flush=True)
    return {"stream": stream_memory(OnnxRuntimeBackend(graphs, threads=settings.threads), settings.stream_frames, settings.image_size)}


def measure_runtime(settings: Settings, graphs: Path, videos: dict, image: bool = True) -> dict:
    """StreamTracker per object count and the image mode, on the JPEG frames the official predictor
    reads (decoded here, before timing)."""
    from PIL import Image

    from streamsam import OnnxRuntimeBackend

    def frames_of(key):
        return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(Path(videos[key]["frames"]).iterdir())])

    def centers_of(key):
        return [tuple(o["points"][0]) for o in json.loads(Path(videos[key]["prompts"]).read_text())["objects"]]

    backend = OnnxRuntimeBackend(graphs, threads=settings.threads)
    result = {"tracking": {}}
    for objects in settings.objects:
        print(f"ours: {objects} object(s), {settings.frames} frames", flush=True)
        result["tracking"][objects] = track(backend, frames_of(objects), centers_of(objects))
    if image:
        print("ours: image mode", flush=True)
        first = settings.objects[0]  # image mode: the first object of the first video
        result["image_mode"] = image_mode(backend, frames_of(first)[0], centers_of(first)[0], settings.image_repeats, settings.warmup)
    return result


def measure_ours_again(settings: Settings, graphs: Path, videos: dict) -> dict:
    """The tracking runs once more, after the peers (A/B/A): how far ours moved over the run."""
    return measure_runtime(settings, graphs, videos, image=False)


def measure_peers(settings: Settings, work: Path, ours: dict) -> dict:
    peers: dict = {}
    common = ["--config", settings.config, "--image-size", str(settings.image_size)]
    if "official" in settings.peers:
        peers["official_flops"] = run_peer(settings, ["flops", *common], work, "official_flops")
        peers["official"] = {}
        for key, video in ours["videos"].items():
            peers["official"][key] = run_peer(
                settings, ["video", *common, "--weights", str(work / "weights.pt"), "--frames-dir", video["frames"],
                           "--prompts", video["prompts"]], work, f"official_{key}")
    if "sam2_image" in settings.peers:
        peers["sam2_image"] = run_peer(
            settings, ["sam2-image", *common, "--weights", str(work / "weights.pt"), "--repeats", str(settings.image_repeats),
                       "--warmup", str(settings.warmup)], work, "sam2_image")
    for model in ("vit_b", "vit_h"):
        if f"sam_{model}" in settings.peers:
            peers[f"sam_{model}"] = run_peer(
                settings, ["sam-image", "--model", model, "--image-size", str(settings.image_size),
                           "--repeats", str(settings.image_repeats), "--warmup", str(settings.warmup)], work, f"sam_{model}")
    return peers


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m benchmarks side_by_side", description=__doc__.split("\n\n")[0])
    defaults = Settings()
    p.add_argument("--config", default=defaults.config)
    p.add_argument("--image-size", type=int, default=defaults.image_size)
    p.add_argument("--threads", type=int, default=defaults.threads)
    p.add_argument("--objects", default=",".join(map(str, defaults.objects)))
    p.add_argument("--frames", type=int, default=defaults.frames)
    p.add_argument("--stream-frames", type=int, default=defaults.stream_frames)
    p.add_argument("--image-repeats", type=int, default=defaults.image_repeats)
    p.add_argument("--peers", default=",".join(defaults.peers), help="official,sam2_image,sam_vit_b,sam_vit_h or none")
    p.add_argument("--official-python", default=defaults.official_python)
    p.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    p.add_argument("--no-repeat-ours", action="store_true", help="skip timing ours again after the peers (A/B/A)")
    p.add_argument("--allow-busy", action="store_true", help=f"run although the 1-minute load average is above {BUSY_LOAD} (flagged in the report)")
    args = p.parse_args(argv)
    start_load = os.getloadavg()
    if start_load[0] > BUSY_LOAD and not args.allow_busy:
        p.error(f"load average | received {start_load[0]:.2f} (1 min); expected below {BUSY_LOAD}, an otherwise idle machine. "
                "Stop what else runs and wait a minute, or pass --allow-busy (the report flags it)")
    from streamsam.export.config import get_config

    settings = Settings(
        config=get_config(args.config).name, image_size=args.image_size, threads=args.threads,
        objects=tuple(int(n) for n in args.objects.split(",")), frames=args.frames, stream_frames=args.stream_frames,
        image_repeats=args.image_repeats, peers=tuple(x for x in args.peers.split(",") if x and x != "none"),
        official_python=args.official_python, repeat_ours=not args.no_repeat_ours,
    )
    if settings.frames <= FULL_FILL:
        p.error(f"--frames {settings.frames}: expected more than {FULL_FILL} (the fill levels, then steady state)")
    os.environ["OMP_NUM_THREADS"] = str(settings.threads)
    import torch

    torch.set_num_threads(settings.threads)
    began = time.perf_counter()
    loads = {"start": start_load}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = measure_ours(settings, work)
        loads["after_ours"] = os.getloadavg()
        peers = measure_peers(settings, work, ours)
        loads["after_peers"] = os.getloadavg()
        if settings.repeat_ours and settings.peers:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                ours["again"] = pool.submit(measure_ours_again, settings, work / "graphs", ours["videos"]).result()
            loads["after_ours_again"] = os.getloadavg()
    machine = {
        "cpu": cpu_model_name(), "cores": os.cpu_count(), "threads": settings.threads,
        "peak": cpu_peak_gflops(settings.threads), "gemm_gflops": measured_gemm_gflops(settings.threads),
        "sgemm_gflops": measured_sgemm_gflops(settings.threads), "load_average": loads,
        "busy": start_load[0] > BUSY_LOAD, "load_average_end": os.getloadavg(),
    }
    from .side_by_side_report import write_report

    data = {"settings": dataclasses.asdict(settings), "machine": machine, "ours": ours, "peers": peers,
            "command": "python -m benchmarks side_by_side " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seconds": time.perf_counter() - began, "versions": versions()}
    write_report(data, args.out / settings.stem)
    return data


def versions() -> dict:
    import onnxruntime
    import torch

    import streamsam

    return {"streamsam": streamsam.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
            "python": sys.version.split()[0]}


if __name__ == "__main__":
    main()
