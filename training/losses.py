"""SAM 2's training losses (the paper's recipe: focal + dice on masks, IoU regression, object-score
BCE), for one decoder step on a batch of objects.

Weights (`LossWeights`) default to SAM 2.1's training configs: mask (focal) 20, dice 1, IoU 1,
object score 1; focal alpha 0.25, gamma 2; IoU as L1 and supervised on every multimask output. With
several mask outputs only the best one (least weighted focal + dice) gets the mask losses. Mask and IoU losses count only
for objects present in the frame; absent objects teach the object score alone (unless
`absent_mask` > 0: then their masks are also pushed to empty, a training aid). Everything is
summed over objects and divided by the number of objects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0


@dataclass(frozen=True)
class LossWeights:
    """How the loss terms add up (SAM 2.1's values by default)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    score: float = 1.0
    feature: float = 0.0  # segment_contrast on the image encoder's features; not in SAM 2 (training aid, train.py --feature-weight)
    high_res_feature: float = 0.0  # the same on sampled pixels of the high-resolution features (--high-res-feature-weight)
    # Not SAM 2's (there an absent object teaches the score alone, and 1 : 1): absent objects' masks
    # pushed to empty, and their score BCE weighed up (absent frames are rare in short clips).
    absent_mask: float = 0.0
    absent_score: float = 1.0


@dataclass
class LossTerms:
    """Weighted-ready sums of one or more decoder steps (each already divided by the object count)."""

    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    score: torch.Tensor
    feature: torch.Tensor = torch.zeros(())
    high_res_feature: torch.Tensor = torch.zeros(())

    @staticmethod
    def zero() -> LossTerms:
        z = torch.zeros(())
        return LossTerms(z, z, z, z, z, z)

    def __add__(self, other: LossTerms) -> LossTerms:
        return LossTerms(self.focal + other.focal, self.dice + other.dice, self.iou + other.iou, self.score + other.score,
                         self.feature + other.feature, self.high_res_feature + other.high_res_feature)

    def total(self, weights: LossWeights = LossWeights()) -> torch.Tensor:
        return (weights.focal * self.focal + weights.dice * self.dice + weights.iou * self.iou + weights.score * self.score
                + weights.feature * self.feature + weights.high_res_feature * self.high_res_feature)

    def as_floats(self, weights: LossWeights = LossWeights()) -> dict[str, float]:
        values = {"focal": self.focal, "dice": self.dice, "iou": self.iou, "score": self.score, "feature": self.feature,
                  "high_res_feature": self.high_res_feature, "total": self.total(weights)}
        return {k: float(v.detach()) for k, v in values.items()}


def focal_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: logits, targets [n, m, H, W] -> [n, m]."""
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = prob * targets + (1 - prob) * (1 - targets)
    alpha = FOCAL_ALPHA * targets + (1 - FOCAL_ALPHA) * (1 - targets)
    return (alpha * bce * (1 - p_true) ** FOCAL_GAMMA).flatten(2).mean(-1)


def dice_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice (smoothed by 1): [n, m, H, W] -> [n, m]."""
    prob = logits.sigmoid().flatten(2)
    targets = targets.flatten(2)
    return 1 - (2 * (prob * targets).sum(-1) + 1) / (prob.sum(-1) + targets.sum(-1) + 1)


def actual_ious(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """IoU of the masks (logits > 0) with the targets: [n, m, H, W] -> [n, m] (0 when both are empty)."""
    pred = logits.flatten(2) > 0
    gt = targets.flatten(2) > 0.5
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


def step_losses(
    multimask_logits: torch.Tensor,
    predicted_ious: torch.Tensor,
    object_score_logits: torch.Tensor,
    targets: torch.Tensor,
    weights: LossWeights = LossWeights(),
) -> LossTerms:
    """Losses of one decoder step.

    multimask_logits [n, m, h, w]: the decoder's mask outputs before object-score gating (m = 3
        with multimask, else the single mask repeated), upsampled here to the targets' size;
    predicted_ious [n, m]; object_score_logits [n, 1]; targets [n, H, W] float 0 / 1.
    """
    n, m = multimask_logits.shape[:2]
    if targets.dim() != 3 or targets.shape[0] != n or predicted_ious.shape != (n, m) or object_score_logits.shape != (n, 1):
        raise ValueError(
            f"step_losses | received masks {tuple(multimask_logits.shape)}, ious {tuple(predicted_ious.shape)}, "
            f"scores {tuple(object_score_logits.shape)}, targets {tuple(targets.shape)}; "
            "expected [n, m, h, w], [n, m], [n, 1] and [n, H, W]"
        )
    logits = F.interpolate(multimask_logits.float(), size=targets.shape[-2:], mode="bilinear", align_corners=False)
    target = targets[:, None].expand_as(logits)
    focal = focal_per_mask(logits, target)
    dice = dice_per_mask(logits, target)
    with torch.no_grad():
        best = (weights.focal * focal + weights.dice * dice).argmin(dim=1, keepdim=True)  # [n, 1]
        iou_target = actual_ious(logits, target)
    present = targets.flatten(1).amax(1) > 0.5  # [n]
    weight = present.float()
    mask_weight = weight + weights.absent_mask * (1 - weight)
    iou = F.l1_loss(predicted_ious.float(), iou_target, reduction="none").mean(1)
    score = F.binary_cross_entropy_with_logits(object_score_logits.float()[:, 0], weight, reduction="none")
    score_weight = weight + weights.absent_score * (1 - weight)
    return LossTerms(
        focal=(focal.gather(1, best)[:, 0] * mask_weight).sum() / n,
        dice=(dice.gather(1, best)[:, 0] * mask_weight).sum() / n,
        iou=(iou * weight).sum() / n,
        score=(score * score_weight).sum() / n,
    )


CONTRAST_TEMPERATURE = 0.1


def segment_contrast(embeds: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Supervised contrastive loss on the image encoder's grid features: every cell of every frame
    should be nearer (cosine, temperature 0.1) to the cells of its own segment (the same object or the
    background, on any frame) than to the others'. Memory attention finds the object by how its
    features look (train.init_memory_match), so an object must look the same from frame to frame.
    Each segment weighs the same, however many cells it covers.

    embeds [T, C, g, g]; cells [T, g, g] int, the segment covering most of each cell -> scalar."""
    features = embeds.float().flatten(2).transpose(1, 2).reshape(-1, embeds.shape[1])  # [N, C]
    return contrast(features, cells.reshape(-1))


def sampled_segment_contrast(feats: torch.Tensor, pixels: torch.Tensor, count: int, rng: np.random.Generator) -> torch.Tensor:
    """segment_contrast on `count` pixels drawn uniformly from every frame of a high-resolution map
    (all of its pixels would make an N x N matrix of 10^9): the features the decoder sharpens mask
    edges with should tell the object from what surrounds it.

    feats [T, C, h, w]; pixels [T, h, w] int, each pixel's segment -> scalar."""
    features = feats.float().flatten(2).transpose(1, 2).reshape(-1, feats.shape[1])  # [N, C]
    labels = pixels.reshape(-1)
    picked = torch.from_numpy(rng.choice(len(labels), size=min(count, len(labels)), replace=False))
    return contrast(features[picked], labels[picked])


def contrast(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The supervised contrastive loss of features [N, C] with segment labels [N] (see segment_contrast)."""
    features = F.normalize(features, dim=-1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool)
    positives = same & ~eye
    anchors = positives.any(1)
    if not anchors.any():
        return features.sum() * 0.0
    logits = (features @ features.T) / CONTRAST_TEMPERATURE
    log_prob = logits.masked_fill(eye, float("-inf")).log_softmax(dim=1)
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(1)) / positives.sum(1).clamp(min=1)
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1).float()
    weights = anchors.float() / counts[labels]
    return (per_anchor * weights).sum() / weights.sum()
