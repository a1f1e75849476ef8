"""SAM 2 mask decoder, split for static graphs.

`MaskDecoder.predict_masks` always computes every output token; `select_masks` and
`finish_sam_heads` then reproduce the official choices (multimask or single mask, stability
fallback, best-IoU pick, object-score gating, object pointer) with tensor selects, so a run-time
multimask flag keeps both branches in one graph.

Parameter names follow the official `sam2.modeling.sam.mask_decoder` so checkpoints load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d

# Mask logit written where the object is predicted absent (official `NO_OBJ_SCORE`).
NO_OBJ_SCORE = -1024.0


class MaskDecoder(nn.Module):
    """Turns image embeddings plus prompt tokens into mask logits, IoU estimates and object scores."""

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.use_high_res_features = use_high_res_features
        self.pred_obj_scores = pred_obj_scores
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)

        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        if use_high_res_features:
            # Applied by the caller to the backbone's stride-4 / stride-8 maps (official
            # `SAM2Base.forward_image`); they live here only because the checkpoint puts them here.
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)

        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head = (
                MLP(transformer_dim, transformer_dim, 1, 3) if pred_obj_scores_mlp else nn.Linear(transformer_dim, 1)
            )

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the decoder for all output tokens of B objects.

        Inputs:
            image_embeddings: [B or 1, C, h, w] (batch 1 is shared by all objects).
            image_pe: [1, C, h, w], from `PromptEncoder.get_dense_pe()`.
            sparse_prompt_embeddings: [B, N, C].
            dense_prompt_embeddings: [B, C, h, w].
            high_res_features: (feat_s0 [B or 1, C/8, 4h, 4w], feat_s1 [B or 1, C/4, 2h, 2w]), already
                projected by conv_s0 / conv_s1; required iff use_high_res_features.
        Returns:
            masks [B, K, 4h, 4w] logits, iou_pred [B, K], mask_tokens [B, K, C],
            object_score_logits [B, 1], where K = num_multimask_outputs + 1 and index 0 is the
            single-mask output.
        """
        if (high_res_features is not None) != self.use_high_res_features:
            raise ValueError(
                f"MaskDecoder | received high_res_features={'set' if high_res_features is not None else None}; "
                f"expected {'a (feat_s0, feat_s1) pair' if self.use_high_res_features else 'None'}"
            )
        batch = sparse_prompt_embeddings.shape[0]
        output_tokens = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            output_tokens.insert(0, self.obj_score_token.weight)
        first_iou = 1 if self.pred_obj_scores else 0
        output_tokens = torch.cat(output_tokens, dim=0).unsqueeze(0).expand(batch, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        src = image_embeddings + dense_prompt_embeddings
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, first_iou]
        mask_tokens_out = hs[:, first_iou + 1 : first_iou + 1 + self.num_mask_tokens]

        src = src.transpose(1, 2).reshape(batch, c, h, w)
        if self.use_high_res_features:
            deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            upscaled = act1(norm1(deconv1(src) + feat_s1))
            upscaled = act2(deconv2(upscaled) + feat_s0)
        else:
            upscaled = self.output_upscaling(src)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, c_up, h_up, w_up = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(batch, c_up, h_up * w_up)).reshape(batch, -1, h_up, w_up)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:
            # Without a score head the object is always present (sigmoid(10) ~ 1), as officially.
            object_score_logits = iou_pred.new_full((batch, 1), 10.0)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    forward = predict_masks


def stability_scores(mask_logits: torch.Tensor, delta: float) -> torch.Tensor:
    """IoU of the masks thresholded at +delta and -delta: [..., H, W] -> [...]; 1 where both are empty."""
    mask_logits = mask_logits.flatten(-2)
    # Counted in float32: exact up to 2^24 pixels (fp16 would overflow at a 256x256 mask).
    area_inner = (mask_logits > delta).to(torch.float32).sum(-1)
    area_outer = (mask_logits > -delta).to(torch.float32).sum(-1)
    return torch.where(area_outer > 0, area_inner / area_outer, 1.0)


