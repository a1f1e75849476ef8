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
