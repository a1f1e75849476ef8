"""Position encodings of SAM 2: 2-D sine maps, SAM's random Fourier features and the 1-D sine
encoding of object-pointer distances.

Sine maps depend only on the grid size, so they are computed once per size and become constants of
an exported graph, never per-frame work.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_map(channels: int, height: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """The normalised 2-D sine encoding of a height x width grid: [channels, height, width].

    Half of the channels encode y, half x; each half interleaves sin and cos of the same frequency.
    """
    if channels % 4 != 0:
        raise ValueError(f"sine position map | received channels={channels}; expected a multiple of 4")
    half = channels // 2
    scale, eps = 2 * math.pi, 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32)
    x = torch.arange(1, width + 1, dtype=torch.float32)
    y = y / (y[-1] + eps) * scale
    x = x / (x[-1] + eps) * scale
    dim_t = torch.arange(half, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)

    def interleave(pos: torch.Tensor) -> torch.Tensor:  # [n] -> [n, half]
        angles = pos[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = interleave(y)[:, None, :].expand(height, width, half)
    pos_x = interleave(x)[None, :, :].expand(height, width, half)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()


class PositionEmbeddingSine(nn.Module):
    """Module form of `sine_position_map`, cached per grid size: [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (int(x.shape[-2]), int(x.shape[-1]))
        if size not in self._cache:
            self._cache[size] = sine_position_map(self.num_pos_feats, *size, self.temperature)
        pos = self._cache[size].to(device=x.device, dtype=x.dtype)
        return pos[None].expand(x.shape[0], -1, -1, -1)


class PositionEmbeddingRandom(nn.Module):
    """SAM's random Fourier features (`positional_encoding_gaussian_matrix` is a checkpoint buffer)."""

    def __init__(self, num_pos_feats: int = 64) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode coordinates normalised to [0, 1]: [..., 2] -> [..., 2 * num_pos_feats]."""
        coords = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an h x w grid (cell centres): [C, h, w]."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) / h
        x = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) / w
        grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1)  # [h, w, 2] as (x, y)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode pixel coordinates [B, N, 2] (x, y) of an image of `image_size` (h, w): [B, N, C]."""
        # A division (not a multiply by the reciprocal) keeps the official rounding at any size.
        size = torch.tensor([float(image_size[1]), float(image_size[0])], dtype=torch.float32, device=coords.device)
        return self._encode(coords.to(torch.float32) / size)


def get_1d_sine_pe(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding of (normalised) positions: [...] -> [..., dim], sin half then cos half."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / half)
    angles = pos.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