def select_masks(
    masks: torch.Tensor,
    iou_pred: torch.Tensor,
    mask_tokens: torch.Tensor,
    multimask_output: torch.Tensor,
    dynamic_multimask_via_stability: bool,
    stability_delta: float,
    stability_thresh: float,
    use_multimask_token_for_obj_ptr: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Official `MaskDecoder.forward` output selection (eval mode), with both branches in the graph.

    Inputs are `predict_masks` outputs: masks [B, K, H, W], iou_pred [B, K], mask_tokens [B, K, C],
    K = 1 + M (index 0 is the single-mask token, 1..M the multimask tokens, M = 3); and
    multimask_output, a bool tensor of shape [] or [B].

    Returns masks [B, M, H, W], iou [B, M] and sam_tokens [B, M, C]. Rows with multimask_output hold
    the M multimask outputs; other rows hold the single-mask output repeated M times, so
    `[:, :1]` of them is the official single output and an arg-max over M is a no-op for them.
    The single-mask output is token 0, or, with dynamic_multimask_via_stability, the best-IoU
    multimask output when token 0's mask is unstable (stability < stability_thresh). Its sam token
    is still token 0 even then (the official pointer always uses token 0 in single-mask mode).
    Pass a decoder's own `use_multimask_token_for_obj_ptr` to match its checkpoint.
    """
    if multimask_output.dtype != torch.bool or multimask_output.dim() > 1:
        raise ValueError(
            f"select_masks | received multimask_output {multimask_output.dtype} {tuple(multimask_output.shape)}; "
            "expected a bool tensor of shape [] or [B]"
        )
    multi = multimask_output.reshape(-1, 1)  # [B or 1, 1]
    multi_masks, multi_iou = masks[:, 1:], iou_pred[:, 1:]
    single_mask, single_iou = masks[:, :1], iou_pred[:, :1]

    if dynamic_multimask_via_stability:
        best = multi_iou.argmax(dim=1, keepdim=True)  # [B, 1]
        best_mask = multi_masks.gather(1, best[:, :, None, None].expand_as(single_mask))
        best_iou = multi_iou.gather(1, best)
        is_stable = stability_scores(single_mask, stability_delta) >= stability_thresh  # [B, 1]
        single_mask = torch.where(is_stable[:, :, None, None], single_mask, best_mask)
        single_iou = torch.where(is_stable, single_iou, best_iou)

    out_masks = torch.where(multi[:, :, None, None], multi_masks, single_mask)
    out_iou = torch.where(multi, multi_iou, single_iou)
    single_token = mask_tokens[:, :1]
    if use_multimask_token_for_obj_ptr:
        out_tokens = torch.where(multi[:, :, None], mask_tokens[:, 1:], single_token)
    else:
        out_tokens = single_token.expand(-1, multi_masks.shape[1], -1)
    return out_masks, out_iou, out_tokens


def finish_sam_heads(
    low_res_multimasks: torch.Tensor,
    ious: torch.Tensor,
    sam_tokens: torch.Tensor,
    object_score_logits: torch.Tensor,
    obj_ptr_proj: nn.Module,
    no_obj_ptr: torch.Tensor,
    multimask_output: bool | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The part of official `SAM2Base._forward_sam_heads` after the decoder (SAM 2.1 settings:
    pred_obj_scores, fixed_no_obj_ptr, hard no-object pointer). The official high-res masks are
    these low-res ones upsampled bilinearly (align_corners=False) to the image size; that is left to
    the caller.

    Inputs:
        low_res_multimasks [B, 3, H, W], ious [B, 3], sam_tokens [B, 3, C]: from `select_masks`.
        object_score_logits [B, 1]: from `MaskDecoder.predict_masks`.
        obj_ptr_proj: maps [B, C] tokens to [B, C] pointers. no_obj_ptr: [1, C].
        multimask_output: the flag given to `select_masks`. As a Python bool the outputs have the
            official shapes (M = 3 or 1); as a tensor they keep M = 3, single-mask rows repeated.
    Returns:
        low_res_multimasks [B, M, H, W] (NO_OBJ_SCORE where the object is absent), ious [B, M],
        low_res_masks [B, 1, H, W] (the best-IoU mask), obj_ptr [B, C], object_score_logits [B, 1].
    """
    is_obj_appearing = object_score_logits > 0  # [B, 1]
    # Masks get a hard object / no-object decision, as the memory encoder sees them.
    low_res_multimasks = torch.where(is_obj_appearing[:, :, None, None], low_res_multimasks, NO_OBJ_SCORE)

    # Single-mask rows repeat one output, so picking the best of M selects it whatever the tie rule.
    best = ious.argmax(dim=1, keepdim=True)  # [B, 1]
    _, _, h, w = low_res_multimasks.shape
    low_res_masks = low_res_multimasks.gather(1, best[:, :, None, None].expand(-1, 1, h, w))
    sam_token = sam_tokens.gather(1, best[:, :, None].expand(-1, 1, sam_tokens.shape[-1]))[:, 0]

    appearing = is_obj_appearing.to(sam_token.dtype)
    obj_ptr = appearing * obj_ptr_proj(sam_token) + (1 - appearing) * no_obj_ptr

    if isinstance(multimask_output, bool) and not multimask_output:
        low_res_multimasks, ious = low_res_multimasks[:, :1], ious[:, :1]
    return low_res_multimasks, ious, low_res_masks, obj_ptr, object_score_logits
