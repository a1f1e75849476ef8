"""SAM 2 prompt encoder with fixed-shape inputs, for static graphs.

Parameter names follow the official `sam2.modeling.sam.prompt_encoder` so checkpoints load strictly.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingRandom


class PromptEncoder(nn.Module):
    """Embeds clicks / box corners into sparse tokens and an optional low-res mask into a dense map.

    Equals the official `PromptEncoder.forward(points=(coords, labels), boxes=None, masks=...)`, which
    is how `SAM2Base._forward_sam_heads` calls it (boxes always arrive as two points labelled 2 and 3).
    """

    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # Indexed by label: 0 negative click, 1 positive click, 2 box top-left, 3 box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid: [1, C, h, w]."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """points [B, N, 2] (x, y input-image pixels), labels [B, N] -> sparse tokens [B, N + 1, C].

        Label -1 marks padding: its token is `not_a_point_embed` alone, whatever its coordinates.
        One extra padding token is appended because the official encoder does so whenever no box
        tensor is passed, which `_forward_sam_heads` never does.
        """
        if points.dim() != 3 or points.shape[-1] != 2 or labels.shape != points.shape[:2]:
            raise ValueError(
                f"PromptEncoder | received points {tuple(points.shape)} and labels {tuple(labels.shape)}; "
                "expected [B, N, 2] and [B, N]"
            )
        # Pixel indices address pixel corners; the encoding expects pixel centres.
        pe = self.pe_layer.forward_with_coords(points + 0.5, self.input_image_size)
        labels = labels[..., None]
        tokens = torch.where(labels == -1, self.not_a_point_embed.weight, pe)
        for label, embedding in enumerate(self.point_embeddings):
            tokens = torch.where(labels == label, tokens + embedding.weight, tokens)
        pad = self.not_a_point_embed.weight.expand(tokens.shape[0], 1, -1)
        return torch.cat([tokens, pad], dim=1)

    def embed_mask(self, masks: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """masks [B, 1, 4h, 4w] logits, has_mask_input [B, 1] (1 use mask, 0 none) -> [B, C, h, w]."""
        if tuple(masks.shape[-2:]) != self.mask_input_size or masks.shape[1] != 1:
            raise ValueError(
                f"PromptEncoder | received masks {tuple(masks.shape)}; "
                f"expected [B, 1, {self.mask_input_size[0]}, {self.mask_input_size[1]}]"
            )
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        # A select rather than a blend keeps the no-mask path exact even if the padded mask holds
        # non-finite values.
        return torch.where(has_mask_input[:, :, None, None] > 0.5, self.mask_downscaling(masks), no_mask)

    def forward(
        self, points: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, has_mask_input: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (sparse [B, N + 1, C], dense [B, C, h, w]); see `embed_points` and `embed_mask`."""
        return self.embed_points(points, labels), self.embed_mask(masks, has_mask_input)
