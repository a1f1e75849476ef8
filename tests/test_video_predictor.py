"""VideoPredictor's verbs on generated frames (official-parity sequences: test_video_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moving_square_video
from streamsam.errors import StreamSamError
from streamsam.video_predictor import VideoPredictor

FRAMES = list(moving_square_video(10))


def test_prompts_then_propagation_forward_and_in_reverse(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=2)
    predictor.init_state(FRAMES)
    first = predictor.add_new_points_or_box(0, 1, points=[(40, 50)], labels=[1])
    assert first.object_ids == (1,) and first.masks.shape == (1, 180, 240)
    boxed = predictor.add_new_points_or_box(4, 2, box=(100, 100, 200, 170))
    # object 1 has no output on frame 4 yet: it is reported absent, as the official predictor does
    assert boxed.object_ids == (1, 2) and boxed.visible.tolist() == [False, True]
    forward = list(predictor.propagate_in_video())
    assert [r.frame_index for r in forward] == list(range(10))
    assert all(r.object_ids == (1, 2) for r in forward)
    backward = list(predictor.propagate_in_video(start_frame_idx=9, reverse=True))
    assert [r.frame_index for r in backward] == list(range(9, -1, -1))
    # prompted frames keep their prompted output in both directions
    np.testing.assert_array_equal(forward[4].low_res_logits[1], backward[5].low_res_logits[1])


def test_only_what_the_rules_need_is_kept(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=1)
    predictor.init_state(FRAMES)
    predictor.add_new_points_or_box(0, 1, points=[(40, 50)], labels=[1])
    list(predictor.propagate_in_video())
    track = predictor.objects[1]
    assert sorted(track.cond) == [0] and sorted(track.non_cond) == list(range(1, 10))
    out = track.non_cond[5]
    assert out.memory_bits.dtype == np.uint16  # memories kept in bfloat16, as the official predictor
    assert not track.temp_cond and not track.temp_non_cond


def test_clear_prompts_and_remove_objects(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=2)
    predictor.init_state(FRAMES)
    predictor.add_new_points_or_box(0, 1, points=[(40, 50)], labels=[1])
    predictor.add_new_points_or_box(2, 2, points=[(150, 130)], labels=[1])
    predictor.remove_object(2)
    assert predictor.obj_ids == [1]
    predictor.clear_all_prompts_in_frame(0, 1)
    with pytest.raises(StreamSamError, match="no prompt on any frame for object 1"):
        list(predictor.propagate_in_video())


def test_bad_input_names_what_was_expected(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=1)
    with pytest.raises(StreamSamError, match="init_state"):
        predictor.add_new_points_or_box(0, 1, points=[(1, 1)], labels=[1])
    predictor.init_state(FRAMES)
    with pytest.raises(StreamSamError, match=r"received 12; expected 0 <= frame_idx < 10"):
        predictor.add_new_points_or_box(12, 1, points=[(1, 1)], labels=[1])
    with pytest.raises(StreamSamError, match="outside the 240x180 frame"):
        predictor.add_new_points_or_box(0, 1, points=[(-5, 1)], labels=[1])
    with pytest.raises(StreamSamError, match="no points and no box"):
        predictor.add_new_points_or_box(0, 1)
    with pytest.raises(StreamSamError, match="received no prompts"):
        list(predictor.propagate_in_video())
    predictor.add_new_points_or_box(0, 1, points=[(40, 50)], labels=[1])
    with pytest.raises(StreamSamError, match="expected at most max_objects=1"):
        predictor.add_new_points_or_box(0, 2, points=[(40, 50)], labels=[1])
    with pytest.raises(StreamSamError, match=r"received 3; expected one of the tracked objects \[1\]"):
        predictor.remove_object(3)
    with pytest.raises(StreamSamError, match="does not exist"):
        predictor.init_state("/nonexistent/video.mp4")
