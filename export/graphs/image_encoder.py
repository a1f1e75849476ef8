"""The image_encoder graph: Hiera + FPN neck, and the mask decoder's projections of the two
high-resolution levels (the official `SAM2Base.forward_image`)."""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.sam2_model import Sam2Model


class ImageEncoderGraph(nn.Module):
    """image [F, 3, S, S] (ImageNet-normalised RGB, one per frame of the call) ->
    high_res_feats_0 [F, d/8, S/4, S/4], high_res_feats_1 [F, d/4, S/8, S/8], image_embed [F, d, S/16, S/16].

    The stride-16 position encoding is a constant of the memory attention graph, so it is not an output.
    """

    def __init__(self, model: Sam2Model) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder
        self.conv_s0 = model.sam_mask_decoder.conv_s0
        self.conv_s1 = model.sam_mask_decoder.conv_s1

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        backbone_fpn, _ = self.image_encoder(image)
        return self.conv_s0(backbone_fpn[0]), self.conv_s1(backbone_fpn[1]), backbone_fpn[2]
