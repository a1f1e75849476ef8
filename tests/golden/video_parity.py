"""Replay the official video sequences (tests/golden/video, made by make_golden_video.py) through
our VideoPredictor and compare every yielded frame and every prompt's output.

    python tests/golden/video_parity.py      # writes benchmarks/results/video_parity.md

Shared by tests/test_video_parity.py, which asserts per-frame mask IoU >= 0.99 and equal
object-score signs; the logit errors are reported beside them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from streamsam.export.onnx_export import ExportOptions, export_model
from streamsam.video_predictor import VideoPredictor

GOLDEN = Path(__file__).resolve().parent
sys.path.insert(0, str(GOLDEN))
from parity import golden_model  # noqa: E402

VIDEO = GOLDEN / "video"


@dataclass(frozen=True)
class FrameCheck:
    call: str
    frame: int
    obj_id: int
    iou: float  # of the masks at video resolution
    max_abs_error: float  # of the low-res logits
    mean_abs_error: float
    official_score: float
    our_score: float

    @property
    def score_sign_equal(self) -> bool:
        return (self.official_score > 0) == (self.our_score > 0)


def export_golden_graphs(name: str, out_dir: Path) -> Path:
    export_model(golden_model(name), out_dir, ExportOptions(max_prompted_frames=2), progress=None)
    return out_dir


def _video_res(low_res: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The official video-resolution masks: bilinear upsampling of the low-res logits, > 0."""
    return F.interpolate(torch.from_numpy(low_res)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy() > 0


def _compare(call: str, frame: int, obj_ids, ours: np.ndarray, official: np.ndarray, our_scores, official_scores, size) -> list[FrameCheck]:
    checks = []
    ours_v, official_v = _video_res(ours, size), _video_res(official, size)
    for i, obj_id in enumerate(obj_ids):
        if official_scores[i] is None:
            continue
        union = (ours_v[i] | official_v[i]).sum()
        iou = 1.0 if union == 0 else float((ours_v[i] & official_v[i]).sum() / union)
        err = np.abs(ours[i] - official[i])
        checks.append(FrameCheck(call, frame, obj_id, iou, float(err.max()), float(err.mean()), float(official_scores[i]), float(our_scores[i])))
    return checks


def replay(name: str, graphs: Path) -> list[FrameCheck]:
    """Run the official script of calls on our VideoPredictor; one check per object and frame."""
    z = np.load(VIDEO / f"{name}.npz")
    media = np.load(VIDEO / "frames.npz")
    frames, shape_masks = media["frames"], media["shape_masks"]
    meta = json.loads(z["meta"].item())
    # The official predictor skips hole filling on a CPU (its CUDA kernel is missing): so do we here.
    predictor = VideoPredictor(graphs, max_objects=2, fill_hole_area=0, resize="pil_bicubic")
    predictor.init_state(list(frames))
    size = frames.shape[1:3]
    checks: list[FrameCheck] = []
    for step in meta["script"]:
        call, kwargs = step["call"], dict(step["kwargs"])
        source = step.get("same_as", step["name"])
        if call == "propagate_in_video":
            results = list(predictor.propagate_in_video(**kwargs))
            official = z[f"{source}/low_res_masks"]
            official_scores = z[f"{source}/object_score_logits"]
            assert [r.frame_index for r in results] == z[f"{source}/frame_idx"].tolist(), step["name"]
            for r, masks, scores in zip(results, official, official_scores):
                checks += _compare(step["name"], r.frame_index, r.object_ids, r.low_res_logits, masks.reshape(r.low_res_logits.shape), r.object_scores, list(scores), size)
            continue
        if call == "add_new_mask":
            index = kwargs["mask"].strip("shape_masks[]").split(",")
            kwargs["mask"] = shape_masks[int(index[0]), int(index[1])]
            result = predictor.add_new_mask(**kwargs)
        else:
            result = predictor.add_new_points_or_box(**kwargs)
        official = z[f"{step['name']}/low_res_masks"][:, 0]
        scores = [None] * len(result.object_ids)
        scores[result.object_ids.index(kwargs["obj_id"])] = float(z[f"{step['name']}/object_score_logits"].reshape(-1)[0])
        checks += _compare(step["name"], kwargs["frame_idx"], result.object_ids, result.low_res_logits, official, result.object_scores, scores, size)
    return checks


def report(out_path: Path) -> str:
    lines = [
        "# Video parity: our VideoPredictor (ONNX Runtime CPU) against the official SAM2VideoPredictor",
        "",
        "Command: `python tests/golden/video_parity.py` (sequences: tests/golden/README.md, Video sequences).",
        "Per call: frames x objects checked, min mask IoU at video resolution, object-score sign agreement,",
        "and the low-res logits' max / mean abs error.",
        "",
        "| config | call | checks | min IoU | score signs equal | logits max abs err | logits mean abs err |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("reduced", "tiny"):
            checks = replay(name, export_golden_graphs(name, Path(tmp) / name))
            for call in dict.fromkeys(c.call for c in checks):
                cs = [c for c in checks if c.call == call]
                lines.append(
                    f"| {name} | {call} | {len(cs)} | {min(c.iou for c in cs):.5f} | {sum(c.score_sign_equal for c in cs)}/{len(cs)} "
                    f"| {max(c.max_abs_error for c in cs):.2e} | {np.mean([c.mean_abs_error for c in cs]):.2e} |"
                )
    text = "\n".join(lines) + "\n"
    out_path.write_text(text)
    return text


if __name__ == "__main__":
    target = GOLDEN.parents[1] / "benchmarks" / "results" / "video_parity.md"
    print(report(target))
