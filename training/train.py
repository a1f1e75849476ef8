"""Train the demo model on generated videos.

    python -m training.train --out training/runs/demo --steps 3000

Each step draws fresh clips (nothing is stored), runs SAM 2's training forward on them
(`training.rollout`) under BF16 autocast, and takes one AdamW step on a warmup + cosine schedule.
Attention runs on PyTorch's math kernel while training: on this CPU the fused (flash) kernel's
backward is slower for the decoder's small heads (measured 2.1 vs 1.6 s of backward per clip).
Every --checkpoint-every steps it writes, in --out:

    checkpoint_{step}.pt   {"model": state_dict}, the official checkpoint format (float32)
    train_state.pt         optimizer and step, for --resume
    recipe.json            seed, steps, config, data and recipe settings, optimizer, versions, progress
    log.jsonl              one line per logged step (losses, lr, seconds)

and at the end `model.pt` (float32) and `model_fp16.pt` (the same weights in float16, half the
size; `load_checkpoint` casts them back). Both load with
`streamsam.export.checkpoint.load_checkpoint(path, config=<the config>, image_size=<its size>)`.

Clip i of step s comes from a seed derived from (run seed, s, i), so a resumed run sees the data an
uninterrupted run would, and evaluation seeds (training.evaluate) never collide with training ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from .demo_config import get_training_config
from .losses import LossWeights
from .rollout import ClipRollout, RecipeSettings, sample_clip
from .videos import VideoSettings, generate_video

TRAIN_STREAM = 0  # first word of every training video's seed; evaluation uses another
VALIDATION_STREAM = 2
IMAGE_CHOICE = 1000  # last seed word of the draw that makes a clip a single image (attempts are < 100)
# init_memory_match: memory content x2, query x2, key x1.5 give a same-segment logit of about 12 over
# a spread of about 2.6 for other segments (24 content channels, 1 / sqrt(128) attention scale).
MEMORY_CONTENT_SCALE, MEMORY_QUERY_SCALE, MEMORY_KEY_SCALE = 2.0, 2.0, 1.5
MEMORY_VALUE_SCALE = 8.0  # values read the mask channels only, 8x PyTorch's init: the mask outweighs the residual
# --trainable: which parameters a phase trains (name prefixes; "all" trains every one). mask_refinement is
# the path from the high-resolution features to the mask: the neck's stride-4 and stride-8 laterals, the
# decoder's conv_s0 / conv_s1, its upscaling and hypernetworks, and the IoU head that scores the masks.
# Everything that decides where the object is (trunk, grid features, memory, prompts, tokens) stays fixed.
TRAINABLE = {
    "all": ("",),
    "mask_refinement": (
        "image_encoder.neck.convs.2.", "image_encoder.neck.convs.3.",
        "sam_mask_decoder.conv_s0.", "sam_mask_decoder.conv_s1.", "sam_mask_decoder.output_upscaling.",
        "sam_mask_decoder.output_hypernetworks_mlps.", "sam_mask_decoder.iou_prediction_head.",
    ),
}


@dataclasses.dataclass(frozen=True)
class OptimSettings:
    lr: float = 5e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 150
    min_lr_ratio: float = 0.05  # the cosine ends at lr * this
    grad_clip: float = 1.0
    clips_per_step: int = 1

    def lr_at(self, step: int, total: int) -> float:
        """Linear warmup, then cosine decay to lr * min_lr_ratio at `total`."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def clip_seed(run_seed: int, step: int, index: int, stream: int = TRAIN_STREAM) -> tuple[int, ...]:
    """Entropy of one clip's generator: (stream, run seed, step, index)."""
    return (stream, run_seed, step, index)


def draw_clip(seed: tuple[int, ...], videos: VideoSettings, recipe: RecipeSettings):
    """A clip from its seed (the video, then the prompt choices); retries with a derived seed when
    no object is visible enough."""
    for attempt in range(100):
        video = generate_video(seed + (attempt,), videos)
        rng = np.random.default_rng(seed + (attempt, 1))  # the prompts' own stream, not the scene's
        clip = sample_clip(rng, video, recipe)
        if clip is not None:
            return clip, rng
    raise RuntimeError(f"draw_clip | received seed {seed}: no visible object in 100 videos; expected the video settings to show objects")


def is_image_clip(seed: tuple[int, ...], fraction: float) -> bool:
    """Whether the clip of this seed is a single frame (SAM 2 trains on images and videos)."""
    return fraction > 0 and bool(np.random.default_rng(seed + (IMAGE_CHOICE,)).random() < fraction)


