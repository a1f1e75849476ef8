"""Memory attention of SAM 2 / SAM 2.1: conditions the current frame's features on past memories.

Matches the SAM 2.1 configs (one head, ReLU FFN, position encoding added once at the input and to
the cross-attention keys, axial RoPE in every attention) with the official parameter names, so an
official `memory_attention` state dict loads strictly.

Export-oriented differences from the official code (same results):
- RoPE is real-valued: cos/sin tables and an elementwise pair rotation (ONNX has no complex type).
- Object-pointer keys get an identity rotation (cos 1, sin 0) instead of being sliced off, so each
  attention stays one MatMul-Softmax-MatMul over all keys.
- An optional additive key bias masks empty slots of a fixed-capacity memory bank.
- Queries are attended in chunks of at most 512 tokens (`query_chunk_size`): less memory, same result.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

# Bias for an empty memory slot in `memory_key_bias`. exp(logit - 1e4 - max) is exactly 0 in FP32 and
# FP16 for any realistic logit range, so masking is exact; being finite, it cannot turn a fully masked
# key tile of a tiled (online-softmax) kernel into NaN the way -inf can, and it fits in FP16.
MASKED_KEY_BIAS = -1e4

# The most queries one attention matrix is computed for (see query_chunk_size).
QUERY_CHUNK_TOKENS = 512

RopeTables = tuple[torch.Tensor, torch.Tensor]  # (cos, signed sin), each [tokens, dim] or [B, tokens, dim]


def axial_rope_angles(dim: int, height: int, width: int, theta: float = 10000.0) -> torch.Tensor:
    """SAM 2's axial RoPE angle per channel pair for a row-major height x width grid: [h*w, dim/2].

    The first dim/4 pairs rotate with the x (column) index, the last dim/4 with the y (row) index.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4, dtype=torch.float32) / dim))
    index = torch.arange(height * width, dtype=torch.float32)
    t_x = index % width
    t_y = torch.div(index, width, rounding_mode="floor")
    return torch.cat((torch.outer(t_x, freqs), torch.outer(t_y, freqs)), dim=-1)


def rope_tables(angles: torch.Tensor) -> RopeTables:
    """Angles [N, C/2] -> full-width tables for `rotate_pairs`: cos (c, c) and signed sin (-s, s) per
    pair, each [N, C]."""
    cos, sin = angles.cos(), angles.sin()
    return torch.stack((cos, cos), dim=-1).flatten(-2), torch.stack((-sin, sin), dim=-1).flatten(-2)


def rotate_pairs(x: torch.Tensor, tables: RopeTables, pair_swap: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of x [..., N, C] (tables broadcast to x): (x0, x1) -> (x0 c - x1 s, x1 c + x0 s).

    The official complex product in real arithmetic (equal up to float rounding), written as
    x * cos + x[..., pair_swap] * signed_sin (`pair_swap` = 1, 0, 3, 2, ...) so that it exports as one
    Gather and elementwise ops, with no reshapes.
    """
    cos, signed_sin = tables
    return x * cos + torch.index_select(x, -1, pair_swap) * signed_sin


def query_chunk_size(num_queries: int) -> int:
    """Queries per attention chunk: even chunks of at most QUERY_CHUNK_TOKENS. The softmax is per
    query, so chunks give the same result; an exported graph then holds one chunk's [queries, keys]
    matrices at a time rather than the frame's (at 1024: 4096 queries x 28736 keys, 470 MB per
    matrix, and a few of them per layer on ONNX Runtime CPU, which does not stream attention)."""
    chunks = -(-int(num_queries) // QUERY_CHUNK_TOKENS)
    return -(-int(num_queries) // chunks)


class RoPEAttention(nn.Module):
    """Single-head attention with RoPE on queries and keys.

    Parameters `q_proj`, `k_proj`, `v_proj`, `out_proj` as in the official module; the rotation
    tables are passed in, as they depend on the token layout, not on the weights.
    """

    def __init__(self, embedding_dim: int, kv_in_dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.v_proj = nn.Linear(kv_in_dim, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)
        self.scale = embedding_dim**-0.5
        # Not in the state dict (the official module has no such key).
        self.register_buffer("pair_swap", torch.arange(embedding_dim) ^ 1, persistent=False)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        q_rope: RopeTables,
        k_rope: RopeTables,
        key_bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """q [B, Nq, C], k and v [B, Nk, kv_in_dim], tables [B, Nq | Nk, C], key_bias [B, 1, 1, Nk]
        -> [B, Nq, C]."""
        # The scale goes on q before the first MatMul, as TensorRT's attention fusion requires.
        q = rotate_pairs(self.q_proj(q), q_rope, self.pair_swap) * self.scale
        k = rotate_pairs(self.k_proj(k), k_rope, self.pair_swap)
        v = self.v_proj(v)
        # A head axis of 1 gives the [B, heads, tokens, dim] layout fused attention kernels expect.
        k, v = k[:, None].transpose(-1, -2), v[:, None]
        parts = [self._attend(part, k, v, key_bias) for part in q.split(query_chunk_size(q.shape[1]), dim=1)]
        return self.out_proj(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])

    @staticmethod
    def _attend(q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor, key_bias: Optional[torch.Tensor]) -> torch.Tensor:
        logits = q[:, None] @ k_t
        if key_bias is not None:
            logits = logits + key_bias
        return (logits.softmax(dim=-1) @ v).squeeze(1)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm block: RoPE self-attention, RoPE cross-attention to memory, ReLU FFN."""

    def __init__(self, d_model: int, dim_feedforward: int, kv_in_dim: int) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, d_model)
        self.cross_attn_image = RoPEAttention(d_model, kv_in_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        memory_keys: torch.Tensor,
        q_rope: RopeTables,
        k_rope: RopeTables,
        key_bias: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """tgt [B, HW, C], memory and memory_keys (memory + its position) [B, M, kv_in_dim] -> [B, HW, C]."""
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x, q_rope, q_rope)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory_keys, memory, q_rope, k_rope, key_bias)
        x = self.norm3(tgt)
        return tgt + self.linear2(torch.relu(self.linear1(x)))


