"""SAM 2's training forward on one clip, through the computations of our four graph wrappers.

A clip is a few frames of a generated video and up to three objects. As SAM 2 trains
(`SAM2Train` in the paper's code; our own implementation), one frame is prompted for all objects,
with a mask, a noisy box or a click, and the model runs frame by frame:

    image encoder (all frames at once)
    -> memory attention over the memories of earlier frames (the prompted frame reads none: its
       features get `no_mem_embed`)
    -> prompt encoder + mask decoder
    -> memory encoder, whose memory and object pointer later frames read.

Frames after the prompted one are tracked forward, then frames before it in reverse, with the
official memory selection (the prompted frame at temporal position 0, the 6 nearest tracked frames
in the direction of travel, object pointers up to 15 frames back). On the prompted frame (clicks
and boxes) and, at random, on one tracked frame, correction clicks are simulated: each click is
drawn from the error of the previous prediction (positive where the object was missed, negative
where it overflowed) and fed back with the previous mask logits, as a user would correct; every
step is supervised. Memories are not detached: gradients flow back through time.

Image encoder, memory attention and memory encoder are the graph wrappers themselves; the decoder
step is MaskDecoderGraph's computation with the training setting (no stability fallback to a
multimask output, which SAM 2 applies only at inference; see `decode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from streamsam.contracts import LABEL_PADDING, PIXEL_MEAN, PIXEL_STD
from streamsam.export.graphs.image_encoder import ImageEncoderGraph
from streamsam.export.graphs.memory_attention import MemoryAttentionGraph
from streamsam.export.graphs.memory_encoder import MASK_BIAS, MASK_SCALE, MemoryEncoderGraph
from streamsam.export.modeling.mask_decoder import finish_sam_heads, select_masks
from streamsam.memory_bank import SelectionRule
from streamsam.export.modeling.sam2_model import Sam2Model

from .losses import LossTerms, LossWeights, actual_ious, sampled_segment_contrast, segment_contrast, step_losses
from .prompts import error_clicks, noisy_box_points
from .videos import Video

PROMPT_KINDS = ("mask", "box", "click")
PREV_MASK_CLAMP = 32.0  # previous logits fed back with a correction click (official predictor)
MULTIMASK_MAX_POINTS = 1  # multimask output with 0 or 1 point (official multimask_max_pt_num)
HIGH_RES_CONTRAST_PIXELS = 768  # pixels per clip and map for --high-res-feature-weight (a 768 x 768 similarity matrix)


@dataclass(frozen=True)
class RecipeSettings:
    """How clips are prompted and corrected. SAM 2.1's training uses mask / box / click prompts
    with probabilities 0.5 / 0.25 / 0.25 and always 7 correction clicks; the demo model is mostly
    prompted with clicks and boxes, so those get more weight, and the number of correction clicks
    is drawn from 0..7 so that memories of rough first masks are seen too."""

    prompt_probabilities: tuple[float, float, float] = (0.3, 0.35, 0.35)  # mask, box, click
    max_objects: int = 3
    min_prompt_area: float = 0.002  # of the frame: smaller objects are not prompted
    first_frame_probability: float = 0.5  # prompt frame 0; otherwise a uniformly random frame
    max_correction_clicks: int = 7
    tracked_correction_probability: float = 0.5  # one tracked frame also gets correction clicks
    gt_click_probability: float = 0.1  # a correction click drawn from the object, not its errors
    loss_weights: LossWeights = LossWeights()

    def __post_init__(self) -> None:
        p = self.prompt_probabilities
        if len(p) != 3 or min(p) < 0 or abs(sum(p) - 1) > 1e-6:
            raise ValueError(f"RecipeSettings | received prompt_probabilities={p}; expected 3 non-negative numbers summing to 1 (mask, box, click)")
        if self.max_objects < 1 or self.max_correction_clicks < 0:
            raise ValueError(
                f"RecipeSettings | received max_objects={self.max_objects}, max_correction_clicks={self.max_correction_clicks}; "
                "expected >= 1 and >= 0"
            )


# Probes and validation: every object prompted with its mask on frame 0, then tracked, no corrections.
MASK_ON_FIRST_FRAME = RecipeSettings(prompt_probabilities=(1.0, 0.0, 0.0), first_frame_probability=1.0, max_correction_clicks=0)


@dataclass
class Clip:
    """One training sample: frames, the chosen objects' masks and how they are prompted."""

    frames: np.ndarray  # [T, S, S, 3] uint8
    masks: np.ndarray  # [T, n, S, S] bool
    prompt_frame: int
    prompt_kind: str
    corrections: int  # correction clicks on the prompted frame (clicks and boxes only)
    tracked_frame: int = -1  # a tracked frame that gets correction clicks (-1: none)
    tracked_corrections: int = 0
    segments: np.ndarray | None = None  # [T, S, S] int: 0 background, k + 1 the video's object k (every object)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def num_objects(self) -> int:
        return self.masks.shape[1]


