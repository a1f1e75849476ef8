"""rosbag2 in and out through `streamsam track`: a generated camera bag (MCAP, and sqlite3) in, a
mask bag out, read back with rosbags: the source's stamps, and the same label images as tracking
the same frames from a folder of PNGs. A bag without the requested topic names the ones it has."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags")

from ros2_helpers import DEMO_MODEL, camera_frames, compressed_bytes, image_bytes, stamp_of  # noqa: E402

import streamsam  # noqa: E402
from streamsam.cli import main  # noqa: E402
from streamsam.sources import FrameSource  # noqa: E402
from streamsam.ros2 import bags, codec, types  # noqa: E402
from streamsam.ros2.outputs import frame_output, label_image  # noqa: E402

FRAMES = 4
BOX = "15,25,65,75"


def write_camera_bag(path, frames, storage: str, compressed: bool = False) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = types.typestore()
    with Writer(path, version=9, storage_plugin=getattr(StoragePlugin, storage)) as writer:
        image_type = types.COMPRESSED_IMAGE if compressed else types.IMAGE
        image = writer.add_connection("/camera/image_raw" + ("/compressed" if compressed else ""), image_type, typestore=store)
        status = writer.add_connection("/rosout_like", "std_msgs/msg/String", typestore=store)
        for i, frame in enumerate(frames):
            data = compressed_bytes(frame, i) if compressed else image_bytes(frame, i, "bgr8" if i % 2 else "rgb8")
            writer.write(image, stamp_of(i) + 5_000_000, data)  # recorded a little after the stamp, as a real bag
            writer.write(status, stamp_of(i), types.serialize(types.message("std_msgs/msg/String")(data=f"frame {i}"), "std_msgs/msg/String"))


@pytest.fixture(scope="module")
def from_folder(tmp_path_factory):
    """The reference: the same frames as PNGs, tracked by the CLI into a mask bag."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("bags")
    frames = list(camera_frames(FRAMES))
    folder = tmp / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    out = tmp / "folder_masks.mcap"
    assert main(["track", "--source", str(folder), "--box", BOX, "--onnx-dir", str(DEMO_MODEL), "--out", str(out)]) == 0
    return frames, bags.read_masks(out)


@pytest.mark.parametrize("storage, suffix, compressed", [("MCAP", ".mcap", False), ("SQLITE3", ".db3", True)])
def test_bag_round_trip(tmp_path, from_folder, storage, suffix, compressed):
    frames, reference = from_folder
    source = tmp_path / f"camera{suffix}"
    write_camera_bag(tmp_path / "camera_bag", frames, storage, compressed)
    # A bare .mcap / .db3 file as `ros2 bag record` leaves inside its folder.
    (tmp_path / "camera_bag" / f"camera_bag{suffix}").rename(source)
    topic = "/camera/image_raw" + ("/compressed" if compressed else "")
    out = tmp_path / f"masks{suffix}"
    assert main(["track", "--source", str(source), "--topic", topic, "--box", BOX, "--onnx-dir", str(DEMO_MODEL), "--out", str(out)]) == 0

    masks = bags.read_masks(out)
    assert [m[0] for m in masks] == [stamp_of(i) for i in range(FRAMES)]  # header stamps, not record times
    assert [m[0] for m in reference] == [round(i * 1e9 / 30) for i in range(FRAMES)]  # a folder has none: 30 fps from 0
    for (_, ids, labels), (_, ref_ids, ref_labels) in zip(masks, reference):
        assert ids == ref_ids == (1,)
        np.testing.assert_array_equal(labels, ref_labels)
    # And those labels are a direct StreamTracker's masks on the frames.
    tracker = streamsam.StreamTracker(DEMO_MODEL, max_objects=1)
    tracker.track(frames[0])
    results = [tracker.add_box(1, (15, 25, 65, 75))] + [tracker.track(f) for f in frames[1:]]
    for (_, _, labels), result in zip(masks, results):
        np.testing.assert_array_equal(labels, result.masks[0].astype(np.uint8))
        assert labels.any()
    # The detections ride along with the same stamps.
    from rosbags.rosbag2 import Reader

    with Reader(out) as reader:
        connections = [c for c in reader.connections if c.topic == "/streamsam/detections"]
        stamps = [t for _, t, _ in reader.messages(connections=connections)]
        assert connections[0].msgtype == types.DETECTIONS and stamps == [stamp_of(i) for i in range(FRAMES)]


def test_bag_without_the_topic_lists_those_it_has(tmp_path, capsys):
    write_camera_bag(tmp_path / "camera_bag", list(camera_frames(1)), "MCAP")
    assert main(["track", "--source", str(tmp_path / "camera_bag"), "--topic", "/front/image", "--box", BOX,
                 "--onnx-dir", str(DEMO_MODEL)]) == 1
    err = capsys.readouterr()
    message = err.out + err.err
    assert "--topic /front/image" in message and "/camera/image_raw (sensor_msgs/msg/Image)" in message and "/rosout_like (std_msgs/msg/String)" in message
    with pytest.raises(streamsam.InputError, match="expected sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"):
        bags.BagFrames(tmp_path / "camera_bag", "/rosout_like")
    with pytest.raises(streamsam.InputError, match="image topics: /camera/image_raw"):
        bags.BagFrames(tmp_path / "camera_bag", None)
    with pytest.raises(streamsam.StreamSamError, match="only with a rosbag2 source"):
        FrameSource(str(tmp_path), topic="/camera/image_raw")


def test_label_image_gives_overlaps_to_the_higher_logit():
    from streamsam.results import FrameResult

    logits = np.full((3, 4, 4), -5.0, np.float32)
    logits[0, :2], logits[1, 1:3], logits[2, 3, 3] = 2.0, 3.0, 1.0  # rows 1 overlap: object 20 is surer
    result = FrameResult(0, (10, 20, 30), logits, np.ones(3), np.array([1.0, -1.0, 0.0], np.float32), (4, 4))
    labels = label_image(result)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels[:, 0], [1, 2, 2, 0])
    assert labels[3, 3] == 3
    many = FrameResult(0, tuple(range(300)), np.full((300, 2, 2), -1.0, np.float32), np.ones(300), np.ones(300), (2, 2))
    assert label_image(many).dtype == np.uint16
    msg = types.deserialize(codec.encode_segmentation(frame_output(many, 5, "cam", 0, False)), types.SEGMENTATION)
    assert msg.labels.encoding == "mono16" and len(msg.object_ids) == 300


def test_a_mask_bag_is_created_by_its_first_frame(tmp_path):
    from streamsam.ros2.bags import MaskBagWriter

    writer = MaskBagWriter(tmp_path / "masks.mcap")
    writer.close()  # a run that failed before its first frame
    assert not (tmp_path / "masks.mcap").exists()
