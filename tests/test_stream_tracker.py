"""StreamTracker on the reduced model's exported graphs: prompts on the current frame, several
objects in one call per graph, constant memory, and bad input that leaves the session intact."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moving_square_video
from streamsam import OnnxRuntimeBackend
from streamsam.contracts import MEMORY_ATTENTION
from streamsam.errors import StreamSamError
from streamsam.stream_tracker import StreamTracker

FRAMES = list(moving_square_video(12))


def test_click_then_track_gives_masks_at_the_source_resolution(reduced_graphs):
    tracker = StreamTracker(reduced_graphs, max_objects=2)
    assert tracker.track(FRAMES[0]).object_ids == ()
    first = tracker.add_points(1, [(40, 50)])
    assert first.object_ids == (1,) and first.frame_index == 0
    assert first.masks.shape == (1, 180, 240) and first.masks.dtype == bool
    for index, frame in enumerate(FRAMES[1:6], start=1):
        result = tracker.track(frame)
        assert result.frame_index == index and result.object_ids == (1,)
        assert result.low_res_logits.shape == (1, 64, 64)
        assert np.isfinite(result.low_res_logits).all()
    assert result.mask(1).shape == (180, 240)
    np.testing.assert_array_equal(result.masks[0], result.mask(1))


def test_objects_are_batched_and_removing_one_keeps_the_others(reduced_graphs):
    together = StreamTracker(reduced_graphs, max_objects=3)
    alone = StreamTracker(reduced_graphs, max_objects=3)
    for tracker in (together, alone):
        tracker.track(FRAMES[0])
        tracker.add_points(7, [(40, 50)])
    together.add_box(9, (100, 100, 200, 170))
    for frame in FRAMES[1:4]:
        a, b = together.track(frame), alone.track(frame)
        assert a.object_ids == (7, 9)
        # batching two objects in one call gives each the same logits as tracking it alone
        np.testing.assert_allclose(a.low_res_logits[0], b.low_res_logits[0], atol=1e-3)
    together.remove_object(7)
    result = together.track(FRAMES[4])
    assert result.object_ids == (9,)
    with pytest.raises(StreamSamError, match=r"received 7; expected one of the tracked objects \[9\]"):
        together.remove_object(7)


class SlotRecordingBackend:
    """The real ONNX Runtime backend; records the slot counts memory_attention runs with."""

    def __init__(self, graphs) -> None:
        self.inner = OnnxRuntimeBackend(graphs)
        self.manifest = self.inner.manifest
        self.slots: list[tuple[int, int]] = []

    def run(self, graph, inputs, outputs) -> None:
        if graph == MEMORY_ATTENTION:
            self.slots.append((inputs["memory"].shape[1], inputs["obj_ptrs"].shape[1]))
        self.inner.run(graph, inputs, outputs)


def test_memory_attention_pays_only_for_filled_slots_and_gives_the_full_rings_result(reduced_graphs):
    backend = SlotRecordingBackend(reduced_graphs)
    dims = backend.manifest.dims
    tracker = StreamTracker(backend, max_objects=2)
    tracker.track(FRAMES[0])
    tracker.add_points(1, [(40, 50)])  # an initial prompt attends to nothing: no call
    for frame in FRAMES[1:10]:
        tracker.track(frame)
    # frame t: the prompted frame and t - 1 recent ones, up to num_maskmem memories; pointers likewise
    # (up to 16): never the capacity of 8 memory slots (2 prompted frames) and 17 pointer slots.
    assert backend.slots == [(min(t, dims.num_maskmem), t) for t in range(1, 10)]
    assert dims.memory_slots == 8 and dims.pointer_slots == 17

    # A second object prompted now has fewer memories than the first: the call takes the first's
    # count, and the second's spare slots stay flagged empty. Same features as the whole rings.
    tracker.add_box(2, (100, 100, 200, 170))
    tracker.track(FRAMES[10])
    tracker.track(FRAMES[11])
    assert backend.slots[-1] == (dims.num_maskmem, 11)
    p, rows = tracker.pipeline, slice(0, 2)
    sources = [tracker.bank.sources(row, tracker.frame_index + 1) for row in range(2)]
    assert [len(s.memories) for s in sources] == [7, 3] and [len(s.pointers) for s in sources] == [12, 3]
    filled = np.array(p.attend(p.features, rows, sources))
    p.slot_policy = "capacity"  # the TensorRT engines' whole rings, empty slots flagged
    whole = np.array(p.attend(p.features, rows, sources))
    assert backend.slots[-2:] == [(7, 12), (dims.memory_slots, dims.pointer_slots)]
    np.testing.assert_allclose(filled, whole, atol=1e-5)


def test_bad_input_is_refused_and_the_session_keeps_its_memory(reduced_graphs):
    clean = StreamTracker(reduced_graphs, max_objects=2)
    poked = StreamTracker(reduced_graphs, max_objects=2)
    for tracker in (clean, poked):
        tracker.track(FRAMES[0])
        tracker.add_points(1, [(40, 50)])
        tracker.track(FRAMES[1])
    bad_calls = [
        (lambda: poked.track(FRAMES[2][:, :, :2]), r"received shape \(180, 240, 2\); expected \(H, W, 3\)"),
        (lambda: poked.track(FRAMES[2].astype(np.float32)), r"received dtype float32; expected uint8"),
        (lambda: poked.track(np.full((180, 240, 3), np.nan, np.float32)), r"NaN values included"),
        (lambda: poked.track(FRAMES[2][:100]), r"received size 240x100; expected 240x180"),
        (lambda: poked.add_points(1, [(400, 50)]), r"outside the 240x180 frame"),
        (lambda: poked.add_points(1, []), r"received no points"),
        (lambda: poked.add_points(1, [(10, 10)], [2]), r"expected 1 \(positive\) or 0 \(negative\)"),
        (lambda: poked.add_box(2, (50, 50, 20, 80)), r"expected x1 > x0"),
        (lambda: poked.add_mask(2, np.ones((10, 10), bool)), r"expected \(180, 240\)"),
        (lambda: poked.remove_object(5), r"received 5; expected one of the tracked objects \[1\]"),
    ]
    for call, message in bad_calls:
        with pytest.raises(StreamSamError, match=message):
            call()
    assert poked.object_ids == [1] and poked.frame_index == 1
    for frame in FRAMES[2:6]:
        np.testing.assert_array_equal(poked.track(frame).low_res_logits, clean.track(frame).low_res_logits)


def test_prompt_before_any_frame_and_too_many_objects_say_what_to_do(reduced_graphs):
    tracker = StreamTracker(reduced_graphs, max_objects=1)
    with pytest.raises(StreamSamError, match="track\\(frame\\) first"):
        tracker.add_points(1, [(10, 10)])
    tracker.track(FRAMES[0])
    tracker.add_points(1, [(40, 50)])
    with pytest.raises(StreamSamError, match="expected at most max_objects=1"):
        tracker.add_points(2, [(100, 100)])
    assert tracker.object_ids == [1]


def test_mask_prompt_and_an_empty_mask(reduced_graphs):
    tracker = StreamTracker(reduced_graphs, max_objects=2)
    tracker.track(FRAMES[0])
    mask = np.zeros((180, 240), bool)
    mask[30:70, 20:60] = True
    result = tracker.add_mask(1, mask)
    assert result.visible.tolist() == [True]
    # a mask prompt is its own output: the low-res logits are the mask, as in the official model
    assert abs(result.mask(1).mean() - mask.mean()) < 0.01
    assert tracker.add_mask(2, np.zeros_like(mask)).visible.tolist() == [True, False]
    assert tracker.track(FRAMES[1]).object_ids == (1, 2)


def test_memory_stays_allocated_once(reduced_graphs):
    tracker = StreamTracker(reduced_graphs, max_objects=2)
    tracker.track(FRAMES[0])
    tracker.add_points(1, [(40, 50)])
    bank = tracker.bank
    before = (bank.nbytes, bank.memory.ctypes.data, bank.obj_ptrs.ctypes.data)
    for frame in FRAMES[1:] + FRAMES[1:]:
        tracker.track(frame)
    assert (bank.nbytes, bank.memory.ctypes.data, bank.obj_ptrs.ctypes.data) == before
    # the rings hold the last six frames and the prompted frame, nothing else
    held = sorted(int(f) for f in bank.memory_frame[0] if f >= 0)
    assert held == [0] + list(range(tracker.frame_index - 5, tracker.frame_index + 1))
