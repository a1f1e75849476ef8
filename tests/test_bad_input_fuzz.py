"""Random malformed prompts and frames thrown at a StreamTracker that runs in lockstep with a twin
that never sees them: every bad call is an InputError that says what it received and expected,
and changes nothing, so the two stay bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import moving_square_video
from streamsam.errors import InputError, StreamSamError
from streamsam.stream_tracker import StreamTracker

FRAMES = list(moving_square_video(8))
H, W = FRAMES[0].shape[:2]


@pytest.fixture(scope="module")
def trackers(reduced_graphs):
    return StreamTracker(reduced_graphs, max_objects=2), StreamTracker(reduced_graphs, max_objects=2)


def _rect_mask(x: int, y: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y : y + 40, x : x + 50] = True
    return mask


# -- valid calls, given to both trackers (ids 1..3 with room for 2: the third is refused by both)
ids = st.sampled_from([1, 2, 3, np.int64(2)])
point = st.tuples(st.integers(0, W), st.integers(0, H))
valid_steps = st.one_of(
    st.just(("track",)),
    st.tuples(st.just("points"), ids, st.lists(point, min_size=1, max_size=2), st.sampled_from([0, 1]), st.booleans()),
    st.tuples(st.just("box"), ids, st.integers(0, W - 60), st.integers(0, H - 60)),
    st.tuples(st.just("mask"), ids, st.integers(0, W - 50), st.integers(0, H - 40)),
    st.tuples(st.just("remove"), ids),
)

# -- malformed calls, given to the poked tracker only
frame = FRAMES[0]
BAD_FRAMES = [
    frame.astype(np.float32), frame[:, :, 0], frame[:100], np.concatenate([frame, frame[:, :, :1]], axis=2),
    frame[:0], None, [[[0, 0, 0]]], np.full(frame.shape, np.nan, np.float32),
]
BAD_POINTS = [[(1, 2, 3)], [(np.nan, 10)], [(np.inf, 10)], [(-1, 10)], [(10, H + 1)], "10,10", [[1, 2], [3]], None, [],
              np.zeros((2, 3)), [(1e30, 1)]]
BAD_LABELS = [[0.5], [np.nan], [2], [1e30], [-1], [1, 1], ["1"], [[1]], [True, False, True]]
BAD_IDS = [None, "1", 1.0, True, np.float64(1), [1]]
BAD_MASKS = [np.where(_rect_mask(10, 10), np.nan, 0.0), np.ones((10, 10), bool), "mask", np.ones((1, H, W), bool),
             np.full((H, W), np.inf), [["a"] * W] * H]
BAD_BOXES = [(50, 50, 20, 80), (1, 2, 3), (np.nan, 1, 5, 5), (0, 0, W + 5, 10), "box", [[1, 2, 3, 4], [1, 2, 3, 4]]]
BAD_FLAGS = ["yes", 1, None, "False"]

bad_steps = st.one_of(
    st.tuples(st.just("track"), st.sampled_from(range(len(BAD_FRAMES)))),
    st.tuples(st.just("points"), st.sampled_from(range(len(BAD_POINTS)))),
    st.tuples(st.just("labels"), st.sampled_from(range(len(BAD_LABELS)))),
    st.tuples(st.just("id"), st.sampled_from(range(len(BAD_IDS))), st.sampled_from(["points", "box", "mask", "remove"])),
    st.tuples(st.just("mask"), st.sampled_from(range(len(BAD_MASKS)))),
    st.tuples(st.just("box"), st.sampled_from(range(len(BAD_BOXES)))),
    st.tuples(st.just("flag"), st.sampled_from(range(len(BAD_FLAGS)))),
    st.just(("unknown",)),
)


def _run_valid(tracker: StreamTracker, step: tuple, frames: list, as_uint8: bool):
    kind = step[0]
    if kind == "track":
        return tracker.track(frames.pop(0))
    if kind == "points":
        _, obj_id, pts, label, clear = step
        return tracker.add_points(obj_id, pts, [label] * len(pts), clear_old_points=clear)
    if kind == "box":
        _, obj_id, x, y = step
        return tracker.add_box(obj_id, (x, y, x + 50, y + 40))
    if kind == "mask":
        _, obj_id, x, y = step
        mask = _rect_mask(x, y)
        # the poked tracker gets the mask as uint8 0/255: the official predictor casts it to bool
        return tracker.add_mask(obj_id, mask.astype(np.uint8) * 255 if as_uint8 else mask)
    return tracker.remove_object(step[1])


def _run_bad(tracker: StreamTracker, step: tuple) -> None:
    kind, good = step[0], (20, 30)
    if kind == "track":
        tracker.track(BAD_FRAMES[step[1]])
    elif kind == "points":
        tracker.add_points(1, BAD_POINTS[step[1]])
    elif kind == "labels":
        tracker.add_points(1, [good], BAD_LABELS[step[1]])
    elif kind == "id":
        obj_id, verb = BAD_IDS[step[1]], step[2]
        {"points": lambda: tracker.add_points(obj_id, [good]), "box": lambda: tracker.add_box(obj_id, (10, 10, 60, 50)),
         "mask": lambda: tracker.add_mask(obj_id, _rect_mask(5, 5)), "remove": lambda: tracker.remove_object(obj_id)}[verb]()
    elif kind == "mask":
        tracker.add_mask(1, BAD_MASKS[step[1]])
    elif kind == "box":
        tracker.add_box(1, BAD_BOXES[step[1]])
    elif kind == "flag":
        tracker.add_points(1, [good], clear_old_points=BAD_FLAGS[step[1]])
    else:
        tracker.remove_object(99)


def _outcome(call):
    """A call's result, or the InputError it raised; any other exception fails the test."""
    try:
        return call()
    except InputError as exc:
        return exc


