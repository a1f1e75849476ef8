"""The runtime's API end to end on real media from the official SAM 2 repository
(../shared/data: bedroom.mp4, 960x540; truck.jpg), with the reduced model. Quality is not judged
(random weights); sizes, decoding, aspect ratios and the whole path are."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED_DATA
from streamsam import ImagePredictor, StreamTracker, VideoPredictor
from streamsam.video_frames import VideoFrames

BEDROOM = SHARED_DATA / "bedroom.mp4"
TRUCK = SHARED_DATA / "truck.jpg"
pytestmark = pytest.mark.skipif(not BEDROOM.exists(), reason=f"real media not found at {SHARED_DATA}")


@pytest.fixture(scope="module")
def bedroom():
    return VideoFrames(BEDROOM)


def test_bedroom_decodes_at_its_own_size(bedroom):
    assert len(bedroom) == 200 and (bedroom.height, bedroom.width) == (540, 960)
    assert bedroom[0].dtype == np.uint8 and bedroom[0].shape == (540, 960, 3)


def test_stream_tracker_on_bedroom(reduced_graphs, bedroom):
    tracker = StreamTracker(reduced_graphs, max_objects=2)
    tracker.track(bedroom[0])
    tracker.add_points(1, [(420, 270)])
    tracker.add_box(2, (600, 100, 800, 300))
    for index in range(1, 8):
        result = tracker.track(bedroom[index])
    assert result.frame_index == 7 and result.object_ids == (1, 2)
    assert result.masks.shape == (2, 540, 960)


def test_video_predictor_on_bedroom_file(reduced_graphs):
    predictor = VideoPredictor(reduced_graphs, max_objects=1)
    predictor.init_state(BEDROOM)
    assert predictor.num_frames == 200
    predictor.add_new_points_or_box(10, 1, points=[(420, 270)], labels=[1])
    results = list(predictor.propagate_in_video(max_frame_num_to_track=5))
    assert [r.frame_index for r in results] == list(range(10, 16))
    assert results[-1].mask(1).shape == (540, 960)


def test_image_predictor_on_truck(reduced_graphs):
    from PIL import Image

    image = np.asarray(Image.open(TRUCK).convert("RGB"))
    predictor = ImagePredictor(reduced_graphs)
    predictor.set_image(image)
    masks, ious, low_res = predictor.predict(point_coords=[(500, 375)], point_labels=[1])
    assert masks.shape == (3,) + image.shape[:2] and ious.shape == (3,) and low_res.shape == (3, 64, 64)
