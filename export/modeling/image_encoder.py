"""SAM 2 image encoder: Hiera trunk + FPN neck (official parameter names `trunk.*`, `neck.*`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine

# Fixed neck settings of every released SAM 2 / 2.1 model.
_FPN_TOP_DOWN_LEVELS = (2, 3)  # only these levels receive the upsampled coarser level


class FpnNeck(nn.Module):
    """Projects each trunk level to d_model with a 1x1 conv and adds, on the top-down levels, the
    nearest-upsampled coarser output. Also returns the sine position map of every level."""

    def __init__(self, d_model: int, backbone_channel_list: tuple[int, ...]) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)  # deepest first
        self.position_encoding = PositionEmbeddingSine(d_model)
        self.convs = nn.ModuleList()
        for channels in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module("conv", nn.Conv2d(channels, d_model, kernel_size=1))
            self.convs.append(lateral)

    def forward(self, xs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """xs: trunk maps [B, C_i, H_i, W_i], shallowest first (C_i = backbone_channel_list[-1 - i]).

        Returns (features, pos), each a list of [B, d_model, H_i, W_i] in the same order.
        """
        n = len(self.convs)
        if len(xs) != n:
            raise ValueError(f"FpnNeck | received {len(xs)} feature maps; expected {n}")
        features: list[torch.Tensor] = []  # filled coarse to fine, reversed at the end
        prev: torch.Tensor | None = None
        for i in range(n - 1, -1, -1):  # coarse to fine
            lateral = self.convs[n - 1 - i](xs[i])
            if i in _FPN_TOP_DOWN_LEVELS and prev is not None:
                # The official upsamples in FP32 (the sum then promotes to FP32 under half precision).
                top_down = F.interpolate(prev.to(torch.float32), scale_factor=2.0, mode="nearest")
                prev = lateral + top_down
            else:
                prev = lateral
            features.append(prev)
        features.reverse()
        pos = [self.position_encoding(f).to(f.dtype) for f in features]
        return features, pos


class ImageEncoder(nn.Module):
    """Trunk + neck, dropping the `scalp` coarsest levels of the output."""

    def __init__(self, trunk: Hiera, neck: FpnNeck, scalp: int = 1) -> None:
        super().__init__()
        if trunk.channel_list != neck.backbone_channel_list:
            raise ValueError(
                f"ImageEncoder | received trunk channels {trunk.channel_list}; "
                f"expected the neck's backbone_channel_list {neck.backbone_channel_list}"
            )
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """sample: normalised image [B, 3, H, W].

        Returns (backbone_fpn, vision_pos_enc): lists of [B, d_model, H / s, W / s] for
        s = 4, 8, 16 (with scalp=1; the last entry is the official `vision_features`).
        """
        features, pos = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, pos = features[: -self.scalp], pos[: -self.scalp]
        return features, pos