def image_settings(videos: VideoSettings, recipe: RecipeSettings) -> tuple[VideoSettings, RecipeSettings]:
    """Single-frame clips: clicks or boxes (a mask prompt would leave nothing to learn), with
    correction clicks, as SAM 2's image data."""
    _, box, click = recipe.prompt_probabilities
    total = box + click
    probabilities = (0.0, box / total, click / total) if total > 0 else (0.0, 0.5, 0.5)
    return dataclasses.replace(videos, num_frames=1), dataclasses.replace(recipe, prompt_probabilities=probabilities)


def new_model(config, seed: int, decoder_qk_tie: float = 0.0):
    """A Sam2Model with its initial weights for training, determined by `seed`."""
    from streamsam.export.modeling.sam2_model import Sam2Model

    torch.manual_seed(seed)
    model = Sam2Model(config)
    init_for_training(model, decoder_qk_tie)
    return model


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Weights from a {"model": state_dict} file (a checkpoint, model.pt, a probe's --save) or a
    bare state_dict, strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))


def load_trained(config_name: str, checkpoint: Path) -> torch.nn.Module:
    """A trained model in eval mode, on one thread: what the probes measure."""
    torch.set_num_threads(1)
    model = new_model(get_training_config(config_name), 0)
    load_weights(model, checkpoint)
    return model.eval()


def init_for_training(model: torch.nn.Module, decoder_qk_tie: float = 0.0) -> None:
    """Weights for training from scratch: PyTorch's defaults, plus what the official model
    initialises itself (truncated normal, std 0.02, for the learned embeddings that our model
    creates as zeros for checkpoint loading) and ViT-style Linear layers in the trunk.

    decoder_qk_tie > 0: the mask decoder's cross-attentions (token to image, image to token, the
    final one) start with k_proj = q_proj = decoder_qk_tie x PyTorch's init, biases zero. Their
    scores then begin as a positive semi-definite kernel of (content + position), so a click's
    token attends to its own position's features from step 0 instead of having to discover the
    match between the prompt's and the image's position encodings (training/README.md, "Status: what
    limits training": with oracle features, 0.32 against 0.14 click IoU after 500 steps)."""
    for module in model.image_encoder.trunk.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            torch.nn.init.zeros_(module.bias)
    names = ("maskmem_tpos_enc", "no_mem_embed", "no_mem_pos_enc", "no_obj_ptr", "no_obj_embed_spatial",
             "image_encoder.trunk.pos_embed", "image_encoder.trunk.pos_embed_window")
    params = dict(model.named_parameters())
    for name in names:
        if name in params:
            torch.nn.init.trunc_normal_(params[name], std=0.02)
    if decoder_qk_tie > 0:
        transformer = model.sam_mask_decoder.transformer
        attentions = [layer.cross_attn_token_to_image for layer in transformer.layers]
        attentions += [layer.cross_attn_image_to_token for layer in transformer.layers]
        attentions.append(transformer.final_attn_token_to_image)
        with torch.no_grad():
            for attention in attentions:
                attention.q_proj.weight.mul_(decoder_qk_tie)
                attention.k_proj.weight.copy_(attention.q_proj.weight)
                attention.q_proj.bias.zero_()
                attention.k_proj.bias.zero_()


