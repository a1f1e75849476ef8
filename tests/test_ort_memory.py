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


def test_cpu_sessions_do_not_spin_on_the_cores_the_next_graph_needs(reduced_graphs):
    # Spinning pools of the four sessions cost a two-thread frame 16 % at 512 (backend.cpu_thread_options).
    for lean_memory in (True, False):
        backend = OnnxRuntimeBackend(reduced_graphs, threads=2, lean_memory=lean_memory)
        for session in backend._sessions.values():
            assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
