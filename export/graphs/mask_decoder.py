"""The mask_decoder graph: SAM's prompt encoder and two-way mask decoder with the SAM 2 heads
(the official `SAM2Base._forward_sam_heads`), for a batch of objects on one frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling.mask_decoder import finish_sam_heads, select_masks
from ..modeling.sam2_model import Sam2Model

# The official builders (build_sam2 and build_sam2_video_predictor) switch this on for inference:
# when one mask is asked for and it is unstable, the best multimask output replaces it.
DYNAMIC_MULTIMASK_VIA_STABILITY = True
DYNAMIC_MULTIMASK_STABILITY_DELTA = 0.05
DYNAMIC_MULTIMASK_STABILITY_THRESH = 0.98


class MaskDecoderGraph(nn.Module):
    """conditioned_embed [B, d, g, g]; high_res_feats_0 [F, d/8, 4g, 4g]; high_res_feats_1 [F, d/4, 2g, 2g] (the call's frames);
    point_coords [B, N, 2] (x, y pixels of the model input); point_labels [B, N] int;
    mask_input [B, 1, 4g, 4g] logits; has_mask_input [B, 1] (1 = use mask_input);
    multimask_output [B] bool; row_frame [B] int (the frame each row reads)
    -> low_res_multimasks [B, 3, 4g, 4g] and multimask_ious [B, 3] (the three multimask outputs; rows
    without multimask repeat their single mask), low_res_masks [B, 1, 4g, 4g] (the chosen mask),
    high_res_masks [B, 1, S, S], ious [B, 1], obj_ptr [B, d], object_score_logits [B, 1].

    The video path (`_forward_sam_heads`) sets the chosen masks of an absent object (object score
    <= 0) to NO_OBJECT_LOGIT and its pointer to `no_obj_ptr`; `low_res_multimasks` stay ungated, as
    SAM 2's image predictor returns them.
    """

    def __init__(self, model: Sam2Model) -> None:
        super().__init__()
        self.sam_prompt_encoder = model.sam_prompt_encoder
        self.sam_mask_decoder = model.sam_mask_decoder
        self.obj_ptr_proj = model.obj_ptr_proj
        self.no_obj_ptr = model.no_obj_ptr
        self.image_size = model.config.image_size

    def forward(
        self,
        conditioned_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        multimask_output: torch.Tensor,
        row_frame: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        sparse, dense = self.sam_prompt_encoder(point_coords, point_labels, mask_input, has_mask_input)
        # Each row reads its own frame's high-res features.
        high_res_feats_0 = high_res_feats_0.index_select(0, row_frame.long())
        high_res_feats_1 = high_res_feats_1.index_select(0, row_frame.long())
        masks, iou_pred, mask_tokens, object_score_logits = self.sam_mask_decoder.predict_masks(
            conditioned_embed, self.sam_prompt_encoder.get_dense_pe(), sparse, dense, (high_res_feats_0, high_res_feats_1)
        )
        multimasks, multimask_ious, sam_tokens = select_masks(
            masks,
            iou_pred,
            mask_tokens,
            multimask_output,
            dynamic_multimask_via_stability=DYNAMIC_MULTIMASK_VIA_STABILITY,
            stability_delta=DYNAMIC_MULTIMASK_STABILITY_DELTA,
            stability_thresh=DYNAMIC_MULTIMASK_STABILITY_THRESH,
            use_multimask_token_for_obj_ptr=True,
        )
        _, _, low_res_masks, obj_ptr, object_score_logits = finish_sam_heads(
            multimasks, multimask_ious, sam_tokens, object_score_logits, self.obj_ptr_proj, self.no_obj_ptr, multimask_output
        )
        best_iou = multimask_ious.max(dim=1, keepdim=True).values
        high_res_masks = F.interpolate(
            low_res_masks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return multimasks, multimask_ious, low_res_masks, high_res_masks, best_iou, obj_ptr, object_score_logits
