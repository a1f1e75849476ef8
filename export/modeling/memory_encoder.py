"""Memory encoder of SAM 2 / SAM 2.1: fuses a frame's image features with its predicted mask into a
memory, as in the official configs (stride-2 3x3 mask downsampling to 1/16, ConvNeXt fuser).

Parameter names match the official module (`mask_downsampler.encoder.*`, `pix_feat_proj`,
`fuser.layers.{i}.*`, `out_proj`), so an official `memory_encoder` state dict loads strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine

MASK_STRIDE = 16  # masks come at 16x the feature resolution


class MaskDownSampler(nn.Module):
    """Four stride-2 conv + LayerNorm2d + GELU stages (channels 1 -> 4 -> 16 -> 64 -> 256), then a
    1x1 conv to `embed_dim`: [B, 1, 16h, 16w] -> [B, embed_dim, h, w]."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(4):
            self.encoder.append(nn.Conv2d(channels, channels * 4, kernel_size=3, stride=2, padding=1))
            self.encoder.append(LayerNorm2d(channels * 4))
            self.encoder.append(nn.GELU())
            channels *= 4
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm2d, pointwise MLP (x4, GELU), layer scale `gamma`,
    residual: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim)
        # Linear layers on channels-last tokens, as the checkpoint stores them.
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + y.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    """`num_layers` CXBlocks (`layers.{i}`); the official input projection is unused (identity)."""

    def __init__(self, dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Image features + mask -> memory features and their sine position encoding."""

    def __init__(self, in_dim: int, out_dim: int, fuser_layers: int) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, fuser_layers)
        # Like the official module: a projection only when the width changes (no keys otherwise).
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        self.position_encoding = PositionEmbeddingSine(out_dim)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat [B, in_dim, h, w], masks [B, 1, 16h, 16w] (logits, or probabilities when
        `skip_mask_sigmoid`) -> (vision_features, vision_pos_enc), each [B, out_dim, h, w]."""
        b, _, h, w = pix_feat.shape
        expected = (b, 1, MASK_STRIDE * h, MASK_STRIDE * w)
        if tuple(masks.shape) != expected:
            raise ValueError(f"memory encoder | received masks {tuple(masks.shape)}; expected {expected}")
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
