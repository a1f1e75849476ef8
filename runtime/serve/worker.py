"""StreamWorker: one worker's group of streams, stepped together on one MultiStreamTracker.

A worker keeps nothing the driver cannot rebuild: every step returns each stepped stream's result
and its StreamState snapshot, and prompts travel with the step that applies them. So a worker lost
mid-step loses only that step's frames; a new worker resumes its streams from their last snapshots.

The class is plain Python (the driver turns it into a Ray actor with ray.remote), so it also runs in
process and in tests without Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError

PROMPT_KINDS = ("points", "box", "mask", "remove")


@dataclass(frozen=True)
class Prompt:
    """A prompt for one object of one stream, applied on the first frame the stream steps after it
    is given (as `streamsam track` prompts its first frame). kind "points": `points` [(x, y)] and
    `labels`; "box": `box` (x0, y0, x1, y1); "mask": `mask` (H x W); source pixels throughout;
    "remove": the object stops being tracked."""

    obj_id: int
    kind: str
    points: tuple = ()
    labels: tuple | None = None
    box: tuple | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROMPT_KINDS:
            raise InputError(f"prompt | received kind {self.kind!r}; expected one of {PROMPT_KINDS}")

    def apply(self, tracker, stream_id):
        """On a MultiStreamTracker, for `stream_id`: the result after the prompt."""
        if self.kind == "points":
            return tracker.add_points(stream_id, self.obj_id, list(self.points), None if self.labels is None else list(self.labels))
        if self.kind == "box":
            return tracker.add_box(stream_id, self.obj_id, self.box)
        if self.kind == "mask":
            return tracker.add_mask(stream_id, self.obj_id, self.mask)
        tracker.remove_object(stream_id, self.obj_id)
        return tracker.result(stream_id)


@dataclass(frozen=True)
class WorkerOptions:
    """How each worker opens its tracker: the graphs folder (read inside the worker, so on a cluster
    it must exist on every node), its capacity, and ONNX Runtime's threads per worker."""

    graphs: str
    max_streams: int = 4
    max_objects: int = 4
    threads: int | None = 1
    resize: str = "pil_bicubic"


class StreamWorker:
    """Holds a MultiStreamTracker for a group of streams."""

    def __init__(self, name: str, options: WorkerOptions) -> None:
        from .. import OnnxRuntimeBackend
        from ..multi_stream import MultiStreamTracker

        self.name = name
        graphs = Path(options.graphs)
        if not (graphs / "manifest.json").is_file():  # say where: the folder is read on the worker's machine
            raise InputError(f"{name} | received graphs folder {str(graphs)!r}, which has no manifest.json on this worker; "
                             "expected a folder written by `streamsam export`, readable where the worker runs")
        self._backend = OnnxRuntimeBackend(graphs, threads=options.threads)
        self.tracker = MultiStreamTracker(self._backend, max_streams=options.max_streams, max_objects=options.max_objects, resize=options.resize)

    def ready(self) -> str:
        return self.name

    def add_stream(self, stream_id, state=None) -> None:
        self.tracker.add_stream(stream_id, state)

    def remove_stream(self, stream_id) -> None:
        self.tracker.remove_stream(stream_id)

    def step(self, frames: Mapping, prompts: Mapping | None = None) -> tuple[dict, dict]:
        """One batched step over `frames` {stream: frame}, then each stream's `prompts` {stream:
        [Prompt]} on its new frame. Returns ({stream: (FrameResult, StreamState)}, {stream:
        [(Prompt, reason)]}): the snapshot after the step, which the driver keeps to resume the
        stream elsewhere, and the prompts refused (the driver checks them first; a refused one
        changes nothing, and the step stands)."""
        results = self.tracker.track(frames)
        rejected: dict = {}
        for stream_id, stream_prompts in (prompts or {}).items():
            for prompt in stream_prompts:
                try:
                    results[stream_id] = prompt.apply(self.tracker, stream_id)
                except InputError as exc:
                    rejected.setdefault(stream_id, []).append((prompt, str(exc)))
        return {stream_id: (result, self.tracker.state(stream_id)) for stream_id, result in results.items()}, rejected

    def stream_nbytes(self) -> dict:
        return {stream_id: self.tracker.stream_nbytes(stream_id) for stream_id in self.tracker.stream_ids}

    def pid(self) -> int:
        import os

        return os.getpid()

    def close(self) -> None:
        self.tracker.close()
        self._backend.close()
