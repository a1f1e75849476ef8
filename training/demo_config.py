"""The demo model's config: SAM 2.1 with every module of the official models, shrunk to train on
a 2-core CPU in about two hours and to ship in a few MB.

Choices (see README.md for the measurements):
- image_size 256: a 16 x 16 stride-16 grid and 64 x 64 mask logits. 320 would cost about 1.6x per
  step (tokens grow with the square of the size) for masks that are sharper by a quarter; on a
  CPU budget the extra steps are worth more.
- Hiera embed 32, one head, stages (1, 2, 4, 1): widths 32 / 64 / 128 / 256, most depth at
  stride 16 as in the official models (tiny is 96, stages 1, 2, 7, 2).
- window_spec (8, 4, 16, 8): at 256 the stride-16 and stride-32 grids are 16 x 16 and 8 x 8, so
  their windows are the whole grid (the official 14 / 7 would pad 16 to 28 and waste attention).
  The global-attention block (5) is then global by definition too.
- d_model 128, mem_dim 32 (4 tokens per object pointer, as officially), 2 memory-attention layers
  with a 512-wide FFN (the official 4 layers x 2048 is two thirds of tiny's compute), 2 fuser layers.
- num_maskmem 7 and 16 object pointers: the official memory rules, unchanged.

Training runs at 256, where steps are cheap; the bundled model ships its weights unchanged at 384
(`demo_384`, registered beside `demo`: the last two stages' windows widened to stay global), because
the 16-pixel cells of the 256 grid, not the weights, set much of its error: the same weights track
better at 384, and fine-tuning there added nothing measurable (training/README.md, "Status").
"""

from __future__ import annotations

import dataclasses

from streamsam.export.config import Sam2Config, get_config

# Registered in streamsam.export.config, so `streamsam export --config demo` knows it too.
DEMO_CONFIG = get_config("demo")

# Training experiments, known to the training tools only until one ships: does a wider model learn
# more per minute of this CPU? (README.md, "Status", session 9: no.) demo_wide_tracker has the
# official tracker width (d_model 256, mem_dim 64); demo_wide also widens the trunk by half.
_WIDE_TRACKER = dataclasses.replace(DEMO_CONFIG, name="demo_wide_tracker", d_model=256, mem_dim=64, memory_attention_ffn=1024)
EXPERIMENT_CONFIGS = {
    "demo_wide_tracker": _WIDE_TRACKER,
    "demo_wide": dataclasses.replace(_WIDE_TRACKER, name="demo_wide", hiera=dataclasses.replace(DEMO_CONFIG.hiera, embed_dim=48)),
}


def get_training_config(name: str, image_size: int | None = None) -> Sam2Config:
    """A config registered in streamsam.export.config ('demo', 'reduced', ...) or one of
    EXPERIMENT_CONFIGS, at its own input size or at image_size."""
    config = EXPERIMENT_CONFIGS[name] if name in EXPERIMENT_CONFIGS else get_config(name)
    return config if image_size is None else config.with_image_size(image_size)
