"""The memory_attention graph: a frame's features conditioned on an object's memory bank (the
attention part of the official `SAM2Base._prepare_memory_conditioned_features`; choosing which
memories and pointers to pass is the runtime's memory bank).

Memories and pointers come in slots with validity flags: any number up to the bank's capacity (the
graph keeps both slot axes symbolic: no count may become a Python int while tracing), so a
preallocated ring can be passed as it is, or only its filled slots. Invalid slots get a large
negative bias on their attention logits, which leaves the softmax exactly as if they were absent
(exp underflows to 0). A row with no valid slot at all is an initial prompted frame:
the official model then adds `no_mem_embed` instead of attending.
"""

from __future__ import annotations

import torch
from torch import nn

from ..modeling.memory_attention import MASKED_KEY_BIAS
from ..modeling.position_encoding import get_1d_sine_pe, sine_position_map
from ..modeling.sam2_model import Sam2Model


class MemoryAttentionGraph(nn.Module):
    """image_embed [F, d, g, g] (the call's frames); memory [B, M, mem, g, g]; memory_tpos [B, M] int (0 = prompted frame,
    1..num_maskmem-1 = frames back); memory_valid [B, M] bool; obj_ptrs [B, P, d];
    obj_ptr_tpos [B, P] float (signed frame distance / (max pointers - 1)); obj_ptr_valid [B, P] bool;
    row_frame [B] int (the frame each row reads) -> conditioned_embed [B, d, g, g].
    """

    def __init__(self, model: Sam2Model) -> None:
        super().__init__()
        config = model.config
        self.memory_attention = model.memory_attention
        self.maskmem_tpos_enc = model.maskmem_tpos_enc  # [num_maskmem, 1, 1, mem]
        self.obj_ptr_tpos_proj = model.obj_ptr_tpos_proj
        self.no_mem_embed = model.no_mem_embed
        self.num_maskmem = config.num_maskmem
        self.obj_ptr_tpos_enc = config.obj_ptr_tpos_enc
        self.d_model, self.mem_dim = config.d_model, config.mem_dim
        g = config.feat_size
        # Constant sine encodings of the frame grid (the neck's) and of the memory grid (the memory
        # encoder's), flattened to tokens: [g*g, d] and [g*g, mem].
        self.register_buffer("curr_pos", sine_position_map(config.d_model, g, g).flatten(1).T.contiguous(), persistent=False)
        self.register_buffer("memory_grid_pos", sine_position_map(config.mem_dim, g, g).flatten(1).T.contiguous(), persistent=False)

    def forward(
        self,
        image_embed: torch.Tensor,
        memory: torch.Tensor,
        memory_tpos: torch.Tensor,
        memory_valid: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptr_tpos: torch.Tensor,
        obj_ptr_valid: torch.Tensor,
        row_frame: torch.Tensor,
    ) -> torch.Tensor:
        objects, _, mem, g, _ = memory.shape
        hw = self.memory_grid_pos.shape[0]
        curr = image_embed.index_select(0, row_frame.long()).flatten(2).transpose(1, 2)  # [B, HW, d], each row's frame
        curr_pos = self.curr_pos[None].expand(objects, -1, -1)

        # Spatial memories: tokens [B, M*HW, mem], position = grid sine + temporal encoding. The
        # official code adds maskmem_tpos_enc[num_maskmem - 1] to prompted frames (distance 0) and
        # maskmem_tpos_enc[d - 1] to the frame d steps away (its t_pos = num_maskmem - d).
        memory_tokens = memory.flatten(3).transpose(2, 3).flatten(1, 2)
        distance = memory_tpos.long()
        tpos_index = torch.where(distance == 0, torch.full_like(distance, self.num_maskmem - 1), distance - 1)
        tpos = self.maskmem_tpos_enc.reshape(self.num_maskmem, mem)[tpos_index]  # [B, M, mem]
        memory_pos = (self.memory_grid_pos[None, None] + tpos[:, :, None, :]).flatten(1, 2)

        # Object pointers: each d-vector is split into d/mem tokens sharing the pointer's position.
        split = self.d_model // self.mem_dim
        ptr_tokens = obj_ptrs.reshape(objects, -1, mem)
        if self.obj_ptr_tpos_enc:
            ptr_pos = self.obj_ptr_tpos_proj(get_1d_sine_pe(obj_ptr_tpos, dim=self.d_model))  # [B, P, mem]
        else:
            # SAM 2 gives pointers no temporal encoding; the input stays in the graph (contract).
            ptr_pos = (obj_ptr_tpos[..., None] * 0.0).expand(-1, -1, mem)
        ptr_pos = ptr_pos[:, :, None, :].expand(-1, -1, split, -1).flatten(1, 2)  # each pointer's, per token

        def per_token(flags: torch.Tensor, tokens: int) -> torch.Tensor:
            return flags[:, :, None].expand(-1, -1, tokens).flatten(1)

        valid = torch.cat([per_token(memory_valid, hw), per_token(obj_ptr_valid, split)], dim=1)
        has_memory = valid.any(dim=1, keepdim=True)  # [B, 1]
        # Rows without any memory attend to everything (their result is replaced below): a row with
        # every key masked would be meaningless, and could be NaN in a fused kernel.
        key_bias = torch.zeros_like(valid, dtype=curr.dtype)
        key_bias = key_bias.masked_fill(~valid & has_memory, MASKED_KEY_BIAS)
        conditioned = self.memory_attention(
            curr=curr,
            curr_pos=curr_pos,
            memory=torch.cat([memory_tokens, ptr_tokens], dim=1),
            memory_pos=torch.cat([memory_pos, ptr_pos], dim=1),
            num_obj_ptr_tokens=ptr_tokens.shape[1],
            memory_key_bias=key_bias,
        )
        # Initial prompted frames (no memory at all): features + no_mem_embed, as the official model.
        conditioned = torch.where(has_memory[:, :, None], conditioned, curr + self.no_mem_embed)
        return conditioned.transpose(1, 2).reshape(objects, self.d_model, g, g)
