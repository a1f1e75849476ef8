"""Deterministic, file-free random weights for SAM 2 / SAM 2.1 state dicts.

Both the official model (in the golden-fixture generator, which imports this file by path
inside the official venv) and our re-implementation call :func:`seeded_state_dict` on their
own ``state_dict()`` and obtain *identical* tensors, because every tensor is a pure function
of ``(seed, key, shape)``:

* A NumPy ``Generator(PCG64)`` is seeded with the first 8 bytes (little endian) of
  ``sha256(f"{seed}:{key}")``; ``standard_normal(shape)`` is drawn in float64, scaled by the
  rule below and cast to float32 (then to the dtype of the given tensor, if any).
  The draw does not depend on any other key, on the order of keys or on the module.

Rules (first match wins; ``n`` is the standard normal draw, ``key`` the full state-dict key):

1. ``...positional_encoding_gaussian_matrix`` (a buffer of the SAM prompt encoder):
   ``n`` (std 1, like the official init with ``scale=1``).
2. Object-score head, last bias (``...pred_obj_score_head.layers.2.bias`` for the MLP head
   of SAM 2 / 2.1 configs, ``...pred_obj_score_head.bias`` for the linear variant):
   the constant :data:`OBJ_SCORE_BIAS` (no noise). Chosen so that, with these weights, most
   objects are predicted present (score > 0) and a few absent in the golden cases.
3. Embedding-like parameters (:data:`EMBEDDING_PATTERNS`: Hiera ``pos_embed`` /
   ``pos_embed_window``, ``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``,
   ``no_obj_ptr``, ``no_obj_embed_spatial``, prompt-encoder ``point_embeddings.*``,
   ``not_a_point_embed``, ``no_mask_embed``, decoder ``iou_token``, ``mask_tokens``,
   ``obj_score_token``): ``EMBED_STD * n``.
4. Layer scale ``...gamma`` (ConvNeXt ``CXBlock`` in the memory fuser):
   ``GAMMA_MEAN + GAMMA_STD * n``.
5. Last-layer weights of the SAM output heads (:data:`HEAD_GAINS`: mask hypernetwork MLPs,
   IoU head, object-score head): ``gain * n / sqrt(fan_in)`` (the hypernetwork gain is also
   scaled by ``sqrt(HYPER_REF_DIM / shape[0])``), so that mask logits are large
   enough for the dynamic-multimask stability test to go both ways and IoU / object scores
   spread out (a plain ``n / sqrt(fan_in)`` gives logits of std ~1 and near-equal scores).
6. Any other tensor with at most one dimension whose key ends in ``bias``: ``BIAS_STD * n``.
7. Any other tensor with at most one dimension (LayerNorm / LayerNorm2d weights):
   ``1 + NORM_STD * n``.
8. Everything else (Linear / Conv / ConvTranspose weights, >= 2-D):
   ``n / sqrt(fan_in)`` with ``fan_in = prod(shape[1:])``.

Only floating-point tensors are randomised; integer / bool entries of a state dict are
returned unchanged (cloned). Keys are never added or dropped.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Mapping, Sequence, Union

import numpy as np
import torch

#: Constant bias of the object-score head's last layer (rule 2).
OBJ_SCORE_BIAS = 2.5
#: Std of embedding-like parameters (rule 3).
EMBED_STD = 0.3
#: Layer-scale ``gamma`` mean and std (rule 4).
GAMMA_MEAN = 0.1
GAMMA_STD = 0.02
#: Std of 1-D biases (rule 5).
BIAS_STD = 0.02
#: Std of 1-D norm weights around 1 (rule 6).
NORM_STD = 0.1

#: Regex (``re.search`` on the full key) -> gain of output-head last-layer weights (rule 5).
HEAD_GAINS = {
    r"(^|\.)output_hypernetworks_mlps\.\d+\.layers\.2\.weight$": 6.0,
    r"(^|\.)iou_prediction_head\.layers\.2\.weight$": 4.0,
    r"(^|\.)pred_obj_score_head\.(layers\.2\.)?weight$": 4.0,
}
#: The hypernetwork gain is multiplied by ``sqrt(HYPER_REF_DIM / shape[0])``: a mask logit is
#: a dot product over ``shape[0] = transformer_dim // 8`` channels, so this keeps the logit
#: scale (std ~5) independent of the width (gain 6 at width 64, 3 at the real width 256).
HYPER_REF_DIM = 8
#: Regexes (``re.search`` on the full key) of embedding-like parameters (rule 3).
EMBEDDING_PATTERNS = (
    r"(^|\.)pos_embed(_window)?$",
    r"(^|\.)maskmem_tpos_enc$",
    r"(^|\.)no_mem_(embed|pos_enc)$",
    r"(^|\.)no_obj_(ptr|embed_spatial)$",
    r"(^|\.)point_embeddings\.\d+\.weight$",
    r"(^|\.)not_a_point_embed\.weight$",
    r"(^|\.)no_mask_embed\.weight$",
    r"(^|\.)(iou_token|mask_tokens|obj_score_token)\.weight$",
)
_EMBEDDING_RE = re.compile("|".join(f"(?:{p})" for p in EMBEDDING_PATTERNS))
_OBJ_SCORE_BIAS_RE = re.compile(r"(^|\.)pred_obj_score_head\.(layers\.2\.)?bias$")

ShapeLike = Sequence[int]
StateLike = Mapping[str, Union[ShapeLike, torch.Tensor]]


def key_rng(key: str, seed: int = 0) -> np.random.Generator:
    """NumPy generator seeded by a stable hash of ``f"{seed}:{key}"``."""
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest[:8], "little")))


def init_rule(key: str, shape: ShapeLike) -> str:
    """Name of the rule (see module docstring) applied to ``key`` with ``shape``."""
    if key.endswith("positional_encoding_gaussian_matrix"):
        return "gaussian_matrix"
    if _OBJ_SCORE_BIAS_RE.search(key):
        return "obj_score_bias"
    if _EMBEDDING_RE.search(key):
        return "embedding"
    if key.endswith("gamma"):
        return "layer_scale"
    if _head_gain(key) is not None:
        return "head_last_layer"
    if len(shape) <= 1:
        return "bias" if key.endswith("bias") else "norm_weight"
    return "fan_in"


def _head_gain(key: str) -> float | None:
    """Gain of ``key`` if it is an output-head last-layer weight (rule 5), else None."""
    for pattern, gain in HEAD_GAINS.items():
        if re.search(pattern, key):
            return gain
    return None


def _scale(rule: str, key: str, shape: ShapeLike, draw: np.ndarray) -> np.ndarray:
    """Apply ``rule`` to the standard normal ``draw`` of ``key``."""
    if rule == "gaussian_matrix":
        return draw
    if rule == "obj_score_bias":
        return np.full(draw.shape, OBJ_SCORE_BIAS, dtype=np.float64)
    if rule == "embedding":
        return EMBED_STD * draw
    if rule == "layer_scale":
        return GAMMA_MEAN + GAMMA_STD * draw
    if rule == "bias":
        return BIAS_STD * draw
    if rule == "norm_weight":
        return 1.0 + NORM_STD * draw
    fan_in = math.prod(int(s) for s in shape[1:])
    gain = 1.0
    if rule == "head_last_layer":
        gain = _head_gain(key)
        if "output_hypernetworks_mlps" in key:
            gain *= math.sqrt(HYPER_REF_DIM / int(shape[0]))
    return gain * draw / math.sqrt(max(fan_in, 1))


def seeded_tensor(key: str, shape: ShapeLike, seed: int = 0) -> torch.Tensor:
    """float32 tensor for state-dict ``key`` of ``shape``, a pure function of (seed, key, shape)."""
    shape = tuple(int(s) for s in shape)
    draw = key_rng(key, seed).standard_normal(size=shape, dtype=np.float64)
    values = _scale(init_rule(key, shape), key, shape, draw)
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def seeded_state_dict(shapes: StateLike, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded tensors for every key of ``shapes``.

    ``shapes`` maps keys to shapes (sequences of ints) or to tensors (e.g. a module's
    ``state_dict()``). For tensor values, floating tensors are replaced by seeded values cast
    to their dtype; non-floating tensors are returned cloned and unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in shapes.items():
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                out[key] = value.detach().clone()
                continue
            out[key] = seeded_tensor(key, value.shape, seed).to(value.dtype)
        else:
            out[key] = seeded_tensor(key, value, seed)
    return out


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the sorted keys and float32 bytes of a state dict: the golden fixtures record it,
    so a test can tell that its weights are the ones the fixtures were made with."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()
