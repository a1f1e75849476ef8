"""`streamsam serve`: several sources tracked at once on workers that survive a worker's loss.

    streamsam serve --source a.mp4 --source frames/ --source 0 \\
        --point 0:320,240 --box 1:10,20,200,180 --point 2:100,100 --workers 2 --out-dir runs --out masks --out overlay.mp4

Prompts name their source by its position among the --source options (0, 1, ...) and apply on that
source's first frame; each --point or --box is a new object, as in `streamsam track`. Each stream
writes its --out names inside its own folder, <out-dir>/stream<i>/.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from ..checks import positive_int
from ..errors import InputError
from ..progress import LOG_EVERY_S
from ..track_command import add_model_options, parse_xy, resolve_graphs
from .latest_frames import LatestFrames
from .worker import Prompt


def parse_prompts(points, boxes, sources: int) -> list[list[Prompt]]:
    """--point I:X,Y and --box I:X0,Y0,X1,Y1 -> each source's prompts, objects numbered 1, 2, ... per source."""
    prompts: list[list[Prompt]] = [[] for _ in range(sources)]
    for option, values, count in (("--point", points or [], 2), ("--box", boxes or [], 4)):
        for text in values:
            index, _, xy = text.partition(":")
            if not index.strip().isdigit() or not xy:
                example = "0:X,Y" if count == 2 else "0:X0,Y0,X1,Y1"
                raise InputError(f"{option} | received {text!r}; expected SOURCE:{example[2:]} with SOURCE the position of a --source (0, 1, ...), e.g. {example}")
            i = int(index)
            if i >= sources:
                raise InputError(f"{option} | received source {i} in {text!r}; expected 0 to {sources - 1}, the positions of the {sources} --source options")
            values_xy = parse_xy(xy, count, option)
            obj_id = len(prompts[i]) + 1
            prompts[i].append(Prompt(obj_id, "points", (values_xy,)) if count == 2 else Prompt(obj_id, "box", box=values_xy))
    for i, stream_prompts in enumerate(prompts):
        if not stream_prompts:
            raise InputError(f"prompt | received no --point or --box for source {i}; expected at least one object per source (--point {i}:X,Y)")
    return prompts


def status_line(stats: dict, dropped: dict) -> str:
    """One line for every stream: its FPS and the memory its state holds."""
    parts = []
    for stream_id, s in stats.items():
        extra = (f", {s['missed']} lost" if s["missed"] else "") + (f", {dropped.get(stream_id, 0)} dropped" if dropped.get(stream_id) else "")
        parts.append(f"{stream_id} {s['fps']:.1f} FPS {s['nbytes'] / 2**20:.1f} MB state{extra}")
    return " | ".join(parts) or "no streams running"


def read_source(source, stream_id, frames: LatestFrames, max_frames: int | None) -> None:
    """A source's thread: frames into the mailbox (a live source's stale ones dropped), then its end."""
    from ..sources import SourceDisconnected

    reason = "ended"
    try:
        with source:
            for count, (_, frame) in enumerate(source, start=1):
                if not frames.put(stream_id, frame, wait=not source.spec.live):
                    return
                if max_frames and count >= max_frames:
                    break
    except SourceDisconnected as exc:
        reason = f"stopped: {exc}"
    except Exception as exc:  # a source that breaks ends its own stream; the others carry on
        reason = f"stopped: {type(exc).__name__}: {exc}"
    frames.end(stream_id, reason)


