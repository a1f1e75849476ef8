"""Hiera, the hierarchical ViT trunk of the SAM 2 image encoder (official parameter names).

Tokens travel channels-last, [B, H, W, C]. Four stages run at strides 4, 8, 16 and 32; the first
block of stages 2-4 halves the grid by max-pooling its queries and doubles width and heads. Blocks
attend inside non-overlapping windows (zero-padded to a whole number of windows, padding not masked,
as in the official model) except the listed global-attention blocks.

All sizes are Python ints taken from static shapes, so the graph traces to ONNX with no control flow
on tensor values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP

# Fixed settings of every released SAM 2 / 2.1 trunk.
_Q_POOL = 3  # stage changes that pool queries (all three)
_Q_STRIDE = (2, 2)
_DIM_MUL = 2.0
_HEAD_MUL = 2.0
_MLP_RATIO = 4.0
_PATCH_STRIDE = 4


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split [B, H, W, C] into windows [B * nWin, ws, ws, C], zero-padding the bottom/right edges.

    Returns the windows and the padded size (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h = (window_size - h % window_size) % window_size
    pad_w = (window_size - w % window_size) % window_size
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.reshape(b, hp // window_size, window_size, wp // window_size, window_size, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`: [B * nWin, ws, ws, C] -> [B, H, W, C], padding cropped."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window_size) * (wp // window_size))
    x = windows.reshape(b, hp // window_size, wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _pool(x: torch.Tensor, pool: nn.Module) -> torch.Tensor:
    """Apply a 2-D pooling module to a channels-last map: [B, H, W, C] -> [B, H', W', C]."""
    return pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: [B, 3, H, W] -> [B, H/4, W/4, C] (parameters `proj.*`)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=_PATCH_STRIDE, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled (the output then has the pooled
    grid): [B, H, W, dim] -> [B, H', W', dim_out]."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_pool: nn.Module | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_pool = q_pool
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)  # each [B, HW, heads, head_dim]
        if self.q_pool is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_pool)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, self.num_heads, -1)
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        x = x.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(x)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with optional windowing and query pooling:
    [B, H, W, dim] -> [B, H', W', dim_out] (H' = H / 2 when `q_stride` is given)."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        q_stride: tuple[int, int] | None,
        window_size: int,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size  # 0: global attention
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.pool = nn.MaxPool2d(kernel_size=q_stride, stride=q_stride) if q_stride else None
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_pool=self.pool)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * _MLP_RATIO), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            # The residual branch is projected from the *normed* tokens, then pooled like the queries.
            shortcut = self.proj(x)
            if self.pool is not None:
                shortcut = _pool(shortcut, self.pool)

        window_size = self.window_size
        if window_size > 0:
            x, padded_hw = window_partition(x, window_size)
        x = self.attn(x)
        if window_size > 0:
            h, w = shortcut.shape[1], shortcut.shape[2]
            if self.q_stride:
                # Query pooling shrank each window, so the output is re-tiled with the smaller
                # window over the pooled grid (padded to a whole number of those windows).
                window_size //= self.q_stride[0]
                padded_hw = (math.ceil(h / window_size) * window_size, math.ceil(w / window_size) * window_size)
            x = window_unpartition(x, window_size, padded_hw, (h, w))

        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class Hiera(nn.Module):
    """Hiera trunk: image [B, 3, H, W] -> 4 feature maps [B, C_i, H / s, W / s], s = 4, 8, 16, 32,
    with C_i = embed_dim * 2**i. H and W must be multiples of 32 (and of 4 * window_spec[0])."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        stages: tuple[int, ...],
        global_att_blocks: tuple[int, ...],
        window_pos_embed_bkg_spatial_size: tuple[int, int],
        window_spec: tuple[int, ...],
    ) -> None:
        super().__init__()
        if len(stages) != _Q_POOL + 1 or len(window_spec) != len(stages):
            raise ValueError(
                f"Hiera | received stages={tuple(stages)}, window_spec={tuple(window_spec)}; "
                f"expected {_Q_POOL + 1} stages and one window size per stage"
            )
        self.window_spec = tuple(window_spec)
        self.global_att_blocks = tuple(global_att_blocks)
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]]  # first block of stages 2-4
        # Input sides must survive 3 halvings of the stride-4 grid, and the stride-4 grid must tile
        # exactly with the first-stage window embedding.
        self.size_multiple = math.lcm(_PATCH_STRIDE * 2**_Q_POOL, _PATCH_STRIDE * self.window_spec[0])

        self.patch_embed = PatchEmbed(embed_dim)
        # Background embedding (interpolated to the grid) plus a window embedding tiled over it.
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))

        self.blocks = nn.ModuleList()
        dim, stage = embed_dim, 0
        for i in range(sum(stages)):
            # The first block of a stage still windows with the previous stage's size: its
            # queries are pooled, so its output windows have the new stage's size.
            window_size = 0 if i in self.global_att_blocks else self.window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out = int(dim * _DIM_MUL)
                num_heads = int(num_heads * _HEAD_MUL)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    num_heads,
                    q_stride=_Q_STRIDE if i in q_pool_blocks else None,
                    window_size=window_size,
                )
            )
            dim = dim_out

        # Deepest first, as the official `channel_list` / neck `backbone_channel_list`.
        self.channel_list = [self.blocks[end].dim_out for end in self.stage_ends[::-1]]

    def _get_pos_embed(self, hw: tuple[int, int]) -> torch.Tensor:
        """Position embedding of an h x w stride-4 grid: [1, h, w, embed_dim]."""
        h, w = hw
        ws = self.window_spec[0]
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        # `repeat` == official `tile` here; it exports to a single Tile node (tile's symbolic adds If nodes).
        pos = pos + self.pos_embed_window.repeat(1, 1, h // ws, w // ws)
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[B, 3, H, W] -> [B, C_i, H / s, W / s] for s = 4, 8, 16, 32 (shallowest first)."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % self.size_multiple or x.shape[3] % self.size_multiple:
            raise ValueError(
                f"Hiera | received input of shape {tuple(x.shape)}; "
                f"expected [B, 3, H, W] with H and W multiples of {self.size_multiple}"
            )
        x = self.patch_embed(x)
        x = x + self._get_pos_embed((int(x.shape[1]), int(x.shape[2])))
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
