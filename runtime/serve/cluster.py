"""StreamCluster: streams spread over Ray worker actors that survive a worker's loss.

Where state lives: each worker (serve/worker.py) holds a MultiStreamTracker for its group of streams.
After every step the driver copies each stepped stream's StreamState into its own process, beside the
stream's prompts that no step has applied yet. A worker that dies (RayActorError: killed, crashed, its
node lost) takes only the frames of the step it was running; the driver starts a new worker and
resumes those streams there from their last states, so what follows matches a stream that never
stopped, minus the frames reported in `missed`.

The states are copied to the driver, not left as object refs in the object store: an object lives in
the store of the node that made it, and a lost node would take the snapshots with it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Hashable, Mapping

import numpy as np

from ..checks import check_box, check_frame, check_known_object, check_mask, check_object_slot, check_points
from ..errors import InputError, WorkerError, require
from .worker import Prompt, StreamWorker, WorkerOptions

FPS_WINDOW = 30  # steps a stream's FPS is measured over


@dataclass
class _Stream:
    """What the driver keeps of a stream: enough to resume it on any worker."""

    stream_id: Hashable
    worker: str
    state: object = None  # its last StreamState (None before its first step)
    pending: list = field(default_factory=list)  # prompts no step has applied yet
    applied: list = field(default_factory=list)  # prompts applied, in order (the record)
    frames: int = 0  # frames given to it, the source's frame numbers 0, 1, ...
    missed: list = field(default_factory=list)  # frame numbers lost with a worker
    rejected: list = field(default_factory=list)  # (prompt, reason) the worker refused
    ended: str | None = None  # why it ended (its source stopped, or end_stream)
    times: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))

    @property
    def object_ids(self) -> tuple:
        return self.state.object_ids if self.state is not None else ()

    @property
    def frame_size(self):
        return self.state.frame_size if self.state is not None else None


@dataclass
class _Worker:
    name: str
    actor: object
    streams: set = field(default_factory=set)


class StreamCluster:
    """Streams placed on `workers` Ray actors, `streams_per_worker` each (least loaded first).

        with StreamCluster("graphs/tiny", workers=2) as cluster:
            cluster.add_stream("cam0", [Prompt(1, "points", points=((320, 240),))])
            results = cluster.step({"cam0": frame0, "cam1": frame1})   # {stream: FrameResult}
            cluster.add_points("cam0", 2, [(100, 80)])                 # applied on cam0's next frame

    Ray is started as a local cluster unless the caller already called ray.init (to join a cluster).
    """

    def __init__(self, graphs, workers: int = 2, streams_per_worker: int = 4, max_objects: int = 4,
                 threads: int | None = 1, resize: str = "pil_bicubic", cpus_per_worker: float = 1,
                 start_timeout_s: float = 120.0) -> None:
        self._ray = ray = require("ray", "serve")
        if not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers | received {workers!r}; expected an integer >= 1")
        self.options = WorkerOptions(str(graphs), streams_per_worker, max_objects, threads, resize)
        self.capacity = workers * streams_per_worker
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            # one worker's CPUs spare, so a replacement is placed while a lost worker's are still being released
            ray.init(num_cpus=max(2, math.ceil((workers + 1) * cpus_per_worker)), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        self._actor_class = ray.remote(StreamWorker).options(num_cpus=cpus_per_worker, max_restarts=0)
        self.start_timeout_s, self.cpus_per_worker = start_timeout_s, cpus_per_worker
        self._started = 0
        self.workers: dict[str, _Worker] = {}
        self.streams: dict[Hashable, _Stream] = {}
        self.restarts = 0
        self._lock = threading.Lock()  # prompts may be added from another thread while a step runs
        try:
            for worker in [self._launch() for _ in range(workers)]:  # launched together, awaited in turn
                self._await_ready(worker)
        except BaseException:
            self.close()
            raise

    # -- workers

    def _launch(self) -> _Worker:
        self._started += 1
        name = f"worker-{self._started}"
        worker = _Worker(name, self._actor_class.remote(name, self.options))
        self.workers[name] = worker
        return worker

    def _await_ready(self, worker: _Worker) -> None:
        """A worker that cannot start is an error naming it and the cause, within start_timeout_s."""
        ray = self._ray
        try:
            ray.get(worker.actor.ready.remote(), timeout=self.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self._drop(worker)
            raise WorkerError(f"{worker.name} | did not start within {self.start_timeout_s:.0f} s; expected a worker ready to track. "
                              f"Check the cluster has {self.cpus_per_worker} free CPU(s) per worker") from None
        except ray.exceptions.RayActorError as exc:
            self._drop(worker)
            raise WorkerError(f"{worker.name} | could not start: {_cause(exc)}") from None

    def _drop(self, worker: _Worker) -> None:
        self.workers.pop(worker.name, None)
        try:
            self._ray.kill(worker.actor)
        except Exception:  # already gone
            pass

    def _least_loaded(self) -> _Worker | None:
        room = [w for w in self.workers.values() if len(w.streams) < self.options.max_streams]
        return min(room, key=lambda w: len(w.streams)) if room else None

    def _recover(self, dead: _Worker) -> None:
        """Resume a lost worker's streams from their last states on a new worker (or, if none
        starts, on the others while they have room)."""
        self._drop(dead)
        self.restarts += 1
        try:
            spare = self._launch()
            self._await_ready(spare)
        except WorkerError:
            spare = None
        for stream_id in sorted(dead.streams, key=str):
            stream = self.streams[stream_id]
            target = spare or self._least_loaded()
            if target is None:
                raise WorkerError(f"{dead.name} | was lost and no worker could take its stream {stream_id!r}; "
                                  "expected a new worker or room on another. Check the cluster's resources")
            self._ray.get(target.actor.add_stream.remote(stream_id, stream.state))
            target.streams.add(stream_id)
            stream.worker = target.name

    def worker_of(self, stream_id) -> str:
        return self._stream(stream_id).worker

    def actor(self, name: str):
        """A worker's Ray actor handle (to inspect it, or to kill it in a test)."""
        return self.workers[name].actor

    # -- streams

    def add_stream(self, stream_id: Hashable, prompts=()) -> str:
        """Place a stream on the least loaded worker; `prompts` apply on its first frame. Returns the worker's name."""
        if stream_id in self.streams and self.streams[stream_id].ended is None:
            raise InputError(f"add_stream | received stream id {stream_id!r}, which is already running; expected a new id")
        worker = self._least_loaded()
        if worker is None:
            raise InputError(f"add_stream {stream_id!r} | received a stream beyond the capacity of {self.capacity} "
                             f"({len(self.workers)} workers x {self.options.max_streams} streams); expected at most that many. "
                             "End a stream, or start the cluster with more workers or streams_per_worker")
        prompts = list(prompts)
        for prompt in prompts:
            if not isinstance(prompt, Prompt):
                raise InputError(f"add_stream {stream_id!r} | received prompt {prompt!r}; expected streamsam.serve.Prompt objects")
        try:
            self._ray.get(worker.actor.add_stream.remote(stream_id))
        except self._ray.exceptions.RayActorError:  # lost while idle: replace it, then place the stream again
            self._recover(worker)
            return self.add_stream(stream_id, prompts)
        worker.streams.add(stream_id)
        self.streams[stream_id] = _Stream(stream_id, worker.name, pending=prompts)
        return worker.name

    def end_stream(self, stream_id, reason: str = "ended") -> None:
        """Stop a stream (its source stopped, say): its worker frees the slot, the others carry on."""
        stream = self._stream(stream_id)
        worker = self.workers.get(stream.worker)
        if worker is not None:
            worker.streams.discard(stream_id)
            try:
                self._ray.get(worker.actor.remove_stream.remote(stream_id))
            except self._ray.exceptions.RayActorError:
                pass  # its worker is gone too: nothing left to free
        stream.ended = reason

    @property
    def active(self) -> tuple:
        return tuple(s for s, stream in self.streams.items() if stream.ended is None)

    def _stream(self, stream_id) -> _Stream:
        stream = self.streams.get(stream_id)
        if stream is None or stream.ended is not None:
            raise InputError(f"stream | received {stream_id!r}, which {'has ended' if stream else 'is unknown'}; "
                             f"expected one of the running streams {list(self.active)}")
        return stream

    # -- prompts, applied on the stream's next frame

    def add_points(self, stream_id, obj_id: int, points, labels=None) -> None:
        stream = self._stream(stream_id)
        self._check_slot(stream, obj_id)
        if stream.frame_size is not None:
            check_points(points, labels, stream.frame_size, required=True)
        self._queue(stream, Prompt(obj_id, "points", tuple(map(tuple, np.asarray(points, np.float64).reshape(-1, 2))),
                                   None if labels is None else tuple(np.asarray(labels).reshape(-1).tolist())))

    def add_box(self, stream_id, obj_id: int, box) -> None:
        stream = self._stream(stream_id)
        self._check_slot(stream, obj_id)
        if stream.frame_size is not None:
            check_box(box, stream.frame_size)
        self._queue(stream, Prompt(obj_id, "box", box=tuple(np.asarray(box, np.float64).reshape(-1).tolist())))

    def add_mask(self, stream_id, obj_id: int, mask) -> None:
        stream = self._stream(stream_id)
        self._check_slot(stream, obj_id)
        self._queue(stream, Prompt(obj_id, "mask", mask=check_mask(mask, stream.frame_size, f"add_mask object {obj_id}")))

    def remove_object(self, stream_id, obj_id: int) -> None:
        stream = self._stream(stream_id)
        check_known_object(obj_id, list(stream.object_ids) + [p.obj_id for p in stream.pending if p.kind != "remove"])
        self._queue(stream, Prompt(obj_id, "remove"))

    def _check_slot(self, stream: _Stream, obj_id) -> None:
        known = list(dict.fromkeys(list(stream.object_ids) + [p.obj_id for p in stream.pending if p.kind != "remove"]))
        check_object_slot(obj_id, known, self.options.max_objects)

    def _queue(self, stream: _Stream, prompt: Prompt) -> None:
        with self._lock:
            stream.pending.append(prompt)

    # -- frames

    def step(self, frames: Mapping) -> dict:  # {stream: FrameResult}
        """One step over `frames` {stream: H x W x 3 uint8 RGB}: each worker steps its streams at
        once, the workers in parallel. Returns {stream: FrameResult} numbered by the stream's own
        frame count; a stream whose worker was lost during the step is absent (its frame number is
        in `missed(stream)`) and resumes on its next frame. Bad frames raise InputError before any
        worker runs."""
        ray = self._ray
        for stream_id, frame in frames.items():
            check_frame(frame, self._stream(stream_id).frame_size, subject=f"stream {stream_id!r} frame")
        groups: dict[str, dict] = {}
        for stream_id, frame in frames.items():
            groups.setdefault(self.streams[stream_id].worker, {})[stream_id] = frame
        calls = []
        for name, group in groups.items():
            with self._lock:
                prompts = {s: list(self.streams[s].pending) for s in group if self.streams[s].pending}
            calls.append((self.workers[name], group, prompts, self.workers[name].actor.step.remote(group, prompts)))
        results = {}
        for worker, group, prompts, ref in calls:
            try:
                stepped, rejected = ray.get(ref)
            except ray.exceptions.RayActorError:
                for stream_id in group:
                    stream = self.streams[stream_id]
                    stream.missed.append(stream.frames)
                    stream.frames += 1
                self._recover(worker)
                continue
            now = time.perf_counter()
            for stream_id, (result, state) in stepped.items():
                stream = self.streams[stream_id]
                stream.state = state
                with self._lock:  # prompts queued during the step stay pending
                    stream.applied.extend(prompts.get(stream_id, ()))
                    del stream.pending[: len(prompts.get(stream_id, ()))]
                stream.rejected.extend(rejected.get(stream_id, ()))
                results[stream_id] = replace(result, frame_index=stream.frames)
                stream.frames += 1
                stream.times.append(now)
        return results

    def missed(self, stream_id) -> list[int]:
        """The stream's frame numbers lost with a worker."""
        return list(self.streams[stream_id].missed)

    def stats(self) -> dict:
        """Per running stream: its worker, FPS (recent), frames, frames missed, and the bytes its
        state holds (StreamState.nbytes of its last snapshot)."""
        out = {}
        for stream_id in self.active:
            s = self.streams[stream_id]
            fps = (len(s.times) - 1) / (s.times[-1] - s.times[0]) if len(s.times) > 1 and s.times[-1] > s.times[0] else 0.0
            out[stream_id] = {"worker": s.worker, "fps": fps, "frames": s.frames, "missed": len(s.missed),
                              "nbytes": s.state.nbytes if s.state is not None else 0}
        return out

    def close(self) -> None:
        for worker in list(self.workers.values()):
            self._drop(worker)
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> StreamCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cause(exc: Exception) -> str:
    """The worker's own error from a Ray actor error (the line naming a streamsam or Python error)."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error:" in line and not line.startswith(("ray.", "The actor")):
            return line
    return lines[0] if lines else type(exc).__name__