def run_serve(args: argparse.Namespace) -> int:
    from ..overlay import draw_result
    from ..sources import FrameSource
    from ..writers import writer_for
    from .cluster import StreamCluster

    if args.engine_dir:
        raise InputError("--engine-dir | received TensorRT engines; expected --onnx-dir or --checkpoint: serve's workers run ONNX Runtime")
    if len(args.source) > args.workers * args.streams_per_worker:  # before anything starts
        raise InputError(f"--source | received {len(args.source)} sources; expected at most --workers x --streams-per-worker = "
                         f"{args.workers} x {args.streams_per_worker}. Raise either")
    prompts = parse_prompts(args.point, args.box, len(args.source))
    sources = [FrameSource(uri, live=True if args.live else None) for uri in args.source]
    out_dir = Path(args.out_dir)
    outputs = [[writer_for(str(out_dir / f"stream{i}" / name)) for name in args.out or []] for i in range(len(sources))]
    graphs = resolve_graphs(args)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    started = time.perf_counter()
    cluster = StreamCluster(graphs, workers=args.workers, streams_per_worker=args.streams_per_worker,
                            max_objects=max(len(p) for p in prompts), threads=threads, resize=args.resize)
    print(f"{args.workers} worker(s) ready in {time.perf_counter() - started:.1f} s ({threads} thread(s) each); "
          f"outputs: {', '.join(args.out or ['none'])} in {out_dir}/stream<i>/", file=sys.stderr)
    mailbox = LatestFrames()
    names = [f"stream{i}" for i in range(len(sources))]
    code = 0
    try:
        for i, (name, source) in enumerate(zip(names, sources)):
            print(f"{name}: {source.spec.describe()}; on {cluster.add_stream(name, prompts[i])}", file=sys.stderr)
            mailbox.open(name)
        readers = [threading.Thread(target=read_source, args=(s, n, mailbox, args.max_frames), daemon=True) for n, s in zip(names, sources)]
        for reader in readers:
            reader.start()
        interactive = sys.stderr.isatty()
        logged = time.perf_counter()
        while cluster.active:
            frames, ended = mailbox.take(timeout=1.0)
            if frames:
                results = cluster.step(frames)
                for name, result in results.items():
                    for out in outputs[names.index(name)]:
                        out.write(draw_result(frames[name].copy(), result) if out.takes_overlay else result)
            for name, reason in ended.items():
                cluster.end_stream(name, reason)
                if reason != "ended":
                    code = 1
                print(("\n" if interactive else "") + f"{name}: after {cluster.streams[name].frames} frames, {reason}", file=sys.stderr)
            line = status_line(cluster.stats(), mailbox.dropped)
            if interactive:
                print("\r" + line + "\033[K", end="", file=sys.stderr, flush=True)
            elif time.perf_counter() - logged >= LOG_EVERY_S:
                logged = time.perf_counter()
                print(line, file=sys.stderr, flush=True)
        if interactive:
            print(file=sys.stderr)
    finally:
        mailbox.close()
        for stream_outputs in outputs:
            for out in stream_outputs:
                out.close()
        cluster.close()
    for name in names:
        stream = cluster.streams[name]
        lost = f", frames lost with a worker: {stream.missed}" if stream.missed else ""
        stale = mailbox.dropped.get(name, 0) + sources[names.index(name)].dropped  # in the loop's mailbox, and the source's own
        dropped = f", {stale} stale frames dropped" if stale else ""
        print(f"{name}: {stream.frames} frames{lost}{dropped}; {stream.ended}", file=sys.stderr)
        for prompt, reason in stream.rejected:
            print(f"{name}: prompt for object {prompt.obj_id} refused: {reason}", file=sys.stderr)
            code = 1
    if cluster.restarts:
        print(f"{cluster.restarts} worker(s) lost and replaced", file=sys.stderr)
    return code


def add_serve_command(commands) -> None:
    serve = commands.add_parser("serve", help="track several sources at once on workers (Ray) that survive a worker's loss")
    serve.add_argument("--source", action="append", required=True, help="as in `track` (video file, image folder, camera index, rtsp://...); repeat for each stream")
    serve.add_argument("--point", action="append", metavar="I:X,Y", help="a click on source I's first frame (I: the position of its --source, from 0); each is a new object")
    serve.add_argument("--box", action="append", metavar="I:X0,Y0,X1,Y1", help="a box on source I's first frame; each is a new object")
    serve.add_argument("--out-dir", default="serve_out", help="each stream writes its outputs in <out-dir>/stream<i>/ (default serve_out)")
    serve.add_argument("--out", action="append", metavar="NAME", help="as in `track`, inside each stream's folder: overlay.mp4, masks.jsonl, or a folder name (PNG masks); repeatable")
    serve.add_argument("--workers", type=positive_int, default=1, help="worker processes (Ray actors on a local Ray cluster, or the cluster ray.init joins) (default 1)")
    serve.add_argument("--streams-per-worker", type=positive_int, default=4, help="streams a worker tracks at once; --workers x this is the capacity (default 4)")
    serve.add_argument("--max-frames", type=positive_int, default=None, help="stop each source after this many frames")
    serve.add_argument("--live", action="store_true", help="replay video files as cameras: real-time pace, stale frames dropped")
    serve.add_argument("--resize", default="pil_bicubic", choices=["pil_bicubic", "antialias_bilinear", "fast"], help="frame resizing (default: as the official video predictor)")
    add_model_options(serve)
    serve.set_defaults(run=run_serve)
