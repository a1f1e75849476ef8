"""The memory_encoder graph: a frame's mask fused with its unconditioned features into a memory
(the official `SAM2Base._encode_new_memory`)."""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.sam2_model import Sam2Model

# The official sigmoid_scale_for_mem_enc / sigmoid_bias_for_mem_enc, shared by every config.
MASK_SCALE = 20.0
MASK_BIAS = -10.0


class MemoryEncoderGraph(nn.Module):
    """image_embed [F, d, g, g] (the call's frames' own features, before memory attention),
    high_res_masks [B, 1, S, S] (mask logits), object_score_logits [B, 1],
    is_mask_from_pts [B] (bool: the mask comes from clicks on this frame, so it is binarised),
    row_frame [B] int (the frame each row reads) -> maskmem_features [B, mem_dim, g, g].

    The memory's position encoding is a constant, kept inside the memory attention graph.
    """

    def __init__(self, model: Sam2Model) -> None:
        super().__init__()
        self.memory_encoder = model.memory_encoder
        self.no_obj_embed_spatial = model.no_obj_embed_spatial

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        is_mask_from_pts: torch.Tensor,
        row_frame: torch.Tensor,
    ) -> torch.Tensor:
        pix_feat = image_embed.index_select(0, row_frame.long())
        binarised = (high_res_masks > 0).to(high_res_masks.dtype)
        mask_for_mem = torch.where(is_mask_from_pts[:, None, None, None], binarised, torch.sigmoid(high_res_masks))
        mask_for_mem = mask_for_mem * MASK_SCALE + MASK_BIAS
        features, _ = self.memory_encoder(pix_feat, mask_for_mem, skip_mask_sigmoid=True)
        if self.no_obj_embed_spatial is not None:
            absent = (object_score_logits <= 0).to(features.dtype)  # [B, 1]
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        else:
            # SAM 2 ignores the score here; the input stays in the graph (contract).
            features = features + 0.0 * object_score_logits[..., None, None]
        return features
