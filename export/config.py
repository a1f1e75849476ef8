"""Model configurations: SAM 2 and SAM 2.1 with Hiera tiny / small / base_plus / large, at any
supported input size, plus reduced widths for tests.

The official project spreads these settings over YAML files, a 35-argument constructor and builder
overrides; here each part is one frozen dataclass that validates itself, and every derived size
(feature grid, pointer tokens, channel lists) is computed, never repeated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Version = Literal["sam2", "sam2.1"]

BACKBONE_STRIDE = 16  # image size / stride-16 feature grid (64 for 1024)
MIN_IMAGE_SIZE = 256
MAX_IMAGE_SIZE = 2048
IMAGE_SIZE_MULTIPLE = 32  # the stride of Hiera's last stage


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk. `stages` counts blocks per stage; `global_att_blocks` are block indices."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_pos_embed_bkg_spatial_size: tuple[int, int]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)

    def __post_init__(self) -> None:
        if len(self.stages) != 4 or len(self.window_spec) != 4:
            raise ValueError(
                f"HieraConfig | received stages={self.stages}, window_spec={self.window_spec}; "
                "expected 4 entries each (one per stage)"
            )
        depth = sum(self.stages)
        bad = [b for b in self.global_att_blocks if not 0 <= b < depth]
        if bad:
            raise ValueError(
                f"HieraConfig | received global_att_blocks={self.global_att_blocks}; "
                f"expected block indices in [0, {depth})"
            )

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Channels of the four stage outputs, deepest first (the FPN neck's backbone_channel_list)."""
        return tuple(self.embed_dim * 2**i for i in reversed(range(4)))


@dataclass(frozen=True)
class Sam2Config:
    """A whole SAM 2 model. Defaults are the official values shared by every size."""

    name: str
    version: Version
    hiera: HieraConfig
    image_size: int = 1024
    d_model: int = 256  # neck, memory attention, prompt encoder and mask decoder width
    mem_dim: int = 64  # memory encoder output width (key/value dim of memory attention)
    num_maskmem: int = 7  # 1 prompted-frame slot position + 6 recent frames
    max_obj_ptrs_in_encoder: int = 16
    memory_attention_layers: int = 4
    memory_attention_ffn: int = 2048
    fuser_layers: int = 2

    def __post_init__(self) -> None:
        if self.version not in ("sam2", "sam2.1"):
            raise ValueError(f"Sam2Config {self.name} | received version={self.version!r}; expected 'sam2' or 'sam2.1'")
        size = self.image_size
        if not (MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE and size % IMAGE_SIZE_MULTIPLE == 0):
            raise ValueError(
                f"Sam2Config {self.name} | received image_size={size}; expected a multiple of "
                f"{IMAGE_SIZE_MULTIPLE} between {MIN_IMAGE_SIZE} and {MAX_IMAGE_SIZE} "
                "(the official sizes are 512, 768 and 1024)"
            )
        if self.d_model % self.mem_dim != 0:
            raise ValueError(
                f"Sam2Config {self.name} | received d_model={self.d_model}, mem_dim={self.mem_dim}; "
                "expected d_model to be a multiple of mem_dim (object pointers are split into mem_dim tokens)"
            )

    # SAM 2.1's additions over SAM 2, all switched by the version.
    @property
    def no_obj_embed_spatial(self) -> bool:
        return self.version == "sam2.1"

    @property
    def obj_ptr_tpos_enc(self) -> bool:
        """Signed, projected temporal encodings of object pointers (add/proj/signed tpos in the YAML)."""
        return self.version == "sam2.1"

    @property
    def feat_size(self) -> int:
        """Side of the stride-16 feature grid: 64 at 1024."""
        return self.image_size // BACKBONE_STRIDE

    @property
    def low_res_mask_size(self) -> int:
        """Side of the mask decoder's output masks: 256 at 1024."""
        return 4 * self.feat_size

    @property
    def obj_ptr_tokens(self) -> int:
        """Memory tokens per object pointer (a d_model pointer split into mem_dim chunks): 4."""
        return self.d_model // self.mem_dim

    def with_image_size(self, image_size: int) -> Sam2Config:
        return dataclasses.replace(self, image_size=image_size)


_HIERA = {
    "tiny": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9), (7, 7)),
    "small": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13), (7, 7)),
    "base_plus": HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), (14, 14)),
    "large": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), (7, 7), window_spec=(8, 4, 16, 8)),
}

# Official checkpoint file stems use these short names (sam2.1_hiera_b+.pt, ...).
SIZE_ALIASES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}

CONFIGS: dict[str, Sam2Config] = {
    f"{version}_hiera_{size}": Sam2Config(name=f"{version}_hiera_{size}", version=version, hiera=hiera)
    for version in ("sam2", "sam2.1")
    for size, hiera in _HIERA.items()
}

# Reduced widths for tests: same modules and rules, a fraction of the compute.
CONFIGS["reduced"] = Sam2Config(
    name="reduced",
    version="sam2.1",
    hiera=HieraConfig(16, 1, (1, 1, 2, 1), (3,), (7, 7)),
    image_size=256,
    d_model=64,
    mem_dim=16,
    memory_attention_layers=2,
    memory_attention_ffn=128,
    fuser_layers=1,
)
CONFIGS["reduced_sam2"] = dataclasses.replace(CONFIGS["reduced"], name="reduced_sam2", version="sam2")

# The demo model trained on generated videos (training/): the same architecture, about 4.4 M
# parameters, at 256 (windows 16 and 8 cover the last two grids there without padding).
CONFIGS["demo"] = Sam2Config(
    name="demo",
    version="sam2.1",
    hiera=HieraConfig(32, 1, (1, 2, 4, 1), (5,), (7, 7), window_spec=(8, 4, 16, 8)),
    image_size=256,
    d_model=128,
    mem_dim=32,
    memory_attention_layers=2,
    memory_attention_ffn=512,
    fuser_layers=2,
)


# The demo weights at larger inputs (the bundled model runs as demo_384): the last two stages'
# windows cover their grids as 16 and 8 cover them at 256, so those stages stay global.
for _size in (384, 512):
    CONFIGS[f"demo_{_size}"] = dataclasses.replace(
        CONFIGS["demo"], name=f"demo_{_size}", image_size=_size,
        hiera=dataclasses.replace(CONFIGS["demo"].hiera, window_spec=(8, 4, _size // 16, _size // 32)),
    )


def get_config(name: str, image_size: int | None = None) -> Sam2Config:
    """A config by name ('sam2.1_hiera_tiny', 'tiny' for the SAM 2.1 one, 'sam2_hiera_b+', ...)."""
    key = name
    if key not in CONFIGS:
        for short, size in SIZE_ALIASES.items():
            key = key.replace(f"hiera_{short}", f"hiera_{size}") if key.endswith(f"hiera_{short}") else key
        if key in _HIERA:
            key = f"sam2.1_hiera_{key}"
    if key not in CONFIGS:
        raise KeyError(f"config | received {name!r}; expected one of {', '.join(sorted(CONFIGS))}")
    config = CONFIGS[key]
    return config if image_size is None else config.with_image_size(image_size)
