"""Where a model's tracked masks lose their J, and what a mask drawn on the feature grid could reach.

    python -m training.probe_tracking --checkpoint training/runs/a2/model.pt --config demo_384 [--first-video 30 --videos 10]

Each held-out evaluation video (the tuning split by default: videos 30 and on, never reported) is
resized to the model's square input, every object visible on frame 0 is prompted there with its
mask, and the clip is tracked in PyTorch (the training rollout: the decoder's choice among its three
masks by predicted IoU, where the runtime also applies SAM 2's stability fallback). Every tracked
frame of every object is sorted into one of:

- absent (hidden or out of the frame): right when predicted empty;
- present and predicted empty (the object score blanked it);
- present and switched: J < 0.3 and the mask covers another object more than its own (a look-alike,
  an occluder);
- present and lost: J < 0.3 otherwise (background, a fragment);
- present and tracked: J >= 0.3, whose mean J says how sharp the masks are.

Beside them, two ceilings on the present frames: the best of the decoder's three masks (what a
better choice among them could give) and the true mask redrawn on the image encoder's stride-16 grid
(each cell in or out by majority): what a perfect tracker whose masks follow the grid would score.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .evaluate import TUNING_FIRST_VIDEO, evaluation_video
from .metrics import contour_accuracy, region_similarity
from .probe_heads import RecordingRollout
from .rollout import MASK_ON_FIRST_FRAME, Clip, segment_map
from .train import load_trained

SWITCH_J = 0.3  # below this a present frame counts as lost or switched
GRID_STRIDE = 16  # the image embedding's stride: memory attention and the decoder's tokens live on this grid


def grid_mask(mask: torch.Tensor, stride: int = GRID_STRIDE) -> torch.Tensor:
    """[S, S] bool -> the same mask redrawn on the stride grid: a cell is in when most of it is."""
    cells = F.avg_pool2d(mask[None, None].float(), stride)
    return F.interpolate(cells, scale_factor=stride, mode="nearest")[0, 0] > 0.5


def square_video(frames: np.ndarray, masks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames [T, H, W, 3] uint8 and masks [T, K, H, W] resized to size x size (bilinear, nearest)."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).round().clamp(0, 255).byte()
    m = F.interpolate(torch.from_numpy(masks).float(), size=(size, size), mode="nearest") > 0.5
    return x.permute(0, 2, 3, 1).numpy(), m.numpy()


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 3) if values else None  # None (JSON null): no such frame


def probe(rollout: RecordingRollout, first_video: int, videos: int) -> dict:
    size = rollout.image_size
    counts = {"absent": 0, "absent_empty": 0, "present": 0, "empty": 0, "switched": 0, "lost": 0, "tracked": 0}
    j, j_best, j_grid, f, f_grid, j_tracked = [], [], [], [], [], []
    for index in range(first_video, first_video + videos):
        video, objects = evaluation_video(index)
        frames, every_mask = square_video(video.frames, video.masks, size)
        clip = Clip(frames, every_mask[:, objects], 0, "mask", 0, segments=segment_map(every_mask))
        rollout.outputs = []
        with torch.no_grad():
            rollout.forward(clip, np.random.default_rng(index))
        # outputs[0] is the mask prompt's decoder run (for its pointer); then frames 1.. in order.
        for t, out in zip(range(1, clip.num_frames), rollout.outputs[1:]):
            chosen = (out.high_res_masks[:, 0] > 0).numpy()
            candidates = (F.interpolate(out.multimasks.float(), size=(size, size), mode="bilinear", align_corners=False) > 0).numpy()
            for i, obj in enumerate(objects):
                target = clip.masks[t, i]
                if not target.any():
                    counts["absent"] += 1
                    counts["absent_empty"] += int(not chosen[i].any())
                    continue
                counts["present"] += 1
                score = region_similarity(target, chosen[i])
                j.append(score)
                j_best.append(max(region_similarity(target, c) for c in candidates[i]))
                on_grid = grid_mask(torch.from_numpy(target)).numpy()
                j_grid.append(region_similarity(target, on_grid))
                f.append(contour_accuracy(target, chosen[i]))
                f_grid.append(contour_accuracy(target, on_grid))
                if not chosen[i].any():
                    counts["empty"] += 1
                elif score >= SWITCH_J:
                    counts["tracked"] += 1
                    j_tracked.append(score)
                else:
                    own = np.count_nonzero(chosen[i] & target)
                    others = [np.count_nonzero(chosen[i] & every_mask[t, k]) for k in range(video.num_objects) if k != obj]
                    counts["switched" if max(others, default=0) > own else "lost"] += 1
    present = max(counts["present"], 1)
    return {
        "videos": f"{first_video}..{first_video + videos - 1}",
        "present_frames": counts["present"],
        "absent_frames": counts["absent"],
        "absent_predicted_empty": round(counts["absent_empty"] / counts["absent"], 3) if counts["absent"] else None,
        "present_j": _mean(j),
        "present_j_best_of_three": _mean(j_best),
        "present_j_true_mask_on_grid": _mean(j_grid),
        "present_f": _mean(f),
        "present_f_true_mask_on_grid": _mean(f_grid),
        # J&F over all tracked frames (absent ones right) of a perfect tracker drawing on the grid
        "j_and_f_true_mask_on_grid": round((sum(j_grid) / 2 + sum(f_grid) / 2 + counts["absent"]) / (len(j_grid) + counts["absent"]), 3)
        if j_grid else None,
        **{f"present_{key}": round(counts[key] / present, 3) for key in ("empty", "switched", "lost", "tracked")},
        "tracked_j": _mean(j_tracked),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m training.probe_tracking", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--config", default="demo_384")
    p.add_argument("--first-video", type=int, default=TUNING_FIRST_VIDEO)
    p.add_argument("--videos", type=int, default=10)
    args = p.parse_args(argv)
    rollout = RecordingRollout(load_trained(args.config, args.checkpoint), MASK_ON_FIRST_FRAME)
    result = {"checkpoint": str(args.checkpoint), "config": args.config, **probe(rollout, args.first_video, args.videos)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
