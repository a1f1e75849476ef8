"""The SAM 2 model as a container of its stages, with the official attribute names
(`image_encoder`, `memory_attention`, `memory_encoder`, `sam_prompt_encoder`, `sam_mask_decoder`,
`maskmem_tpos_enc`, `no_mem_embed`, ...) so an official `{"model": state_dict}` loads strictly.

It holds parameters and nothing else: the per-frame logic of the official `SAM2Base` is split over
the four graph wrappers in `streamsam.export.graphs` and the runtime's memory bank.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import Sam2Config
from .common import MLP
from .hiera import Hiera
from .image_encoder import FpnNeck, ImageEncoder
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

# Fixed by the official SAM2Base for every size.
DECODER_DEPTH = 2
DECODER_HEADS = 8
DECODER_MLP_DIM = 2048
IOU_HEAD_DEPTH = 3
IOU_HEAD_HIDDEN_DIM = 256
MASK_IN_CHANS = 16


class Sam2Model(nn.Module):
    def __init__(self, config: Sam2Config) -> None:
        super().__init__()
        self.config = config
        d, mem = config.d_model, config.mem_dim
        h = config.hiera
        self.image_encoder = ImageEncoder(
            trunk=Hiera(
                embed_dim=h.embed_dim,
                num_heads=h.num_heads,
                stages=h.stages,
                global_att_blocks=h.global_att_blocks,
                window_pos_embed_bkg_spatial_size=h.window_pos_embed_bkg_spatial_size,
                window_spec=h.window_spec,
            ),
            neck=FpnNeck(d_model=d, backbone_channel_list=h.channel_list),
        )
        self.memory_attention = MemoryAttention(
            d_model=d,
            num_layers=config.memory_attention_layers,
            dim_feedforward=config.memory_attention_ffn,
            kv_in_dim=mem,
        )
        self.memory_encoder = MemoryEncoder(in_dim=d, out_dim=mem, fuser_layers=config.fuser_layers)
        grid = config.feat_size
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=d,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=MASK_IN_CHANS,
        )
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=d,
            transformer=TwoWayTransformer(
                depth=DECODER_DEPTH, embedding_dim=d, num_heads=DECODER_HEADS, mlp_dim=DECODER_MLP_DIM
            ),
            iou_head_depth=IOU_HEAD_DEPTH,
            iou_head_hidden_dim=IOU_HEAD_HIDDEN_DIM,
        )

        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        # Unused at inference (the official code keeps it for training); loaded for strictness.
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj: nn.Module = nn.Linear(d, mem) if config.obj_ptr_tpos_enc else nn.Identity()
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))
        else:
            self.no_obj_embed_spatial = None
        # Turns a full-resolution mask prompt into the prompt encoder's low-res mask input.
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)

    @staticmethod
    def expected_shapes(config: Sam2Config) -> dict[str, tuple[int, ...]]:
        """Parameter and buffer shapes of a model of this config, without allocating its weights."""
        with torch.device("meta"):
            model = Sam2Model(config)
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}
