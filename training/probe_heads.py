"""Does a model use its high-resolution features, and does its object score tell absent objects?

    python -m training.probe_heads --checkpoint training/runs/j4/checkpoint_000750.pt [--config demo]

Held-out clips (the validation stream) are prompted with masks on frame 0 and tracked twice: as they
are, and with the high-resolution features (feat_s0, feat_s1) set to zero. A decoder that sharpens
its masks with them loses IoU without them; one that ignores them does not. On the first pass the
object score of every tracked frame is kept: its AUC between frames where the object is absent
(hidden or out of the frame) and frames where it is present says whether the score ranks them at
all, and the fraction below 0 how many absent frames the runtime would blank.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from .rollout import MASK_ON_FIRST_FRAME, ClipRollout
from .train import VALIDATION_STREAM, clip_seed, draw_clip, load_trained
from .videos import VideoSettings

PROBE_SEED = 7  # the validation stream's run seed, as probe_memory


class RecordingRollout(ClipRollout):
    """A rollout that keeps every decoder output, optionally without high-resolution features."""

    zero_high_res = False

    def decode(self, conditioned, high_res_feats, *args, **kwargs):
        if self.zero_high_res:
            high_res_feats = tuple(torch.zeros_like(f) for f in high_res_feats)
        out = super().decode(conditioned, high_res_feats, *args, **kwargs)
        self.outputs.append(out)
        return out


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counting half."""
    if not len(negatives) or not len(positives):
        return float("nan")
    below = (negatives[:, None] < positives[None, :]).mean()
    ties = (negatives[:, None] == positives[None, :]).mean()
    return float(below + 0.5 * ties)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m training.probe_heads", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", default="demo")
    p.add_argument("--clips", type=int, default=12)
    p.add_argument("--frames", type=int, default=16)
    args = p.parse_args(argv)
    model = load_trained(args.config, args.checkpoint)
    config, recipe = model.config, MASK_ON_FIRST_FRAME
    rollout = RecordingRollout(model, recipe)
    videos = VideoSettings(height=config.image_size, width=config.image_size, num_frames=args.frames)
    ious = {False: [], True: []}
    present_scores, absent_scores = [], []
    for zero in (False, True):
        rollout.zero_high_res = zero
        for i in range(args.clips):
            seed = clip_seed(PROBE_SEED, 0, i, VALIDATION_STREAM)
            clip, _ = draw_clip(seed, videos, recipe)
            rollout.outputs = []
            with torch.no_grad():
                result = rollout.forward(clip, np.random.default_rng(seed))
            ious[zero] += [v for t, v in enumerate(result.frame_ious) if t != clip.prompt_frame and not math.isnan(v)]
            if zero:
                continue
            # outputs[0] is the mask prompt's decoder run (for its pointer); then frames 1.. in order.
            for t, out in zip(range(1, clip.num_frames), rollout.outputs[1:]):
                for k in range(clip.num_objects):
                    score = float(out.object_score_logits[k, 0])
                    (present_scores if clip.masks[t, k].any() else absent_scores).append(score)
    absent, present = np.array(absent_scores), np.array(present_scores)
    result = {
        "clips": args.clips,
        "frames": args.frames,
        "tracked_iou": round(float(np.mean(ious[False])), 4),
        "tracked_iou_without_high_res_features": round(float(np.mean(ious[True])), 4),
        "absent_frames": len(absent),
        "present_frames": len(present),
        "object_score_auc": round(auc(absent, present), 3),
        "median_score_absent": round(float(np.median(absent)), 3) if len(absent) else float("nan"),
        "median_score_present": round(float(np.median(present)), 3) if len(present) else float("nan"),
        "absent_scored_absent": round(float((absent < 0).mean()), 3) if len(absent) else float("nan"),
        "present_scored_absent": round(float((present < 0).mean()), 3) if len(present) else float("nan"),
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
