"""Official SAM 2 / SAM 2.1 checkpoints: read them safely, recognise their config, load them strictly.

An official file is `{"model": state_dict}` with the official module names; it is read with
`torch.load(weights_only=True)`, so no code in the file runs. When no config is named, it is
recognised from the weights' shapes (trunk width and depth, and SAM 2.1's extra parameters).
"""

from __future__ import annotations

from pathlib import Path

import torch

from streamsam.errors import CheckpointError

from .config import CONFIGS, Sam2Config, get_config
from .modeling.sam2_model import Sam2Model

_TRUNK_WIDTH = "image_encoder.trunk.patch_embed.proj.weight"
_SAM21_ONLY = "no_obj_embed_spatial"
_MAX_LISTED = 8


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint file (`{"model": ...}` as published, or a bare state dict)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} | received a path that is not a file; expected a .pt checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    # The weights-only unpickler fails with many exception types on foreign or cut bytes (IndexError,
    # UnpicklingError, RuntimeError from the zip reader, ...): each means "not a readable checkpoint".
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} | received a file of {path.stat().st_size} bytes that torch.load cannot read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); expected a complete PyTorch checkpoint "
            "such as sam2.1_hiera_tiny.pt. The file may be truncated (re-download it) or not a checkpoint."
        ) from exc
    state = payload.get("model", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"checkpoint {path} | received a {type(payload).__name__} without a state dict of tensors; "
            'expected {"model": state_dict} as in the official SAM 2 checkpoints'
        )
    return state


def detect_config(state: dict[str, torch.Tensor]) -> Sam2Config | None:
    """The registered config whose parameter names and shapes match these weights exactly, if any."""
    if _TRUNK_WIDTH not in state:
        return None
    width = state[_TRUNK_WIDTH].shape[0]
    depth = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
    version = "sam2.1" if _SAM21_ONLY in state else "sam2"
    for config in CONFIGS.values():
        hiera = config.hiera
        if (hiera.embed_dim, sum(hiera.stages), config.version) == (width, depth, version):
            if _shape_problems(Sam2Model.expected_shapes(config), state) == ([], [], []):
                return config
    return None


def _shape_problems(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]):
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {expected[k]}"
        for k in set(expected) & set(state)
        if tuple(state[k].shape) != expected[k]
    )
    return missing, unexpected, mismatched


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"{len(items)} {title}: {shown}{more}"


def build_model(config: Sam2Config, state: dict[str, torch.Tensor] | None = None, source: str = "weights") -> Sam2Model:
    """A model in eval mode, loaded strictly from `state` when given; a mismatch names the likely config."""
    model = Sam2Model(config).eval()
    if state is None:
        return model
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, unexpected, mismatched = _shape_problems(expected, state)
    if missing or unexpected or mismatched:
        likely = detect_config(state)
        hint = (
            f"The weights match config {likely.name!r}: pass --config {likely.name}."
            if likely is not None
            else "They match no known config; is this a SAM 2 / SAM 2.1 checkpoint?"
        )
        details = "; ".join(
            _listing(title, items)
            for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
            if items
        )
        raise CheckpointError(f"{source} | received weights that do not fit config {config.name!r} ({details}). {hint}")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | Path, config: str | Sam2Config | None = None, image_size: int = 1024) -> Sam2Model:
    """Load an official checkpoint. `config` is recognised from the weights when not given."""
    state = read_state_dict(path)
    if config is None:
        detected = detect_config(state)
        if detected is None:
            raise CheckpointError(
                f"checkpoint {path} | received weights that match no known config "
                f"(trunk width {tuple(state[_TRUNK_WIDTH].shape) if _TRUNK_WIDTH in state else 'absent'}); "
                f"expected one of {', '.join(sorted(CONFIGS))}. Name the config with --config."
            )
        config = detected
    elif isinstance(config, str):
        config = get_config(config)
    return build_model(config.with_image_size(image_size), state, source=f"checkpoint {path}")
