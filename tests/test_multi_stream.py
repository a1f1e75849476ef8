"""MultiStreamTracker on the reduced model's graphs: several streams stepped together give each
stream the masks StreamTracker gives it alone; streams come and go and sit out steps; a snapshot
resumes a stream in a fresh tracker; bad input leaves every stream as it was."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from conftest import moving_square_video
from streamsam import OnnxRuntimeBackend
from streamsam.errors import GraphError, InputError
from streamsam.multi_stream import MultiStreamTracker, StreamState
from streamsam.stream_tracker import StreamTracker

VIDEOS = {name: list(moving_square_video(10, seed=seed)) for seed, name in enumerate(("a", "b", "c"))}
# Each stream's prompts: (frame index, object id, ("points", pts) or ("box", box)).
PROMPTS = {
    "a": [(0, 1, ("points", [(40, 50)]))],
    "b": [(0, 1, ("box", (20, 30, 80, 90))), (0, 2, ("points", [(150, 120)])), (4, 3, ("points", [(200, 40)]))],
    "c": [(2, 5, ("points", [(60, 70), (100, 60)]))],
}


def _prompt(target, stream, t):
    """Apply stream's prompts for frame t through `target(kind, obj_id, value)`."""
    for frame, obj_id, (kind, value) in PROMPTS[stream]:
        if frame == t:
            target(kind, obj_id, value)


def _alone(backend, stream, steps):
    """The stream's results tracked by StreamTracker alone, on the frame indices in `steps`."""
    tracker = StreamTracker(backend, max_objects=4)
    out = {}
    for t in steps:
        out[t] = tracker.track(VIDEOS[stream][t])
        _prompt(lambda kind, o, v: getattr(tracker, f"add_{kind}")(o, v), stream, t)
        out[t] = tracker.result()
    return out


def _assert_same(got, want):
    assert got.object_ids == want.object_ids and got.frame_index == want.frame_index
    for k in range(len(got.object_ids)):
        a, b = got.masks[k], want.masks[k]
        union = np.logical_or(a, b).sum()
        iou = np.logical_and(a, b).sum() / union if union else 1.0
        assert iou >= 0.999, (got.object_ids[k], iou)
    np.testing.assert_array_equal(np.sign(got.object_scores), np.sign(want.object_scores))


@pytest.fixture(scope="module")
def backend(reduced_graphs):
    with OnnxRuntimeBackend(reduced_graphs) as b:
        yield b


def test_streams_stepped_together_match_each_stream_alone(backend):
    """a runs every step; b joins at step 2, skips step 5 and leaves after step 7; c joins at step 0
    and skips steps 3-4. Prompts land on one stream while the others track."""
    plan = {"a": range(10), "b": [2, 3, 4, 6, 7], "c": [0, 1, 2, 5, 6, 7, 8, 9]}
    # Each stream reads its own frames 0, 1, 2, ... in the order it takes part.
    want = {s: _alone(backend, s, range(len(steps))) for s, steps in plan.items()}
    seen = {s: 0 for s in plan}
    with MultiStreamTracker(backend, max_streams=3, max_objects=4) as multi:
        for step in range(10):
            for s, steps in plan.items():
                if step == steps[0]:
                    multi.add_stream(s)
            frames = {s: VIDEOS[s][seen[s]] for s, steps in plan.items() if step in steps}
            results = multi.track(frames)
            assert set(results) == set(frames)
            for s in frames:
                t = seen[s]
                _prompt(lambda kind, o, v: getattr(multi, f"add_{kind}")(s, o, v), s, t)
                _assert_same(multi.result(s), want[s][t])
                seen[s] += 1
            for s, steps in plan.items():
                if step == steps[-1] and s != "a" and s in multi.stream_ids:
                    multi.remove_stream(s)
        assert multi.stream_ids == ("a",)


def test_a_stream_sitting_out_keeps_its_frame_for_prompts(backend):
    multi = MultiStreamTracker(backend, max_streams=2)
    multi.add_stream("a")
    multi.add_stream("b")
    multi.track({"a": VIDEOS["a"][0], "b": VIDEOS["b"][0]})
    multi.track({"a": VIDEOS["a"][1]})  # b's source stalled
    before = multi.result("b")
    assert before.frame_index == 0
    result = multi.add_points("b", 1, [(40, 50)])  # on b's frame 0
    alone = StreamTracker(backend)
    alone.track(VIDEOS["b"][0])
    _assert_same(result, alone.add_points(1, [(40, 50)]))
    multi.close()


def test_a_snapshot_resumes_in_a_fresh_tracker_with_the_same_masks(backend):
    first = MultiStreamTracker(backend, max_streams=2)
    first.add_stream("b")
    for t in range(5):
        first.track({"b": VIDEOS["b"][t]})
        _prompt(lambda kind, o, v: getattr(first, f"add_{kind}")("b", o, v), "b", t)
    state = pickle.loads(pickle.dumps(first.state("b")))
    assert isinstance(state, StreamState) and state.frame_index == 4 and state.object_ids == (1, 2, 3)
    second = MultiStreamTracker(backend, max_streams=1)
    second.add_stream("b", state=state)
    assert second.result("b").object_ids == (1, 2, 3)
    with pytest.raises(InputError, match="resumed from a snapshot before its next frame"):
        second.add_points("b", 1, [(40, 50)])
    for t in range(5, 10):
        a, b = first.track({"b": VIDEOS["b"][t]})["b"], second.track({"b": VIDEOS["b"][t]})["b"]
        np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    second.add_points("b", 1, [(40, 50)])  # a frame came: prompts work again
    with pytest.raises(InputError, match="snapshot of graphs with sizes"):
        MultiStreamTracker(backend).add_stream("x", state=StreamState(0, None, (), (), (1, 2, 3)))


