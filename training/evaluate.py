"""J&F of a checkpoint on held-out generated videos, through the runtime (ONNX graphs).

    python -m training.evaluate --checkpoint training/runs/demo/model.pt --out training/runs/demo/eval.json

The checkpoint is exported with streamsam.export.onnx_export.export_model (its ONNX Runtime check
included) and run by streamsam.VideoPredictor, as a user would: every object visible on frame 0 is
prompted there, with one click (the official evaluation click: the object pixel farthest from its
boundary), its tight box or its mask, then propagated through the video. Videos come from seeds
(1, i), a stream that training (0, ...) and its validation (2, ...) never draw; they have
occlusions, exits and re-entries, and look-alike distractors, at 384 x 288 (4:3, resized to the
model's square input by the runtime).

Memory ablation. With memory off, each frame attends to the prompted frame's memory and object
pointer only: the 6 recent-frame memories and the recent pointers are dropped (a VideoPredictor
whose selection keeps the prompted frames alone). Dropping all memory is no ablation: without the
prompted frame's memory the model does not know which object to segment. So "off" measures what
the recent-frame memory bank adds to SAM 2's prompt memory: following motion, appearance changes,
occlusions, and telling look-alikes apart by where the object was.

J&F follows DAVIS (training.metrics): per object, the mean over frames 1..T-1 (frame 0 holds the
prompt), then the mean over all objects of all videos. Frames where the object is absent count
too: an empty prediction scores 1, anything else 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .metrics import ObjectScores, region_similarity, video_scores
from .prompts import center_clicks, error_center_clicks, tight_boxes
from .videos import Video, VideoSettings, generate_video

EVAL_STREAM = 1  # first word of every evaluation video's seed (training: 0, validation: 2)
EVAL_SETTINGS = VideoSettings(height=288, width=384, num_frames=32)
MIN_PROMPT_AREA = 0.002  # of the frame, on frame 0: smaller objects are not evaluated
MEMORY_MODES = ("on", "off")
TUNING_FIRST_VIDEO = 30  # videos 30 and on: a tuning split for choosing checkpoints and settings, apart from the reported 0-29
PROMPTS = ("click", "box", "mask")


def evaluation_video(index: int, settings: VideoSettings = EVAL_SETTINGS) -> tuple[Video, list[int]]:
    """Held-out video `index` and the objects evaluated in it (visible enough on frame 0); a
    derived seed is drawn when no object is."""
    for attempt in range(100):
        video = generate_video((EVAL_STREAM, index, attempt), settings)
        area = video.masks[0].reshape(video.num_objects, -1).sum(1)
        objects = [int(k) for k in np.flatnonzero(area >= MIN_PROMPT_AREA * video.masks[0, 0].size)]
        if objects:
            return video, objects
    raise RuntimeError(f"evaluation_video | received index {index}: no object visible on frame 0 in 100 videos")


def run_video(graphs, video: Video, objects: list[int], prompt: str, memory: str, threads: int | None = None,
              clicks: int = 1) -> np.ndarray:
    """Predicted masks [T, len(objects), H, W] for the objects prompted on frame 0. With a click
    prompt, clicks > 1 adds correction clicks on frame 0 before tracking, each at the centre of the
    current mask's largest error (the official interactive evaluation's rule), as a user refines."""
    from streamsam.backend import OnnxRuntimeBackend
    from streamsam.video_predictor import VideoPredictor

    if prompt not in PROMPTS or memory not in MEMORY_MODES or clicks < 1 or (clicks > 1 and prompt != "click"):
        raise ValueError(f"run_video | received prompt={prompt!r}, memory={memory!r}, clicks={clicks}; expected one of {PROMPTS}, "
                         f"one of {MEMORY_MODES} and clicks >= 1 (more than 1 with the click prompt only)")
    backend = graphs if hasattr(graphs, "run") else OnnxRuntimeBackend(graphs, threads=threads)
    predictor = VideoPredictor(backend, max_objects=max(len(objects), 1), tracked_memories=memory == "on")
    predictor.init_state(list(video.frames))
    first = video.masks[0, objects]
    if prompt == "click":
        points, labels = center_clicks(first)
        current = {}
        for i, obj in enumerate(objects):
            current[obj] = predictor.add_new_points_or_box(0, obj_id=obj, points=points[i], labels=labels[i]).mask(obj)
        for _ in range(clicks - 1):
            for i, obj in enumerate(objects):
                points, labels = error_center_clicks(first[i : i + 1], current[obj][None])
                result = predictor.add_new_points_or_box(0, obj_id=obj, points=points[0], labels=labels[0], clear_old_points=False)
                current[obj] = result.mask(obj)
    elif prompt == "box":
        for obj, box in zip(objects, tight_boxes(first)):
            predictor.add_new_points_or_box(0, obj_id=obj, box=box)
    else:
        for obj, mask in zip(objects, first):
            predictor.add_new_mask(0, obj_id=obj, mask=mask)
    out = np.zeros((video.num_frames, len(objects)) + video.frames.shape[1:3], bool)
    for result in predictor.propagate_in_video():
        for i, obj in enumerate(objects):
            out[result.frame_index, i] = result.mask(obj)
    return out


@dataclasses.dataclass
class Summary:
    prompt: str
    memory: str
    objects: int
    j: float
    f: float
    j_and_f: float
    absent_frames: int  # evaluated frames where the object is not visible
    absent_correct: float  # fraction of them predicted empty
    clicks: int = 0  # the click prompt: clicks on frame 0 (the first at the object's centre, then corrections)
    prompted_j: float = float("nan")  # IoU on frame 0, the prompted frame (not in J&F)
    present_empty: float = float("nan")  # evaluated frames where the object is visible, predicted empty (lost)

    @property
    def label(self) -> str:
        return f"{self.clicks} clicks" if self.prompt == "click" and self.clicks > 1 else self.prompt

    def row(self) -> str:
        return (f"| {self.label} | {self.memory} | {self.objects} | {self.prompted_j:.3f} | {self.j:.3f} | {self.f:.3f} | "
                f"{self.j_and_f:.3f} | {self.absent_correct:.2f} of {self.absent_frames} | {self.present_empty:.3f} |")


def evaluate_graphs(graphs, videos: int = 30, prompts=PROMPTS, memories=MEMORY_MODES, settings: VideoSettings = EVAL_SETTINGS,
                    threads: int | None = None, progress=print, refine_clicks: tuple[int, ...] = (), first_video: int = 0) -> list[Summary]:
    """J&F of exported graphs on `videos` held-out videos (indices first_video, first_video + 1, ...),
    for each prompt and memory mode; and, for each n in refine_clicks, of the click prompt refined to n
    clicks on frame 0 (memory on): how much a user's further clicks improve the mask and what is
    tracked from it."""
    from streamsam.backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(graphs, threads=threads) if not hasattr(graphs, "run") else graphs
    runs = [(p, m, 1 if p == "click" else 0) for p in prompts for m in memories]
    runs += [("click", "on", n) for n in refine_clicks if ("click", "on", n) not in runs]
    scores: dict[tuple[str, str, int], list[ObjectScores]] = {key: [] for key in runs}
    absent: dict[tuple[str, str, int], list[bool]] = {key: [] for key in runs}
    prompted: dict[tuple[str, str, int], list[float]] = {key: [] for key in runs}
    lost: dict[tuple[str, str, int], list[bool]] = {key: [] for key in runs}
    began = time.perf_counter()
    for index in range(first_video, first_video + videos):
        video, objects = evaluation_video(index, settings)
        for key in runs:
            prompt, memory, clicks = key
            pred = run_video(backend, video, objects, prompt, memory, clicks=max(clicks, 1))
            for i, obj in enumerate(objects):
                gt = video.masks[:, obj]
                scores[key].append(video_scores(gt, pred[:, i], skip_frames=(0,)))
                gone = ~gt[1:].reshape(gt.shape[0] - 1, -1).any(1)
                empty = ~pred[1:, i].reshape(gt.shape[0] - 1, -1).any(1)
                absent[key] += list(empty[gone])
                lost[key] += list(empty[~gone])
                prompted[key].append(region_similarity(gt[0], pred[0, i]))
        if progress is not None:
            progress(f"video {index + 1 - first_video}/{videos}: {len(objects)} object(s), {time.perf_counter() - began:.0f} s")
    summaries = []
    for key, items in scores.items():
        prompt, memory, clicks = key
        j = float(np.mean([s.j for s in items]))
        f = float(np.mean([s.f for s in items]))
        gone = absent[key]
        summaries.append(Summary(prompt, memory, len(items), j, f, (j + f) / 2, len(gone), float(np.mean(gone)) if gone else float("nan"),
                                 clicks, float(np.mean(prompted[key])), float(np.mean(lost[key])) if lost[key] else float("nan")))
    return summaries


def export_checkpoint(checkpoint: Path, config, out: Path, progress=print) -> Path:
    """A checkpoint's four graphs, as evaluated (with the exporter's ONNX Runtime check)."""
    from streamsam.export.checkpoint import load_checkpoint
    from streamsam.export.onnx_export import ExportOptions, export_model

    model = load_checkpoint(checkpoint, config=config, image_size=config.image_size)
    export_model(model, out, ExportOptions(max_prompted_frames=2), progress=progress)
    return out


def table(summaries: list[Summary]) -> str:
    head = ("| prompt on frame 0 | memory | objects | J on frame 0 | J | F | J&F | absent frames predicted empty | "
            "present frames predicted empty |\n|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head] + [s.row() for s in summaries])


def main(argv: list[str] | None = None) -> list[Summary]:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help='a {"model": state_dict} file (exported to ONNX first)')
    source.add_argument("--graphs", type=Path, help="an exported folder (skips the export)")
    source.add_argument("--combine", type=Path, nargs="+", help="join the --out files of runs that split the prompts "
                        "(one process per core) into one --out")
    p.add_argument("--config", default="demo", help="the checkpoint's config (default demo)")
    p.add_argument("--image-size", type=int, help="export the checkpoint at this input size (default: the config's)")
    p.add_argument("--videos", type=int, default=30)
    p.add_argument("--first-video", type=int, default=0,
                   help=f"index of the first video (default 0: the reported set is videos 0-29; choose between models on "
                        f"videos from {TUNING_FIRST_VIDEO} on, which the reported figures never include)")
    p.add_argument("--prompts", default=",".join(PROMPTS), help=f"comma-separated, of {PROMPTS}")
    p.add_argument("--memory", default=",".join(MEMORY_MODES), help=f"comma-separated, of {MEMORY_MODES}")
    p.add_argument("--refine-clicks", default="", help="comma-separated click counts, e.g. 2,3: the click prompt refined on frame 0 "
                   "by correction clicks at the centre of each mask's largest error (memory on)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--keep-graphs", type=Path, help="export into this folder instead of a temporary one")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    if args.combine:
        if not args.out:
            p.error("received --combine without --out; expected --out for the joined results")
        return combine(args.combine, args.out)
    prompts = tuple(x for x in args.prompts.split(",") if x)
    memories = tuple(x for x in args.memory.split(",") if x)
    bad = [x for x in prompts if x not in PROMPTS] + [x for x in memories if x not in MEMORY_MODES]
    words = [x for x in args.refine_clicks.split(",") if x]
    refine = tuple(int(x) for x in words if x.strip().isdigit())
    if len(refine) != len(words) or any(n < 2 for n in refine):
        p.error(f"received --refine-clicks {args.refine_clicks!r}; expected click counts of 2 or more, comma-separated (e.g. 2,3)")
    if bad or args.videos < 1 or args.first_video < 0:
        p.error(f"received prompts {prompts}, memory {memories}, videos {args.videos}, first video {args.first_video}; expected prompts of "
                f"{PROMPTS}, memory of {MEMORY_MODES}, videos >= 1 and first video >= 0")

    with tempfile.TemporaryDirectory() as tmp:
        graphs = args.graphs
        if graphs is None:
            from .demo_config import get_training_config

            graphs = args.keep_graphs or Path(tmp) / "graphs"
            export_checkpoint(args.checkpoint, get_training_config(args.config, args.image_size), graphs)
        summaries = evaluate_graphs(graphs, args.videos, prompts, memories, threads=args.threads, refine_clicks=refine,
                                    first_video=args.first_video)
    print(table(summaries))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "config": args.config if args.checkpoint else None,
            "image_size": args.image_size,
            "graphs": str(args.graphs) if args.graphs else None,
            "videos": args.videos,
            "video_settings": json.loads(json.dumps(dataclasses.asdict(EVAL_SETTINGS))),
            "seeds": f"({EVAL_STREAM}, index, attempt) for index in range({args.first_video}, {args.first_video + args.videos})",
            "results": [dataclasses.asdict(s) for s in summaries],
        }
        args.out.write_text(json.dumps(payload, indent=2) + "\n")
    return summaries


def combine(parts: list[Path], out: Path) -> list[Summary]:
    """One results file from runs of the same model and videos that each took some of the prompts."""
    payloads = [json.loads(Path(part).read_text()) for part in parts]
    same = ("checkpoint", "graphs", "config", "image_size", "videos", "video_settings", "seeds")
    for part, payload in zip(parts[1:], payloads[1:]):
        differ = [key for key in same if payload.get(key) != payloads[0].get(key)]
        if differ:
            raise SystemExit(f"--combine | received {part} whose {', '.join(differ)} differ from {parts[0]}'s; expected runs of "
                             "the same model on the same videos")
    joined = {**payloads[0], "results": [row for payload in payloads for row in payload["results"]]}
    keys = [(row["prompt"], row["memory"], row.get("clicks", 0)) for row in joined["results"]]
    if len(set(keys)) != len(keys):
        raise SystemExit(f"--combine | received the same prompt and memory setting in two parts ({keys}); expected each once")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(joined, indent=2) + "\n")
    summaries = [Summary(**row) for row in joined["results"]]
    print(table(summaries))
    return summaries


if __name__ == "__main__":
    main()
