"""OnnxRuntimeBackend's lean CPU memory settings (backend.cpu_memory_options: one arena for the
four sessions, no memory patterns) change where ONNX Runtime keeps tensors, never what they hold."""

from __future__ import annotations

import sys

import numpy as np

from streamsam.backend import OnnxRuntimeBackend

from conftest import REPO

sys.path.insert(0, str(REPO))
from benchmarks.precision_accuracy import track_masks  # noqa: E402


def test_lean_memory_gives_onnx_runtimes_default_masks_bit_for_bit(reduced_graphs):
    frames = list(np.load(REPO / "tests" / "golden" / "video" / "frames.npz")["frames"][:10])
    clicks = [(128, 128), (64, 192)]  # two objects: memory attention meets several shapes, as the patterns would
    lean = track_masks(OnnxRuntimeBackend(reduced_graphs, threads=1), frames, clicks)
    defaults = track_masks(OnnxRuntimeBackend(reduced_graphs, threads=1, lean_memory=False), frames, clicks)
    np.testing.assert_array_equal(lean[0], defaults[0])
    np.testing.assert_array_equal(lean[1], defaults[1])
