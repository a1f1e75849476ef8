"""Is the memory read at all? Tracked-frame IoU with the right prompt against a swapped one.

    python -m training.probe_memory --checkpoint training/runs/video_A/model.pt [--oracle-features]

Held-out clips (the validation stream) with at least two objects are prompted with masks on frame
0 and tracked. Then the same clips are run again with the prompt rows rolled (object k is prompted
with object k+1's mask) while every tracked frame is still scored against object k. A model that
tracks through its memory follows the wrong objects and its IoU falls; one that ignores the memory
scores the same both times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch

from .rollout import MASK_ON_FIRST_FRAME, ClipRollout
from .train import VALIDATION_STREAM, clip_seed, draw_clip, load_trained
from .videos import VideoSettings

PROBE_SEED = 7  # run seed of the validation stream's clips, apart from training runs' validation (their --seed)


def tracked_iou(rollout: ClipRollout, clip, seed: tuple[int, ...]) -> float:
    with torch.no_grad():
        result = rollout.forward(clip, np.random.default_rng(seed))
    values = [v for t, v in enumerate(result.frame_ious) if t != clip.prompt_frame and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m training.probe_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", default="demo")
    p.add_argument("--oracle-features", action="store_true", help="run on oracle features (for a model of an oracle phase)")
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    args = p.parse_args(argv)
    model = load_trained(args.config, args.checkpoint)
    config, recipe = model.config, MASK_ON_FIRST_FRAME
    rollout = ClipRollout(model, recipe, oracle=args.oracle_features)
    videos = VideoSettings(height=config.image_size, width=config.image_size, num_frames=args.frames)
    right, swapped = [], []
    index = 0
    while len(right) < args.clips:
        seed = clip_seed(PROBE_SEED, 0, index, VALIDATION_STREAM)
        index += 1
        clip, _ = draw_clip(seed, videos, recipe)
        if clip.num_objects < 2:
            continue
        masks = clip.masks.copy()
        masks[clip.prompt_frame] = np.roll(masks[clip.prompt_frame], 1, axis=0)
        right.append(tracked_iou(rollout, clip, seed))
        swapped.append(tracked_iou(rollout, dataclasses.replace(clip, masks=masks), seed))
    result = {"clips": args.clips, "tracked_iou_right_prompt": round(float(np.nanmean(right)), 3),
              "tracked_iou_swapped_prompt": round(float(np.nanmean(swapped)), 3)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