def sample_clip(rng: np.random.Generator, video: Video, recipe: RecipeSettings) -> Clip | None:
    """Choose the prompted frame, the objects (visible enough there) and the prompts; None when no
    object of the video is visible enough on any frame."""
    t_count = video.num_frames
    height, width = video.frames.shape[1:3]
    min_area = recipe.min_prompt_area * height * width
    areas = video.masks.sum(axis=(2, 3))  # [T, K]
    first = 0 if rng.random() < recipe.first_frame_probability else int(rng.integers(t_count))
    candidates = [first] + [int(t) for t in rng.permutation(t_count) if t != first]
    for frame in candidates:
        visible = np.flatnonzero(areas[frame] >= min_area)
        if len(visible):
            break
    else:
        return None
    chosen = rng.permutation(visible)[: recipe.max_objects]
    kind = PROMPT_KINDS[int(rng.choice(3, p=recipe.prompt_probabilities))]
    corrections = 0 if kind == "mask" else int(rng.integers(recipe.max_correction_clicks + 1))
    tracked_frame, tracked_corrections = -1, 0
    others = [t for t in range(t_count) if t != frame]
    if others and recipe.max_correction_clicks > 0 and rng.random() < recipe.tracked_correction_probability:
        tracked_frame = int(rng.choice(others))
        tracked_corrections = int(rng.integers(1, recipe.max_correction_clicks + 1))
    return Clip(video.frames, video.masks[:, np.sort(chosen)], frame, kind, corrections, tracked_frame, tracked_corrections,
                segment_map(video.masks))


def segment_map(masks: np.ndarray) -> np.ndarray:
    """[T, K, S, S] visible masks (disjoint) -> [T, S, S] int8: 0 background, k + 1 object k."""
    ids = np.arange(1, masks.shape[1] + 1, dtype=np.int8).reshape(1, -1, 1, 1)
    return (masks * ids).sum(axis=1, dtype=np.int8)


def cell_segments(segments: np.ndarray, grid: int) -> torch.Tensor:
    """[T, S, S] segment map -> [T, grid, grid] long: the segment covering most of each cell."""
    t_count, size = segments.shape[0], segments.shape[-1]
    cell = size // grid
    onehot = segments[..., None] == np.arange(int(segments.max()) + 1).reshape(1, 1, 1, -1)  # [T, S, S, K]
    counts = onehot.reshape(t_count, grid, cell, grid, cell, -1).sum(axis=(2, 4))  # [T, g, g, K]
    return torch.from_numpy(counts.argmax(-1))