class MemoryAttention(nn.Module):
    """Stack of `MemoryAttentionLayer`s and a final LayerNorm (official names `layers.{i}.*`, `norm`)."""

    def __init__(
        self, d_model: int, num_layers: int, dim_feedforward: int, kv_in_dim: int, rope_theta: float = 10000.0
    ) -> None:
        super().__init__()
        if d_model % 4 != 0:
            raise ValueError(f"memory attention | received d_model={d_model}; expected a multiple of 4 (axial RoPE)")
        self.d_model = d_model
        self.rope_theta = rope_theta
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, dim_feedforward, kv_in_dim) for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        # Rotation tables per (grid tokens, device), built on first use; constants of an exported graph.
        self._rope_cache: dict[tuple[int, torch.device], RopeTables] = {}

    def _grid_rope(self, grid_tokens: int, device: torch.device) -> RopeTables:
        """Rotation tables of the square feature grid with `grid_tokens` tokens: 2 x [HW, C]."""
        key = (grid_tokens, device)
        if key not in self._rope_cache:
            side = math.isqrt(grid_tokens)
            if side * side != grid_tokens:
                raise ValueError(
                    f"memory attention | received {grid_tokens} query tokens; expected a square feature grid"
                )
            angles = axial_rope_angles(self.d_model, side, side, self.rope_theta)
            self._rope_cache[key] = tuple(t.to(device) for t in rope_tables(angles))
        return self._rope_cache[key]

    @staticmethod
    def _key_rope(q_rope: RopeTables, num_memories: int, num_ptr_tokens: int) -> RopeTables:
        """Key tables [B, M, C]: the grid's rotation once per spatial memory (rope_k_repeat), then an
        identity rotation (cos 1, sin 0) for the object-pointer tokens. Broadcast rather than copied
        out in a Python list, so that an exported graph keeps both counts symbolic."""
        batch, grid_tokens, dim = q_rope[0].shape
        cos, signed_sin = (t[:, None].expand(batch, num_memories, grid_tokens, dim).flatten(1, 2) for t in q_rope)
        if num_ptr_tokens > 0:  # no empty tensors in the graph
            cos = torch.cat([cos, cos.new_ones(1, 1, dim).expand(batch, num_ptr_tokens, dim)], dim=1)
            signed_sin = torch.cat([signed_sin, cos.new_zeros(1, 1, dim).expand(batch, num_ptr_tokens, dim)], dim=1)
        return cos, signed_sin

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int,
        memory_key_bias: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Batch-first: curr, curr_pos [B, HW, C]; memory, memory_pos [B, M, kv_in_dim] -> [B, HW, C].

        `memory` holds the spatial memories (each HW tokens, row-major grid) followed by
        `num_obj_ptr_tokens` object-pointer tokens, which get no rotation. `memory_key_bias` [B, M]
        is added to the scaled cross-attention logits: 0 for valid tokens, MASKED_KEY_BIAS for empty
        slots, which must still hold finite values (e.g. zeros) and leave at least one valid token.
        """
        batch, grid_tokens, _ = curr.shape
        num_keys = memory.shape[1]
        num_spatial = num_keys - num_obj_ptr_tokens
        if num_obj_ptr_tokens < 0 or num_spatial < 0 or num_spatial % grid_tokens != 0:
            raise ValueError(
                f"memory attention | received {num_keys} memory tokens with {num_obj_ptr_tokens} pointer tokens; "
                f"expected a multiple of {grid_tokens} spatial tokens plus the pointer tokens"
            )
        if memory_key_bias is not None and tuple(memory_key_bias.shape) != (batch, num_keys):
            raise ValueError(
                f"memory attention | received memory_key_bias {tuple(memory_key_bias.shape)}; "
                f"expected {(batch, num_keys)}"
            )
        # Expanded to the batch once here for all layers: the TorchScript exporter copies a captured
        # constant into every op that uses it, but leaves this Expand unfolded, so each table is stored
        # once and shared. The key tables are assembled in the graph for the same reason (7 memories at
        # 64x64 would otherwise store 2 x 29 MB more), at the cost of a cheap Expand per run.
        q_rope = tuple(t.to(curr.dtype).expand(batch, -1, -1) for t in self._grid_rope(grid_tokens, curr.device))
        k_rope = self._key_rope(q_rope, num_spatial // grid_tokens, num_obj_ptr_tokens)
        key_bias = None if memory_key_bias is None else memory_key_bias[:, None, None, :]

        output = curr + 0.1 * curr_pos
        memory_keys = memory + memory_pos  # the same in every layer
        for layer in self.layers:
            output = layer(output, memory, memory_keys, q_rope, k_rope, key_bias)
        return self.norm(output)
