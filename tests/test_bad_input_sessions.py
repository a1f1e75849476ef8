"""Bad input to the three sessions, by class: each is an InputError (a ValueError) that says what
it received and what was expected, raised before the session changes; and the inputs that used to
give a silent wrong answer now give the right one or an error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import moving_square_video
from streamsam import ImagePredictor, StreamTracker, VideoPredictor
from streamsam.errors import InputError

FRAMES = list(moving_square_video(4))  # 180 x 240
H, W = FRAMES[0].shape[:2]


def refused(call, *fragments: str) -> str:
    """Run a call that must be refused; returns the message."""
    with pytest.raises(InputError) as error:
        call()
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert "received" in message and "expected" in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def square_mask(height: int = H, width: int = W) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[30:70, 20:60] = True
    return mask


@pytest.fixture(scope="module")
def tracker(reduced_graphs):
    tracker = StreamTracker(reduced_graphs, max_objects=2)
    yield tracker
    tracker.reset()


def test_labels_are_exactly_0_or_1(tracker):
    tracker.reset()
    tracker.track(FRAMES[0])
    for labels in ([0.5], [np.nan], [2], [1e30], [-1], ["1"]):
        refused(lambda: tracker.add_points(1, [(40, 50)], labels), "label")
    # 1.0 and True are exactly 1: the same click as the int label
    results = []
    for label in (1, 1.0, True):
        tracker.reset()
        tracker.track(FRAMES[0])
        results.append(tracker.add_points(1, [(40, 50)], [label]).low_res_logits.tobytes())
    assert results[0] == results[1] == results[2]


def test_points_must_be_k_by_2(tracker):
    tracker.reset()
    tracker.track(FRAMES[0])
    refused(lambda: tracker.add_points(1, np.array([[40, 50, 1], [60, 70, 1]])), "shape (2, 3)", "(k, 2)")
    refused(lambda: tracker.add_points(1, [(40, 50)], [1, 1]), "1 points and 2 labels")
    refused(lambda: tracker.add_points(1, "40,50"), "points")
    assert tracker.object_ids == []


def test_object_ids_are_integers(tracker):
    tracker.reset()
    tracker.track(FRAMES[0])
    for bad in (None, "1", 1.0, 1.5, True):
        refused(lambda: tracker.add_points(bad, [(40, 50)]), "object id", "integer")
    assert tracker.object_ids == []
    result = tracker.add_points(np.int64(3), [(40, 50)])
    assert result.object_ids == (3,) and type(result.object_ids[0]) is int
    refused(lambda: tracker.remove_object("3"), "object id")


def test_options_are_type_checked(reduced_graphs):
    refused(lambda: StreamTracker(reduced_graphs, max_objects=-1), "max_objects")
    refused(lambda: StreamTracker(reduced_graphs, max_objects="2"), "max_objects")
    refused(lambda: VideoPredictor(reduced_graphs, fill_hole_area=-1), "fill_hole_area")
    refused(lambda: VideoPredictor(reduced_graphs, fill_hole_area=2.5), "fill_hole_area")
    refused(lambda: ImagePredictor(reduced_graphs, resize="bicubic"), "resize")


def test_a_uint8_mask_is_the_same_mask_as_bool_and_nan_is_refused(reduced_graphs):
    as_bool, as_uint8 = StreamTracker(reduced_graphs), StreamTracker(reduced_graphs)
    for tracker in (as_bool, as_uint8):
        tracker.track(FRAMES[0])
    refused(lambda: as_uint8.add_mask(1, np.where(square_mask(), np.nan, 0.0)), "non-finite")
    a = as_bool.add_mask(1, square_mask())
    b = as_uint8.add_mask(1, square_mask().astype(np.uint8) * 255)
    assert a.low_res_logits.tobytes() == b.low_res_logits.tobytes()
    for frame in FRAMES[1:3]:
        assert as_bool.track(frame).low_res_logits.tobytes() == as_uint8.track(frame).low_res_logits.tobytes()


def test_a_frame_with_no_objects_gives_empty_masks(tracker):
    tracker.reset()
    result = tracker.track(FRAMES[0])
    assert result.masks.shape == (0, H, W) and result.masks.dtype == bool
    assert result.logits().shape == (0, H, W)


# -- VideoPredictor


@pytest.fixture(scope="module")
def video(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=2)
    predictor.init_state(FRAMES)
    return predictor


def test_frame_indices_are_integers(video):
    video.reset_state()
    for bad in (1.0, "1", True, None):
        refused(lambda: video.add_new_points_or_box(bad, 1, points=[(40, 50)]), "frame index")
    refused(lambda: video.add_new_mask(1.5, 1, square_mask()), "frame index")
    assert video.obj_ids == []
    video.add_new_points_or_box(np.int64(1), 1, points=[(40, 50)], labels=[1])
    refused(lambda: video.clear_all_prompts_in_frame("1", 1), "frame index")
    refused(lambda: next(video.propagate_in_video(start_frame_idx=1.0)), "start_frame_idx")
    refused(lambda: next(video.propagate_in_video(max_frame_num_to_track=-1)), "max_frame_num_to_track")
    refused(lambda: next(video.propagate_in_video(reverse="yes")), "reverse")
    assert [r.frame_index for r in video.propagate_in_video(start_frame_idx=np.int32(1), max_frame_num_to_track=1)] == [1, 2]


@pytest.mark.parametrize(
    "frames, fragment",
    [
        ([FRAMES[0].astype(np.float32)] * 2, "dtype float32"),
        ([FRAMES[0][:, :, 0]] * 2, "(H, W, 3)"),
        ([FRAMES[0], np.zeros((0, 0, 3), np.uint8)], "video frame 1"),
        ([FRAMES[0], FRAMES[1][:100]], "every frame of a video must have the same size"),
        ([FRAMES[0], FRAMES[1].tolist()], "video frame 1"),
    ],
)
def test_frames_in_a_list_are_checked_when_the_video_opens(video, frames, fragment):
    before = video.frames
    refused(lambda: video.init_state(frames), fragment)
    assert video.frames is before


def _write_folder(folder, frames) -> None:
    folder.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg")


def test_a_folder_of_mixed_sizes_or_a_corrupt_header_is_refused_by_name(video, tmp_path):
    _write_folder(tmp_path / "mixed", [FRAMES[0], FRAMES[1][:100]])
    refused(lambda: video.init_state(tmp_path / "mixed"), "00001.jpg", "same size")
    _write_folder(tmp_path / "corrupt", FRAMES[:2])
    (tmp_path / "corrupt" / "00001.jpg").write_bytes(b"not a jpeg")
    refused(lambda: video.init_state(tmp_path / "corrupt"), "00001.jpg")


def test_a_frame_that_fails_to_decode_later_is_named_and_changes_nothing(video, tmp_path):
    folder = tmp_path / "truncated"
    _write_folder(folder, FRAMES)
    data = (folder / "00002.jpg").read_bytes()
    (folder / "00002.jpg").write_bytes(data[: len(data) // 2])  # a valid header, cut pixels
    video.init_state(folder)
    refused(lambda: video.add_new_points_or_box(2, 1, points=[(40, 50)]), "00002.jpg")
    assert video.obj_ids == []
    video.add_new_points_or_box(0, 1, points=[(40, 50)])
    results = video.propagate_in_video()
    assert [next(results).frame_index for _ in range(2)] == [0, 1]
    refused(lambda: next(results), "00002.jpg")
    video.init_state(FRAMES)


def test_a_uint8_mask_on_a_video_at_the_model_size_stays_within_the_official_logits(reduced_graphs):
    size = 256  # the reduced model's input size: the mask is used as it is, not resized
    frames = list(moving_square_video(2, size, size))
    results = []
    for mask in (square_mask(size, size), square_mask(size, size).astype(np.uint8) * 255):
        predictor = VideoPredictor(reduced_graphs, max_objects=1)
        predictor.init_state(frames)
        results.append(predictor.add_new_mask(0, 1, mask).low_res_logits)
    assert results[0].tobytes() == results[1].tobytes()
    assert np.abs(results[1]).max() <= 10.0  # the official mask prompt: +-10


# -- ImagePredictor


def test_image_predictor_refuses_nan_mask_input_and_non_bool_flags(reduced_graphs):
    predictor = ImagePredictor(reduced_graphs)
    predictor.set_image(FRAMES[0])
    _, _, low_res = predictor.predict([(40, 50)], [1], multimask_output=False)
    refused(lambda: predictor.predict([(40, 50)], [1], mask_input=np.full_like(low_res, np.nan)), "mask_input", "non-finite")
    refused(lambda: predictor.predict([(40, 50)], [1], multimask_output="False"), "multimask_output", "True or False")
    refused(lambda: predictor.predict(np.array([[40, 50, 1]]), [1]), "(k, 2)")
    refused(lambda: predictor.predict([(40, 50)], [0.5]), "label")
    _, ious, _ = predictor.predict([(40, 50)], [1], mask_input=low_res, multimask_output=np.bool_(False))
    assert np.isfinite(ious).all()
