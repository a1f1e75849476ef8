"""Our side of the side-by-side benchmark: the runtime on exported graphs, per graph, per frame,
per memory fill level and object count, the image mode, and resident memory along a stream.

Every measurement goes through the runtime users run (StreamTracker, ImagePredictor on a
Backend); `TimedBackend` only records how long each graph call took.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

PROMPTED_FRAME = 0
FULL_FILL = 7  # num_maskmem: the prompted frame's memory + 6 recent ones


class TimedBackend:
    """A backend whose graph calls are timed: `take()` returns and clears [(graph, seconds)]. It
    hands on what the pipeline reads of a backend (its arena, slot policy, profile limits), so it
    wraps a device backend too; there, the arena's stream is synchronized before and after each
    call, so a graph's time is its own (the device path otherwise queues graphs without waiting)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.manifest = backend.manifest
        for name in ("arena", "slot_policy", "max_objects", "max_points"):
            if hasattr(backend, name):
                setattr(self, name, getattr(backend, name))
        self.calls: list[tuple[str, float]] = []

    def run(self, graph, inputs, outputs) -> None:
        arena = getattr(self.backend, "arena", None)
        if arena is not None:
            arena.synchronize()
        start = time.perf_counter()
        self.backend.run(graph, inputs, outputs)
        if arena is not None:
            arena.synchronize()
        self.calls.append((graph, time.perf_counter() - start))

    def take(self) -> list[tuple[str, float]]:
        calls, self.calls = self.calls, []
        return calls


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class MovingSquares:
    """Square RGB frames: textured squares (a sixth of the side), one per object, moving slowly
    over a textured background. `frame(t)` draws frame t; `centers` are the objects' on frame 0."""

    def __init__(self, size: int, objects: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.size, self.side = size, size // 6
        self.background = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        self.textures = [rng.integers(130, 255, (self.side, self.side, 3), dtype=np.uint8) for _ in range(objects)]
        self.centers = [(x + self.side / 2, y + self.side / 2) for x, y in map(self._corner, [0] * objects, range(objects))]

    def _corner(self, t: int, k: int) -> tuple[int, int]:
        span = self.size - self.side  # each object on its own slow orbit, spread over the frame
        return int(span * (0.5 + 0.4 * np.sin(0.05 * t + 2.1 * k))), int(span * (0.5 + 0.4 * np.cos(0.04 * t + 1.3 * k)))

    def center(self, t: int, k: int) -> tuple[float, float]:
        """Object k's centre on frame t (where a click on that frame lands on it)."""
        x, y = self._corner(t, k)
        return x + self.side / 2, y + self.side / 2

    def frame(self, t: int) -> np.ndarray:
        out = self.background.copy()
        for k, texture in enumerate(self.textures):
            x, y = self._corner(t, k)
            out[y : y + self.side, x : x + self.side] = texture
        return out


def fill_level(frame_index: int) -> int:
    """Memories a frame attends to when the objects were clicked on frame 0 and tracked forward."""
    return min(frame_index - PROMPTED_FRAME, FULL_FILL)


def track(backend, frames: np.ndarray, centers, resize: str = "pil_bicubic") -> list[dict]:
    """StreamTracker over `frames`, one object clicked per centre on frame 0. Per frame: wall ms of
    track() plus the masks at the frame's size (what the official predictor yields), the graphs'
    ms, and RSS."""
    from streamsam import StreamTracker

    timed = TimedBackend(backend)
    tracker = StreamTracker(timed, max_objects=len(centers), resize=resize)
    records = []
    for index, frame in enumerate(frames):
        start = time.perf_counter()
        result = tracker.track(frame)
        if index == PROMPTED_FRAME:
            for obj_id, center in enumerate(centers, start=1):
                result = tracker.add_points(obj_id, [center])
        result.masks
        ms = (time.perf_counter() - start) * 1e3
        graphs: dict[str, float] = {}
        for graph, seconds in timed.take():
            graphs[graph] = graphs.get(graph, 0.0) + seconds * 1e3
        records.append({"index": index, "fill": fill_level(index), "ms": ms, "graphs_ms": graphs, "rss_mb": rss_mb()})
    return records


def stream_memory(backend, frames: int, size: int, resize: str = "pil_bicubic") -> list[dict]:
    """One object over a long stream, frames made on the fly (a live source holds one at a time)."""
    from streamsam import StreamTracker

    tracker = StreamTracker(backend, max_objects=1, resize=resize)
    scene = MovingSquares(size, 1)
    records = []
    for index in range(frames):
        frame = scene.frame(index)
        start = time.perf_counter()
        result = tracker.track(frame)
        if index == PROMPTED_FRAME:
            result = tracker.add_points(1, [scene.centers[0]])
        result.masks
        records.append({"index": index, "ms": (time.perf_counter() - start) * 1e3, "rss_mb": rss_mb()})
    return records


def image_mode(backend, frame: np.ndarray, point, repeats: int, warmup: int) -> dict[str, list[float]]:
    """SAM's image mode: set_image (image encoder) and predict (one click, multimask) in ms."""
    from streamsam import ImagePredictor

    predictor = ImagePredictor(backend)
    times: dict[str, list[float]] = {"set_image": [], "predict": []}
    for repeat in range(warmup + repeats):
        start = time.perf_counter()
        predictor.set_image(frame)
        encoded = time.perf_counter()
        predictor.predict(point_coords=[point], point_labels=[1], multimask_output=True)
        done = time.perf_counter()
        if repeat >= warmup:
            times["set_image"].append((encoded - start) * 1e3)
            times["predict"].append((done - encoded) * 1e3)
    return times


def percentiles(values) -> dict[str, float]:
    values = np.asarray(values, float)
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "mean": float(values.mean()), "n": int(values.size)}


def export_seeded_apart(config: str, image_size: int, out: Path) -> Path:
    """export_seeded in a fresh interpreter: torch and the exporter stay out of this process's memory."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from benchmarks.ours import export_seeded; "
                    "export_seeded(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))", config, str(image_size), str(out)],
                   check=True, cwd=Path(__file__).resolve().parent.parent)
    return out


def export_seeded(config: str, image_size: int, out: Path) -> tuple[dict, float, dict]:
    """Export `config` at `image_size` from seeded random weights; returns the official-format
    state dict, the export's seconds (onnx.checker and the ONNX Runtime check included), and the
    FLOPs per graph."""
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.onnx_export import export_model
    from streamsam.export.random_weights import seeded_state_dict

    from .flops import graph_flops

    model = Sam2Model(get_config(config, image_size))
    state = seeded_state_dict(model.state_dict())
    model.load_state_dict(state)
    start = time.perf_counter()
    manifest = export_model(model.eval(), out, progress=None)
    seconds = time.perf_counter() - start
    return state, seconds, graph_flops(model, manifest.dims)