def oracle_features(segments: np.ndarray, codes: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Perfect image-encoder outputs for training the other modules first: each grid cell carries
    the code of the segment covering most of it (codes [segments, C]: one random vector per
    background / object, the same on every frame); the high-resolution features are zero.
    segments [T, S, S] -> (feat_s0 [T, C/8, 4g, 4g], feat_s1 [T, C/4, 2g, 2g], embed [T, C, g, g])."""
    t_count = segments.shape[0]
    embed = codes[cell_segments(segments, grid)].permute(0, 3, 1, 2).contiguous()
    c = codes.shape[1]
    return torch.zeros(t_count, c // 8, 4 * grid, 4 * grid), torch.zeros(t_count, c // 4, 2 * grid, 2 * grid), embed


def normalise_frames(frames: np.ndarray) -> torch.Tensor:
    """[T, S, S, 3] uint8 RGB -> [T, 3, S, S] float32, ImageNet mean / std (the runtime's preprocessing)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PIXEL_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


@dataclass
class DecoderOutput:
    multimasks: torch.Tensor  # [n, 3, L, L] before object-score gating (loss)
    multimask_ious: torch.Tensor  # [n, 3]
    low_res_masks: torch.Tensor  # [n, 1, L, L] the chosen mask, gated
    high_res_masks: torch.Tensor  # [n, 1, S, S]
    obj_ptr: torch.Tensor  # [n, d]
    object_score_logits: torch.Tensor  # [n, 1]


@dataclass
class FrameMemory:
    memory: torch.Tensor  # [n, mem, g, g]
    obj_ptr: torch.Tensor  # [n, d]


@dataclass
class ClipResult:
    losses: LossTerms
    steps: int  # supervised decoder steps
    frame_ious: list[float] = field(default_factory=list)  # mean IoU of the chosen masks per frame (present objects)
    absent_empty: list[bool] = field(default_factory=list)  # per tracked frame and absent object: predicted empty?


def select_memories(
    frame: int,
    direction: int,
    cond: dict[int, FrameMemory],
    non_cond: dict[int, FrameMemory],
    num_frames: int,
    num_maskmem: int,
    max_obj_ptrs: int,
) -> tuple[list[tuple[torch.Tensor, int]], list[tuple[torch.Tensor, float]]]:
    """The runtime's memory selection (streamsam.memory_bank.SelectionRule, every prompted frame)
    for `frame` tracked in `direction` (+1 forward, -1 reverse), as (tensor, temporal position)."""
    rule = SelectionRule(num_maskmem, max_obj_ptrs=max_obj_ptrs)
    selection = rule.select(frame, sorted(cond), non_cond, reverse=direction < 0, num_frames=num_frames)
    stored = lambda pick: (cond if pick.prompted else non_cond)[pick.frame]  # noqa: E731
    return ([(stored(k).memory, k.tpos) for k in selection.memories],
            [(stored(k).obj_ptr, k.tpos) for k in selection.pointers])  # fmt: skip


class ClipRollout:
    """Runs a model through clips as SAM 2 trains it; `forward` returns the clip's losses."""

    def __init__(self, model: Sam2Model, recipe: RecipeSettings = RecipeSettings(), oracle: bool = False,
                 detach_memory: bool = False) -> None:
        """oracle: replace the image encoder by `oracle_features` (codes drawn from each clip's
        rng): the memory and decoder modules learn to track before the encoder learns to see.
        detach_memory: memories are encoded from detached masks, so no gradient flows back through
        time (a phase that trains the mask's refinement alone needs none, and skips that backward)."""
        self.model = model
        self.recipe = recipe
        self.oracle = oracle
        self.detach_memory = detach_memory
        config = model.config
        self.image_size = config.image_size
        self.num_maskmem = config.num_maskmem
        self.max_obj_ptrs = config.max_obj_ptrs_in_encoder
        self.image_encoder = ImageEncoderGraph(model)
        self.memory_attention = MemoryAttentionGraph(model)
        self.memory_encoder = MemoryEncoderGraph(model)

    # -- the graphs' computations

    def decode(
        self,
        conditioned: torch.Tensor,
        high_res_feats: tuple[torch.Tensor, torch.Tensor],
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> DecoderOutput:
        """MaskDecoderGraph.forward with dynamic_multimask_via_stability off (the training setting).
        No points: one padding point, as the official model and our runtime."""
        m = self.model
        n = conditioned.shape[0]
        low = 4 * conditioned.shape[-1]
        if points is None:
            points = torch.zeros(n, 1, 2)
            labels = torch.full((n, 1), LABEL_PADDING, dtype=torch.int32)
        if mask_input is None:
            mask_input, has_mask = torch.zeros(n, 1, low, low), torch.zeros(n, 1)
        else:
            has_mask = torch.ones(n, 1)
        sparse, dense = m.sam_prompt_encoder(points, labels, mask_input, has_mask)
        masks, iou_pred, tokens, scores = m.sam_mask_decoder.predict_masks(
            conditioned, m.sam_prompt_encoder.get_dense_pe(), sparse, dense, high_res_feats
        )
        flag = torch.tensor(multimask)
        multimasks, ious, sam_tokens = select_masks(
            masks, iou_pred, tokens, flag, dynamic_multimask_via_stability=False, stability_delta=0.0,
            stability_thresh=1.0, use_multimask_token_for_obj_ptr=True,
        )
        _, _, low_res, obj_ptr, scores = finish_sam_heads(multimasks, ious, sam_tokens, scores, m.obj_ptr_proj, m.no_obj_ptr, flag)
        high = F.interpolate(low_res, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return DecoderOutput(multimasks, ious, low_res, high, obj_ptr, scores)

    def attend(self, image_embed: torch.Tensor, n: int, memories, pointers) -> torch.Tensor:
        """MemoryAttentionGraph on the selected memories and pointers (all valid)."""
        memory = torch.stack([mem for mem, _ in memories], dim=1)  # [n, M, mem, g, g]
        memory_tpos = torch.tensor([[t for _, t in memories]] * n, dtype=torch.int32)
        ptrs = torch.stack([p for p, _ in pointers], dim=1)  # [n, P, d]
        ptr_tpos = torch.tensor([[t for _, t in pointers]] * n, dtype=torch.float32)
        return self.memory_attention(
            image_embed, memory, memory_tpos, torch.ones_like(memory_tpos, dtype=torch.bool),
            ptrs, ptr_tpos, torch.ones_like(ptr_tpos, dtype=torch.bool), torch.zeros(n, dtype=torch.int32),  # one frame
        )

    def encode_memory(self, image_embed: torch.Tensor, out: DecoderOutput, from_points: bool) -> FrameMemory:
        n = out.high_res_masks.shape[0]
        flags = torch.full((n,), from_points, dtype=torch.bool)
        masks, scores, obj_ptr = out.high_res_masks, out.object_score_logits, out.obj_ptr
        if self.detach_memory:
            masks, scores, obj_ptr = masks.detach(), scores.detach(), obj_ptr.detach()
        memory = self.memory_encoder(image_embed, masks, scores, flags, torch.zeros(n, dtype=torch.int32))  # one frame
        return FrameMemory(memory, obj_ptr)

    def mask_as_output(self, image_embed: torch.Tensor, high_res_feats, masks: torch.Tensor) -> DecoderOutput:
        """A mask prompt is the frame's output as it is (official `_use_mask_as_output`); the decoder
        runs on the frame's own features, with the mask as its mask input, only for the pointer."""
        m = self.model
        n = masks.shape[0]
        masks = masks[:, None].float()  # [n, 1, S, S]
        high = masks * MASK_SCALE + MASK_BIAS
        low = F.interpolate(high, scale_factor=0.25, mode="bilinear", align_corners=False, antialias=True)
        out = self.decode(image_embed.expand(n, -1, -1, -1), high_res_feats, None, None, m.mask_downsample(masks), multimask=False)
        present = (masks.flatten(1).amax(1, keepdim=True) > 0).float()  # [n, 1]
        obj_ptr = present * out.obj_ptr + (1 - present) * m.no_obj_ptr
        score = MASK_SCALE * present + MASK_BIAS
        return DecoderOutput(low.expand(-1, 3, -1, -1), torch.ones(n, 3), low, high, obj_ptr, score)

    # -- a clip

    def forward(self, clip: Clip, rng: np.random.Generator) -> ClipResult:
        t_count, n = clip.num_frames, clip.num_objects
        targets = torch.from_numpy(clip.masks).float()  # [T, n, S, S]
        if self.oracle:
            codes = torch.from_numpy(rng.standard_normal((int(clip.segments.max()) + 1, self.model.config.d_model)).astype(np.float32))
            hr0, hr1, embeds = oracle_features(clip.segments, codes, self.image_size // 16)
        else:
            hr0, hr1, embeds = self.image_encoder(normalise_frames(clip.frames))
        cond: dict[int, FrameMemory] = {}
        non_cond: dict[int, FrameMemory] = {}
        result = ClipResult(LossTerms.zero(), 0, [float("nan")] * t_count)
        weights = self.recipe.loss_weights
        if torch.is_grad_enabled() and not self.oracle:  # training aids: not computed in validation
            if weights.feature > 0:
                result.losses.feature = segment_contrast(embeds, cell_segments(clip.segments, embeds.shape[-1]))
            if weights.high_res_feature > 0:
                result.losses.high_res_feature = sum(
                    sampled_segment_contrast(feats, cell_segments(clip.segments, feats.shape[-1]), HIGH_RES_CONTRAST_PIXELS, rng)
                    for feats in (hr0, hr1)
                ) / 2
        k = clip.prompt_frame
        order = [(k, 1)] + [(t, 1) for t in range(k + 1, t_count)] + [(t, -1) for t in range(k - 1, -1, -1)]
        for t, direction in order:
            embed, feats = embeds[t : t + 1], (hr0[t : t + 1], hr1[t : t + 1])
            if t == k:
                out = self._prompted_frame(clip, embed, feats, targets[t], rng, result)
                cond[t] = self.encode_memory(embed, out, from_points=True)
            else:
                memories, pointers = select_memories(t, direction, cond, non_cond, t_count, self.num_maskmem, self.max_obj_ptrs)
                conditioned = self.attend(embed, n, memories, pointers)
                out = self.decode(conditioned, feats, None, None, None, multimask=True)
                self._supervise(out, targets[t], result)
                corrected = t == clip.tracked_frame and clip.tracked_corrections > 0
                if corrected:
                    out = self._correct(conditioned, feats, out, None, None, clip.masks[t], targets[t], clip.tracked_corrections, rng, result)
                non_cond[t] = self.encode_memory(embed, out, from_points=corrected)
                absent = targets[t].flatten(1).amax(1) < 0.5
                result.absent_empty += (out.high_res_masks[absent].flatten(1) <= 0).all(1).tolist()
            result.frame_ious[t] = _present_iou(out.high_res_masks, targets[t])
        return result

    def _prompted_frame(self, clip: Clip, embed, feats, target: torch.Tensor, rng, result: ClipResult) -> DecoderOutput:
        n = clip.num_objects
        target_np = clip.masks[clip.prompt_frame]
        if clip.prompt_kind == "mask":
            return self.mask_as_output(embed, feats, target)
        # An initial prompted frame reads no memory: its features get no_mem_embed.
        conditioned = (embed + self.model.no_mem_embed.reshape(1, -1, 1, 1)).expand(n, -1, -1, -1)
        if clip.prompt_kind == "box":
            points, labels = noisy_box_points(rng, target_np)
        else:
            points, labels = error_clicks(rng, target_np, None)
        points_t, labels_t = torch.from_numpy(points), torch.from_numpy(labels)
        out = self.decode(conditioned, feats, points_t, labels_t, None, multimask=points.shape[1] <= MULTIMASK_MAX_POINTS)
        self._supervise(out, target, result)
        return self._correct(conditioned, feats, out, points_t, labels_t, target_np, target, clip.corrections, rng, result)

    def _correct(self, conditioned, feats, out: DecoderOutput, points, labels, target_np, target, count: int, rng, result) -> DecoderOutput:
        """`count` correction clicks, each from the previous prediction's errors, with the previous
        logits as mask input; every step is supervised."""
        for _ in range(count):
            if rng.random() < self.recipe.gt_click_probability:
                prediction = None
            else:
                prediction = (out.high_res_masks[:, 0] > 0).detach().numpy()
            new_points, new_labels = error_clicks(rng, target_np, prediction)
            new_points, new_labels = torch.from_numpy(new_points), torch.from_numpy(new_labels)
            points = new_points if points is None else torch.cat([points, new_points], dim=1)
            labels = new_labels if labels is None else torch.cat([labels, new_labels], dim=1)
            mask_input = out.low_res_masks.clamp(-PREV_MASK_CLAMP, PREV_MASK_CLAMP)
            out = self.decode(conditioned, feats, points, labels, mask_input, multimask=points.shape[1] <= MULTIMASK_MAX_POINTS)
            self._supervise(out, target, result)
        return out

    def _supervise(self, out: DecoderOutput, target: torch.Tensor, result: ClipResult) -> None:
        result.losses = result.losses + step_losses(out.multimasks, out.multimask_ious, out.object_score_logits, target, self.recipe.loss_weights)
        result.steps += 1


def _present_iou(high_res_masks: torch.Tensor, target: torch.Tensor) -> float:
    """Mean IoU of the chosen masks over the objects present in the frame (nan if none)."""
    present = target.flatten(1).amax(1) > 0.5
    if not present.any():
        return float("nan")
    with torch.no_grad():
        ious = actual_ious(high_res_masks.detach().float(), target[:, None])[:, 0]
    return float(ious[present].mean())
