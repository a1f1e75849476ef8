"""`streamsam demo`: the bundled demo model tracks the objects of the bundled clip, on the CPU.

The model (demo_model/, about 9 MB) is a small SAM 2.1 trained here on generated videos
(training/); the clip is a held-out generated video with its true masks, so the demo can say how
well it tracked as well as show it. Nothing is downloaded and torch is not needed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from .errors import StreamSamError

DEMO_MODEL = Path(__file__).resolve().parent / "demo_model"


def demo_clip(model_dir: Path = DEMO_MODEL) -> tuple[Path, dict, np.ndarray]:
    """The clip packaged with a demo model (default: the bundled one): its path, its description
    (clicks, fps, seed) and true masks [T, K, H, W]."""
    description = model_dir / "clip.json"
    if not description.is_file():
        raise StreamSamError(
            f"demo | received no {description}; expected a demo model and its clip. "
            "Reinstall streamsam for the bundled one, or write one with `python -m training.package_demo` (training/README.md)."
        )
    clip = json.loads(description.read_text())
    with np.load(model_dir / clip["masks"]) as data:
        shape = tuple(int(n) for n in data["shape"])
        masks = np.unpackbits(data["packed"], axis=-1, count=shape[-1]).astype(bool).reshape(shape)
    return model_dir / clip["video"], clip, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0  # both empty: right


def run_demo(args: argparse.Namespace) -> int:
    from . import StreamTracker
    from .backend import open_backend
    from .overlay import draw_result
    from .sources import FrameSource
    from .progress import Progress
    from .writers import VideoWriter

    model_dir = args.model or DEMO_MODEL
    video, clip, truth = demo_clip(model_dir)
    clicks = clip["clicks"]
    tracker = StreamTracker(open_backend(model_dir, args.precision, args.backend, threads=args.threads), max_objects=len(clicks))
    writer = VideoWriter(args.out, fps=clip["fps"])
    frames = min(truth.shape[0], args.max_frames or truth.shape[0])
    print(f"demo: {len(clicks)} objects clicked on frame 0 of a {truth.shape[0]}-frame generated clip "
          f"({truth.shape[3]}x{truth.shape[2]}); model {model_dir.name} (SAM 2.1 demo config, CPU)")
    seconds, scores = [], np.zeros((frames, len(clicks)))
    progress = Progress(frames, live=False)
    with FrameSource(str(video)) as source:
        for index, frame in source:
            if index >= frames:
                break
            start = time.perf_counter()
            result = tracker.track(frame)
            if index == 0:
                for click in clicks:
                    result = tracker.add_points(click["obj_id"], [click["point"]])
            masks = result.masks  # at the source's size: part of what a user pays per frame
            seconds.append(time.perf_counter() - start)
            scores[index] = [iou(m, t) for m, t in zip(masks, truth[index])]
            writer.write(draw_result(frame.copy(), result, fps=progress.fps()))
            progress.update(index + 1, 0)
    writer.close()
    progress.close()
    tracked = np.asarray(seconds[1:]) * 1e3  # frame 0 also runs the prompts
    print(f"{len(seconds)} frames: {np.median(tracked):.1f} ms per tracked frame (median; p90 {np.percentile(tracked, 90):.1f} ms), "
          f"{seconds[0] * 1e3:.0f} ms for the prompted frame 0")
    for k, click in enumerate(clicks):
        print(f"object {click['obj_id']}: mean IoU {scores[1:, k].mean():.3f} against the clip's true masks "
              f"(lowest {scores[1:, k].min():.3f})")
    print(f"overlay video written to {args.out}")
    return 0


def add_demo_command(commands) -> None:
    from .checks import positive_int
    from .track_command import add_precision_options

    demo = commands.add_parser("demo", help="track the objects of a bundled clip with the bundled demo model (CPU, no download)")
    demo.add_argument("--out", default="streamsam_demo.mp4", help="the overlay video to write (default streamsam_demo.mp4)")
    demo.add_argument("--max-frames", type=positive_int, default=None, help="stop after this many frames (>= 1)")
    demo.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime intra-op threads (default: all cores)")
    demo.add_argument("--model", type=Path, default=None,
                      help="a demo model folder written by `python -m training.package_demo --out DIR` (default: the bundled one)")
    add_precision_options(demo)
    demo.set_defaults(run=run_demo)