def _assert_same(a, b) -> None:
    if isinstance(a, InputError) or isinstance(b, InputError):
        assert type(a) is type(b) and str(a) == str(b)
    elif a is None or b is None:
        assert a is b
    else:
        assert (a.frame_index, a.object_ids, a.source_size) == (b.frame_index, b.object_ids, b.source_size)
        for name in ("low_res_logits", "ious", "object_scores"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name


@settings(max_examples=8, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(valid_steps.map(lambda s: (True, s)), bad_steps.map(lambda s: (False, s))), min_size=3, max_size=6))
# Always run too: a uint8 mask against its bool twin, a fractional label, an (N, 3) points array,
# a NaN mask, a float frame and a string id.
@example([(True, ("mask", 1, 100, 60)), (False, ("labels", 0)), (False, ("points", 0)), (True, ("track",))])
@example([(True, ("points", 1, [(40, 50)], 1, True)), (False, ("mask", 0)), (False, ("track", 0)),
          (False, ("id", 1, "points")), (True, ("mask", 2, 120, 90)), (True, ("remove", 1))])
def test_bad_calls_are_refused_and_change_nothing(trackers, steps):
    poked, twin = trackers
    poked.reset(), twin.reset()
    frames = {id(poked): list(FRAMES), id(twin): list(FRAMES)}
    for tracker in (poked, twin):
        _run_valid(tracker, ("track",), frames[id(tracker)], False)
    for valid, step in steps:
        if not valid:
            with pytest.raises(InputError) as error:
                _run_bad(poked, step)
            message = str(error.value)
            assert isinstance(error.value, ValueError) and isinstance(error.value, StreamSamError)
            assert "received" in message and "expected" in message, message
            assert (poked.object_ids, poked.frame_index) == (twin.object_ids, twin.frame_index)
            step = ("track",)  # the next valid frame must give the twin's result to the bit
        _assert_same(_outcome(lambda: _run_valid(poked, step, frames[id(poked)], True)),
                     _outcome(lambda: _run_valid(twin, step, frames[id(twin)], False)))
