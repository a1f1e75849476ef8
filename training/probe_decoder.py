"""Which part of the demo model learns slowly: click-to-mask training on single generated images,
with the image encoder's features either learnt or replaced by an oracle.

    python -m training.probe_decoder --features oracle --steps 1500 --decoder-qk-tie 2
    python -m training.probe_decoder --features encoder --steps 3000 --decoder-qk-tie 2
    python -m training.probe_decoder --features oracle_grid --init training/runs/a2/model.pt --steps 1500

Each step takes one fresh generated image (the training stream's image clips), clicks every chosen
object at its centre (the official evaluation click) and trains the prompt encoder and mask decoder
(and the image encoder, with `--features encoder`) on SAM 2's losses. Every `--every` steps it
prints the mean IoU, best of the 3 masks, on 16 held-out images.

`--features oracle` gives the decoder perfect features: every segment of the image (the background
and each object) gets its own random 128-d code, written on the 16 x 16 grid cells it covers most;
the high-resolution features are zero. The decoder then only has to learn which segment a click
points at, and the IoU can reach at most the printed ceiling (the clicked segment's cells, as
blocks, against the true mask).

`--features oracle_grid` keeps the oracle's grid codes but gives the decoder the high-resolution
features of the image encoder it starts from (`--init`; frozen, as they are): above the ceiling,
those features carry the boundary inside a cell and the decoder can learn to use them. With
`--train-high-res` the encoder's stride-4 and stride-8 path (patch embedding, the first two stages,
their neck convolutions) learns too: whether that path can learn the boundary at all.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .demo_config import get_training_config
from .losses import LossWeights, actual_ious, step_losses
from .prompts import center_clicks
from .rollout import ClipRollout, RecipeSettings, normalise_frames, oracle_features
from .train import clip_seed, draw_clip, image_settings, load_weights, new_model, save_checkpoint
from .videos import VideoSettings

PROBE_STREAM = 3  # seeds apart from training (0), evaluation and validation


@dataclasses.dataclass
class Sample:
    image: torch.Tensor  # [1, 3, S, S] normalised
    masks: torch.Tensor  # [n, S, S] float 0 / 1, the clicked objects
    points: torch.Tensor  # [n, 1, 2]
    labels: torch.Tensor  # [n, 1]
    segments: np.ndarray  # [1, S, S] 0 background, k + 1 object k (every object of the image)


def draw_sample(index: int, held_out: bool) -> Sample:
    videos, recipe = image_settings(VideoSettings(), RecipeSettings())
    clip, _ = draw_clip(clip_seed(0, int(held_out), index, PROBE_STREAM), videos, recipe)
    masks = clip.masks[0]
    masks = masks[masks.reshape(len(masks), -1).sum(1) > 50]
    points, labels = center_clicks(masks)
    return Sample(normalise_frames(clip.frames[:1]), torch.from_numpy(masks).float(), torch.from_numpy(points),
                  torch.from_numpy(labels), clip.segments[:1])


def oracle_ceiling(samples: list[Sample], grid: int) -> float:
    """IoU of the clicked segment's grid cells, as blocks, with the true masks."""
    ious = []
    for s in samples:
        count = int(s.segments.max()) + 1
        cells = oracle_features(s.segments, torch.eye(count), grid)[2][0].argmax(0).numpy()  # one-hot codes: the cell map
        cell = s.masks.shape[-1] // grid
        for mask, point in zip(s.masks.numpy() > 0.5, s.points[:, 0].int().tolist()):
            block = np.kron(cells == cells[point[1] // cell, point[0] // cell], np.ones((cell, cell))) > 0
            ious.append((block & mask).sum() / (block | mask).sum())
    return float(np.mean(ious))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.probe_decoder", description=__doc__.split("\n\n")[0])
    p.add_argument("--features", choices=("oracle", "oracle_grid", "encoder"), required=True)
    p.add_argument("--train-high-res", action="store_true", help="with oracle_grid: train the encoder's high-resolution path too")
    p.add_argument("--config", default="demo", help="model config (demo, or a training experiment such as demo_wide)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--focal-weight", type=float, default=1.0)
    p.add_argument("--decoder-qk-tie", type=float, default=0.0)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, help="start from these weights (a probe's --save or a training checkpoint)")
    p.add_argument("--save", type=Path, help="write the weights here at the end, as {\"model\": state_dict}")
    args = p.parse_args(argv)
    if args.train_high_res and args.features != "oracle_grid":
        p.error(f"received --train-high-res with --features {args.features}; expected --features oracle_grid (the other modes train "
                "the encoder wholly, or have no encoder)")
    if args.save:  # now, not after the run: a missing folder would lose it
        args.save.parent.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    config = get_training_config(args.config)
    model = new_model(config, args.seed, args.decoder_qk_tie).train()
    if args.init:
        load_weights(model, args.init)
    rollout = ClipRollout(model)
    weights = LossWeights(focal=args.focal_weight)
    grid = config.image_size // 16
    d = model.sam_prompt_encoder.embed_dim
    codes_rng = torch.Generator().manual_seed(args.seed)
    held_out = [draw_sample(i, held_out=True) for i in range(16)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)

    def features(s: Sample):
        if args.features == "encoder":
            return rollout.image_encoder(s.image)
        hr0, hr1, embed = oracle_features(s.segments, torch.randn(int(s.segments.max()) + 1, d, generator=codes_rng), grid)
        if args.features == "oracle_grid":
            with torch.set_grad_enabled(args.train_high_res and torch.is_grad_enabled()):
                hr0, hr1, _ = rollout.image_encoder(s.image)
        return hr0, hr1, embed

    def decode(s: Sample, multimask: bool):
        hr0, hr1, embed = features(s)
        n = len(s.masks)
        conditioned = (embed + model.no_mem_embed.reshape(1, -1, 1, 1)).expand(n, -1, -1, -1)
        return rollout.decode(conditioned, (hr0, hr1), s.points, s.labels, None, multimask=multimask)

    def evaluate() -> float:
        ious = []
        with torch.no_grad():
            for s in held_out:
                out = decode(s, multimask=True)
                masks = F.interpolate(out.multimasks, size=s.masks.shape[-2:], mode="bilinear", align_corners=False)
                ious += actual_ious(masks, s.masks[:, None]).max(1).values.tolist()
        return float(np.mean(ious))

    header = {"features": args.features, "decoder_qk_tie": args.decoder_qk_tie, "lr": args.lr, "focal_weight": args.focal_weight}
    if args.features != "encoder":
        header["ceiling"] = round(oracle_ceiling(held_out, grid), 3)
    print(json.dumps(header), flush=True)
    began = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0 or step == args.steps:
            last_iou = round(evaluate(), 3)
            print(json.dumps({"step": step, "held_out_iou": last_iou, "seconds": round(time.perf_counter() - began)}), flush=True)
        if step == args.steps:
            break
        s = draw_sample(step, held_out=False)
        out = decode(s, multimask=step % 2 == 0)  # multimask and single-mask outputs alternate
        loss = step_losses(out.multimasks, out.multimask_ious, out.object_score_logits, s.masks, weights).total(weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    if args.save:
        # A run folder like train.py's: train.py --init reads recipe.json beside the weights.
        save_checkpoint(model, args.save)
        recipe = {
            "probe": "training.probe_decoder",
            "command": "python -m training.probe_decoder " + " ".join(argv if argv is not None else sys.argv[1:]),
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "config": config.name,
            "held_out_iou": last_iou,
            "ceiling": header.get("ceiling"),
            "torch_threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        }
        (args.save.parent / "recipe.json").write_text(json.dumps(recipe, indent=2) + "\n")


if __name__ == "__main__":
    main()