def init_memory_match(model: torch.nn.Module, content_dims: int | None = None, mask_dims: int | None = None) -> None:
    """Memory encoder and memory attention start as a content match (training/README.md, "Status").

    Trained from PyTorch's init, memory attention never learnt to read the memory: the keys are a
    random projection of a random projection of the memory frame's features, uncorrelated with the
    query's projection of the current frame's, so the attention is uniform and carries no
    per-location signal. Here, at init:
    - the memory encoder keeps the frame's features in the first d - mask_dims channels and the mask
      in the last mask_dims (pix_feat_proj a projection, the mask downsampler's last conv writing only
      there); out_proj puts an orthonormal projection U of the features in the memory's first
      `content_dims` channels and one of the mask channels in the rest;
    - every cross-attention's q_proj applies U to the (normalised) current features and k_proj reads
      the memory's content channels, both into the channel pairs that RoPE rotates slowest (so the
      match survives motion across the 16 x 16 grid); the other q rows start at zero.
    - values read only the memory's mask channels (MEMORY_VALUE_SCALE x PyTorch's init).
    Each location then attends to the memory tokens that look like it, and the values bring back
    their mask: 'this looks like what was the object'. Biases start at zero."""
    config = model.config
    d, mem = config.d_model, config.mem_dim
    # The demo config's 24 of 32 memory channels for content and 16 of 128 feature channels for the mask.
    content_dims = content_dims if content_dims is not None else mem * 3 // 4 // 4 * 4
    mask_dims = mask_dims if mask_dims is not None else d // 8
    kept = d - mask_dims
    mask_out = mem - content_dims
    if content_dims % 4 or not 0 < content_dims < mem or not 0 < mask_dims < d:
        raise ValueError(f"init_memory_match | received content_dims={content_dims}, mask_dims={mask_dims} for d_model={d}, "
                         f"mem_dim={mem}; expected content_dims a multiple of 4 below mem_dim and 0 < mask_dims < d_model")
    u = torch.linalg.qr(torch.randn(kept, content_dims))[0].T  # [content_dims, kept], orthonormal rows
    u_mask = torch.linalg.qr(torch.randn(mask_dims, mask_out))[0].T  # [mask_out, mask_dims]
    # RoPE channel pairs rotate with x (first half) and y (second half), slowest at the end of each half.
    half = content_dims // 2
    slow = torch.cat([torch.arange(d // 2 - half, d // 2), torch.arange(d - half, d)])
    encoder = model.memory_encoder
    with torch.no_grad():
        encoder.pix_feat_proj.weight.zero_()
        encoder.pix_feat_proj.weight[:kept, :kept, 0, 0] = torch.eye(kept)
        encoder.pix_feat_proj.bias.zero_()
        last = encoder.mask_downsampler.encoder[-1]
        last.weight[:kept].zero_()
        last.bias.zero_()
        encoder.out_proj.weight.zero_()
        encoder.out_proj.weight[:content_dims, :kept, 0, 0] = MEMORY_CONTENT_SCALE * u
        encoder.out_proj.weight[content_dims:, kept:, 0, 0] = u_mask
        encoder.out_proj.bias.zero_()
        for layer in model.memory_attention.layers:
            attention = layer.cross_attn_image
            attention.q_proj.weight.zero_()
            attention.q_proj.weight[slow, :kept] = MEMORY_QUERY_SCALE * u
            attention.q_proj.bias.zero_()
            attention.k_proj.weight[slow] = 0.0
            attention.k_proj.weight[slow, :content_dims] = MEMORY_KEY_SCALE * torch.eye(content_dims)
            attention.k_proj.bias.zero_()
            attention.v_proj.weight[:, :content_dims] = 0.0
            attention.v_proj.weight[:, content_dims:] *= MEMORY_VALUE_SCALE
            attention.v_proj.bias.zero_()


def freeze_except(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Only parameters whose names start with one of `prefixes` keep requires_grad; returns them."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
        if param.requires_grad:
            trainable.append(param)
    if not trainable:
        raise ValueError(f"freeze_except | received prefixes {prefixes} that match no parameter; expected names such as "
                         f"{next(iter(dict(model.named_parameters())))!r}")
    return trainable


def save_checkpoint(model: torch.nn.Module, path: Path, dtype: torch.dtype = torch.float32) -> None:
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).clone() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"model": state}, tmp)
    tmp.replace(path)


def validate(rollout: ClipRollout, run_seed: int, clips: int, videos: VideoSettings) -> tuple[float, float]:
    """Held-out clips prompted with the mask on frame 0 (PyTorch, FP32, no corrections): the mean
    IoU over tracked frames where the object is present, and the fraction of tracked frames where
    it is absent (hidden or out of the frame) that are predicted empty. A quick progress signal, not
    the J&F of training.evaluate."""
    recipe = dataclasses.replace(rollout.recipe, prompt_probabilities=(1.0, 0.0, 0.0), first_frame_probability=1.0, tracked_correction_probability=0.0)
    saved, rollout.recipe = rollout.recipe, recipe
    values, absent = [], []
    try:
        with torch.no_grad():
            for i in range(clips):
                clip, rng = draw_clip(clip_seed(run_seed, 0, i, VALIDATION_STREAM), videos, recipe)
                result = rollout.forward(clip, rng)
                values += [v for v in result.frame_ious[1:] if not math.isnan(v)]
                absent += result.absent_empty
    finally:
        rollout.recipe = saved
    return (float(np.mean(values)) if values else float("nan"), float(np.mean(absent)) if absent else float("nan"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, recipe.json, log.jsonl)")
    p.add_argument("--steps", required=True, type=int, help="optimizer steps")
    p.add_argument("--config", default="demo", help="model config: demo (default) or a registered one such as reduced")
    p.add_argument("--image-size", type=int, help="the model's input size (default: the config's; the weights of --init "
                   "carry over to another size: position embeddings are interpolated, RoPE follows the grid)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=8, help="frames per clip")
    p.add_argument("--max-objects", type=int, default=3, help="objects per clip")
    p.add_argument("--clips-per-step", type=int, default=1)
    p.add_argument("--image-fraction", type=float, default=0.25,
                   help="fraction of clips that are a single frame (prompt + corrections, no memory): cheap steps that train "
                        "the encoder and decoder, as SAM 2 mixes images with videos")
    p.add_argument("--max-hours", type=float, default=0.0,
                   help="stop (and write model.pt) after this many hours even if --steps are not done (0: no limit)")
    p.add_argument("--lr", type=float, default=OptimSettings.lr)
    p.add_argument("--weight-decay", type=float, default=OptimSettings.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=OptimSettings.warmup_steps)
    p.add_argument("--grad-clip", type=float, default=OptimSettings.grad_clip)
    p.add_argument("--focal-weight", type=float, default=LossWeights.focal,
                   help="weight of the focal mask loss (SAM 2.1: 20; dice, IoU and object score weigh 1)")
    p.add_argument("--feature-weight", type=float, default=LossWeights.feature,
                   help="weight of losses.segment_contrast on the image encoder's features (0: SAM 2's losses only)")
    p.add_argument("--score-weight", type=float, default=LossWeights.score,
                   help="weight of the object-score BCE (SAM 2.1: 1); absent frames are few in 8-frame clips")
    p.add_argument("--absent-mask-weight", type=float, default=LossWeights.absent_mask,
                   help="push the masks of absent objects (out of frame, hidden) to empty with this weight x the mask losses "
                        "(0, SAM 2: absent objects teach the object score only)")
    p.add_argument("--absent-score-weight", type=float, default=LossWeights.absent_score,
                   help="weight of the object-score BCE on absent objects relative to present ones (SAM 2: 1)")
    p.add_argument("--exit-probability", type=float, default=VideoSettings.exit_probability,
                   help="chance that a path's control point lies outside the frame (the object leaves and comes back)")
    p.add_argument("--distractor-probability", type=float, default=VideoSettings.distractor_probability,
                   help="chance that an object gets a look-alike (same texture family and shape kind)")
    p.add_argument("--cross-probability", type=float, default=VideoSettings.cross_probability,
                   help="chance that an object's path meets an earlier object's (crossings and occlusions)")
    p.add_argument("--high-res-feature-weight", type=float, default=LossWeights.high_res_feature,
                   help="weight of losses.sampled_segment_contrast on the high-resolution features the decoder sharpens edges with")
    p.add_argument("--decoder-qk-tie", type=float, default=2.0,
                   help="start the mask decoder's cross-attentions with k_proj = q_proj = this x the default init "
                        "(0: PyTorch's independent init); see init_for_training")
    p.add_argument("--memory-match-init", action="store_true",
                   help="start the memory encoder and memory attention as a content match (init_memory_match), after --init's "
                        "weights are loaded: for a run whose memory modules have not been trained yet")
    p.add_argument("--trainable", default="all", choices=sorted(TRAINABLE),
                   help="which parameters this phase trains: all, or mask_refinement (the high-resolution path to the mask "
                        "alone, with memories detached: sharper masks without touching what tracks the object)")
    p.add_argument("--oracle-features", action="store_true",
                   help="replace the image encoder by oracle features (a random code per segment on the 16 x 16 grid, "
                        "rollout.oracle_features): the first phase, where prompts and memory are learnt before the encoder")
    p.add_argument("--prompt-probabilities", default=",".join(str(v) for v in RecipeSettings.prompt_probabilities),
                   help="MASK,BOX,CLICK: how the prompted frame is prompted (e.g. 1,0,0 to train tracking alone)")
    p.add_argument("--max-correction-clicks", type=int, default=RecipeSettings.max_correction_clicks)
    p.add_argument("--squash-max", type=float, default=1.78, help="widest scene squashed into the square frame (aspect augmentation)")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--val-clips", type=int, default=8, help="held-out clips for the IoU printed at each checkpoint (0: none)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on 2 cores shared with other jobs, 2 threads ran 2-10x slower; 0 leaves torch's default)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (BF16 autocast is the default)")
    p.add_argument("--resume", action="store_true", help="continue from --out's train_state.pt")
    p.add_argument("--init", type=Path, help="start from these weights (e.g. the model.pt of an image-only phase), "
                   "with a fresh optimizer and schedule; its recipe.json is kept in this run's")
    args = p.parse_args(argv)
    if args.steps < 1 or args.frames < 1 or args.clips_per_step < 1 or args.checkpoint_every < 1:
        p.error(f"received steps={args.steps}, frames={args.frames}, clips-per-step={args.clips_per_step}, "
                f"checkpoint-every={args.checkpoint_every}; expected each >= 1")
    try:
        args.prompt_probabilities = tuple(float(v) for v in args.prompt_probabilities.split(","))
    except ValueError:
        p.error(f"received --prompt-probabilities {args.prompt_probabilities!r}; expected three numbers MASK,BOX,CLICK")
    if not 0 <= args.image_fraction <= 1 or args.max_hours < 0:
        p.error(f"received image-fraction={args.image_fraction}, max-hours={args.max_hours}; expected 0..1 and >= 0")
    chances = {"exit-probability": args.exit_probability, "distractor-probability": args.distractor_probability,
               "cross-probability": args.cross_probability}
    if any(not 0 <= v <= 1 for v in chances.values()):
        p.error(f"received {', '.join(f'{k}={v}' for k, v in chances.items())}; expected each between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> Path:
    """Train; returns the path of the final model.pt."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = get_training_config(args.config, args.image_size)
    videos = VideoSettings(height=config.image_size, width=config.image_size, num_frames=args.frames, squash_range=(1.0, args.squash_max),
                           exit_probability=args.exit_probability, distractor_probability=args.distractor_probability,
                           cross_probability=args.cross_probability)
    recipe = RecipeSettings(max_objects=args.max_objects, max_correction_clicks=args.max_correction_clicks,
                            prompt_probabilities=args.prompt_probabilities,
                            loss_weights=LossWeights(focal=args.focal_weight, score=args.score_weight, feature=args.feature_weight,
                                                     high_res_feature=args.high_res_feature_weight,
                                                     absent_mask=args.absent_mask_weight, absent_score=args.absent_score_weight))
    image_videos, image_recipe = image_settings(videos, recipe)
    val_videos = dataclasses.replace(videos, exit_probability=VideoSettings.exit_probability,  # comparable across runs
                                     distractor_probability=VideoSettings.distractor_probability,
                                     cross_probability=VideoSettings.cross_probability)
    optim = OptimSettings(lr=args.lr, weight_decay=args.weight_decay, warmup_steps=min(args.warmup_steps, args.steps),
                          grad_clip=args.grad_clip, clips_per_step=args.clips_per_step)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    model = new_model(config, args.seed, args.decoder_qk_tie)
    init_recipe = None
    if args.init:
        load_weights(model, args.init)
        recipe_path = args.init.parent / "recipe.json"
        init_recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else None
    if args.memory_match_init:
        torch.manual_seed(args.seed)
        init_memory_match(model)
    model.train()
    trainable = freeze_except(model, TRAINABLE[args.trainable])
    rollout = ClipRollout(model, recipe, oracle=args.oracle_features, detach_memory=args.trainable != "all")
    optimizer = torch.optim.AdamW(trainable, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    start = 0
    state_path = out / "train_state.pt"
    if args.resume:
        if not state_path.is_file():
            raise SystemExit(f"--resume | received {out} without train_state.pt; expected a run folder written by this command")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])

    recipe_json = {
        "seed": args.seed,
        "steps": args.steps,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "videos": json.loads(json.dumps(dataclasses.asdict(videos))),
        "recipe": json.loads(json.dumps(dataclasses.asdict(recipe))),
        "optimizer": {"name": "AdamW", "schedule": "linear warmup + cosine", **json.loads(json.dumps(dataclasses.asdict(optim)))},
        "image_fraction": args.image_fraction,
        "decoder_qk_tie": args.decoder_qk_tie,
        "memory_match_init": args.memory_match_init,
        "oracle_features": args.oracle_features,
        "trainable": {"name": args.trainable, "prefixes": list(TRAINABLE[args.trainable]),
                      "parameters": sum(p.numel() for p in trainable)},
        "bf16_autocast": not args.no_bf16,
        "clip_seed": "video: generate_video((0, seed, step, clip index, attempt)); prompts: default_rng((0, seed, step, "
                     "clip index, attempt, 1)); a single frame when default_rng((0, seed, step, clip index, 1000)).random() < image_fraction",
        "torch_threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "command": "python -m training.train " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "init": {"weights": str(args.init), "recipe": init_recipe} if args.init else None,
    }
    log_file = (out / "log.jsonl").open("a")
    window: list[dict[str, float]] = []
    step_seconds: list[float] = []
    final = out / "model.pt"
    print(f"training {config.name} ({sum(p.numel() for p in trainable) / 1e6:.2f} of {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) "
          f"for {args.steps} steps from step {start}, {args.clips_per_step} clip(s) of {args.frames} frames per step, "
          f"{'BF16 autocast' if not args.no_bf16 else 'FP32'}, {torch.get_num_threads()} threads -> {out}", flush=True)
    run_began = time.perf_counter()
    for step in range(start, args.steps):
        began = time.perf_counter()
        lr = optim.lr_at(step, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        stats: dict[str, float] = {}
        for i in range(args.clips_per_step):
            seed = clip_seed(args.seed, step, i)
            image = is_image_clip(seed, args.image_fraction)
            clip, rng = draw_clip(seed, *((image_videos, image_recipe) if image else (videos, recipe)))
            with sdpa_kernel(SDPBackend.MATH), torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.no_bf16):
                result = rollout.forward(clip, rng)
            loss = result.losses.total(recipe.loss_weights) / args.clips_per_step
            loss.backward()
            for key, value in result.losses.as_floats(recipe.loss_weights).items():
                stats[key] = stats.get(key, 0.0) + value / args.clips_per_step
            ious = [v for v in result.frame_ious if not math.isnan(v)]
            stats["train_iou"] = stats.get("train_iou", 0.0) + (float(np.mean(ious)) if ious else 0.0) / args.clips_per_step
            stats["images"] = stats.get("images", 0) + int(image)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, optim.grad_clip))
        if not math.isfinite(grad_norm):
            raise RuntimeError(f"step {step} | received a non-finite gradient norm ({grad_norm}); expected finite. Lower --lr or check the data.")
        optimizer.step()
        seconds = time.perf_counter() - began
        step_seconds.append(seconds)
        stats.update(step=step + 1, lr=lr, grad_norm=grad_norm, seconds=seconds)
        window.append(stats)
        log_file.write(json.dumps(stats) + "\n")
        time_up = bool(args.max_hours) and time.perf_counter() - run_began > args.max_hours * 3600
        if time_up:
            recipe_json["stopped_early_at_step"] = step + 1
            print(f"stopping after step {step + 1}: --max-hours {args.max_hours} reached", flush=True)
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps or time_up:
            mean = {k: float(np.mean([w[k] for w in window]))
                    for k in ("total", "focal", "dice", "iou", "score", "feature", "high_res_feature", "train_iou", "seconds")}
            print(f"step {step + 1}/{args.steps} loss {mean['total']:.3f} (focal {mean['focal']:.4f} dice {mean['dice']:.3f} "
                  f"iou {mean['iou']:.3f} score {mean['score']:.3f} feature {mean['feature']:.3f} high-res {mean['high_res_feature']:.3f}) "
                  f"train IoU {mean['train_iou']:.3f} lr {lr:.2e} "
                  f"{mean['seconds']:.2f} s/step", flush=True)
            log_file.flush()
            window.clear()
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps or time_up:
            model.eval()
            val, val_absent = validate(rollout, args.seed, args.val_clips, val_videos) if args.val_clips else (float("nan"), float("nan"))
            model.train()
            path = out / f"checkpoint_{step + 1:06d}.pt"
            save_checkpoint(model, path)
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1}, state_path.with_suffix(".tmp"))
            state_path.with_suffix(".tmp").replace(state_path)
            recipe_json["progress"] = {
                "step": step + 1,
                "checkpoint": path.name,
                "validation_iou": val,
                "validation_absent_empty": val_absent,
                "median_seconds_per_step": float(np.median(step_seconds)),
            }
            (out / "recipe.json").write_text(json.dumps(recipe_json, indent=2) + "\n")
            print(f"checkpoint {path} (validation IoU {val:.3f}, absent frames predicted empty {val_absent:.3f}, "
                  f"on {args.val_clips} held-out clips)", flush=True)
        if time_up:
            break
    log_file.close()
    save_checkpoint(model, final)
    save_checkpoint(model, out / "model_fp16.pt", torch.float16)
    print(f"wrote {final} and {out / 'model_fp16.pt'}", flush=True)
    return final


if __name__ == "__main__":
    main()