def test_snapshot_size_in_steady_state_is_under_a_megabyte_per_object_at_512():
    """sam2.1 at 512: 7 memories of 64 x 32 x 32 bfloat16, 16 pointers of 256 float32, the logits
    128 x 128 float32 (what ObjectSnapshot.nbytes counts, the small bookkeeping aside)."""
    memories, pointers, logits = 7 * 64 * 32 * 32 * 2, 16 * 256 * 4, 128 * 128 * 4
    assert memories + pointers + logits + 1024 < 2**20


def test_snapshot_size_counts_filled_slots_only(backend):
    multi = MultiStreamTracker(backend)
    multi.add_stream(0)
    multi.track({0: VIDEOS["a"][0]})
    multi.add_points(0, 1, [(40, 50)])
    for t in range(1, 10):
        multi.track({0: VIDEOS["a"][t]})
    d = backend.manifest.dims
    state = multi.state(0)
    obj = state.objects[0]
    assert len(obj.memory_slots) == d.num_maskmem  # 1 prompted + num_maskmem - 1 recent
    assert len(obj.pointer_slots) == 10  # one per frame so far
    expected = d.num_maskmem * d.mem_dim * d.feat_size**2 * 2 + 10 * d.d_model * 4 + d.low_res_size**2 * 4
    assert expected <= state.nbytes < expected + 2048
    assert multi.stream_nbytes(0) > state.nbytes


def test_bad_input_names_the_stream_and_changes_nothing(backend):
    multi = MultiStreamTracker(backend, max_streams=2)
    multi.add_stream("a")
    multi.add_stream("b")
    multi.track({"a": VIDEOS["a"][0], "b": VIDEOS["b"][0]})
    multi.add_points("a", 1, [(40, 50)])
    before = {s: multi.result(s) for s in ("a", "b")}
    with pytest.raises(InputError, match=r"stream id \| received 'z'; expected one of the open streams \['a', 'b'\]"):
        multi.track({"a": VIDEOS["a"][1], "z": VIDEOS["b"][1]})
    with pytest.raises(InputError, match="frame of stream 'b'"):
        multi.track({"a": VIDEOS["a"][1], "b": VIDEOS["b"][1][:, :100]})  # another size than b's stream
    with pytest.raises(InputError, match=r"max_streams=2\. Remove a stream"):
        multi.add_stream("c")
    with pytest.raises(InputError, match="already open"):
        multi.add_stream("a")
    with pytest.raises(InputError, match="received 'z'"):
        multi.add_points("z", 1, [(1, 1)])
    with pytest.raises(InputError, match="expected a mapping"):
        multi.track([VIDEOS["a"][1]])
    for s in ("a", "b"):
        after = multi.result(s)
        assert after.frame_index == 0
        np.testing.assert_array_equal(after.low_res_logits, before[s].low_res_logits)
    multi.track({"a": VIDEOS["a"][1], "b": VIDEOS["b"][1]})  # the streams go on


class FailingBackend:
    """The real backend, failing the mask decoder on the n-th call from now."""

    def __init__(self, inner, fail_on: int) -> None:
        self.inner, self.manifest, self.calls, self.fail_on = inner, inner.manifest, 0, fail_on

    def run(self, graph, inputs, outputs) -> None:
        if graph == "mask_decoder":
            self.calls += 1
            if self.calls == self.fail_on:
                raise RuntimeError("injected failure")
        self.inner.run(graph, inputs, outputs)


def test_a_graph_failing_in_one_stream_leaves_every_stream_as_it_was(backend):
    failing = FailingBackend(backend, fail_on=-1)
    multi = MultiStreamTracker(failing, max_streams=2)
    for s in ("a", "b"):
        multi.add_stream(s)
    multi.track({"a": VIDEOS["a"][0], "b": VIDEOS["b"][0]})
    multi.add_points("a", 1, [(40, 50)])
    multi.add_points("b", 1, [(40, 50)])
    states = {s: multi.state(s) for s in ("a", "b")}
    failing.calls, failing.fail_on = 0, 2  # the second stream's decoder fails
    with pytest.raises(GraphError):
        multi.track({"a": VIDEOS["a"][1], "b": VIDEOS["b"][1]})
    for s in ("a", "b"):
        now = multi.state(s)
        assert now.frame_index == 0
        for x, y in zip(now.objects, states[s].objects):
            np.testing.assert_array_equal(x.memories, y.memories)
            np.testing.assert_array_equal(x.logits, y.logits)
    reference = MultiStreamTracker(backend, max_streams=2)
    for s in ("a", "b"):
        reference.add_stream(s, states[s])
    got = multi.track({"a": VIDEOS["a"][1], "b": VIDEOS["b"][1]})
    want = reference.track({"a": VIDEOS["a"][1], "b": VIDEOS["b"][1]})
    for s in ("a", "b"):
        np.testing.assert_array_equal(got[s].low_res_logits, want[s].low_res_logits)
