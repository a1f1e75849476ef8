"""Shared test helpers: seeded models of the reduced config, and GPU detection for marked tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    # GPU tests skip cleanly on machines without nvidia-smi; they never count as passing there.
    if shutil.which("nvidia-smi") is None:
        skip = pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi not found)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def reduced_graphs(tmp_path_factory):
    """The reduced config's four graphs, exported once per test session from seeded weights."""
    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.onnx_export import ExportOptions, export_model
    from streamsam.export.random_weights import seeded_state_dict

    model = Sam2Model(get_config("reduced"))
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    out = tmp_path_factory.mktemp("reduced_graphs")
    export_model(model.eval(), out, ExportOptions(max_prompted_frames=2), progress=None)
    return out


def moving_square_video(frames: int, height: int = 180, width: int = 240, seed: int = 0):
    """RGB uint8 frames: a textured square moving over a textured background."""
    import numpy as np

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    texture = rng.integers(130, 255, (40, 40, 3), dtype=np.uint8)
    for t in range(frames):
        frame = background.copy()
        x, y = 20 + (3 * t) % (width - 60), 30 + (2 * t) % (height - 60)
        frame[y : y + 40, x : x + 40] = texture
        yield frame
