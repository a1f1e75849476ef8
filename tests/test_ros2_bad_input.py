"""Bad input on the rmw_zenoh wire: an unsupported encoding, bytes that are no message, a frame of
another size, prompts for unknown ids, outside the image, beyond max_objects or stamped in the
future, a request without its attachment. Each is answered or reported on /diagnostics, the node
keeps running, and the tracked object's memory is intact (its masks still match a direct run)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zenoh")
pytest.importorskip("rosbags")

from ros2_helpers import (  # noqa: E402
    DEMO_MODEL, Collector, camera_frames, check_against, free_port, image_bytes, last_per_stamp, node_endpoint, peer_endpoint,
    stamp_of, wait_for_token,
)
from test_ros2_zenoh import add_objects_request, call, remove_object_request  # noqa: E402

import streamsam  # noqa: E402
from streamsam.errors import InputError  # noqa: E402
from streamsam.ros2 import CoreConfig, rmw_zenoh, types  # noqa: E402
from streamsam.ros2.zenoh_node import ZenohNode  # noqa: E402


def test_zenoh_node_survives_bad_input():
    frames = list(camera_frames(5))
    port = free_port()
    node = ZenohNode(streamsam.StreamTracker(DEMO_MODEL, max_objects=2), node_endpoint(port), config=CoreConfig(prompt_timeout_s=0.5))
    session = peer_endpoint(port).open()
    client = rmw_zenoh.Graph(session, peer_endpoint(port), "test_client")
    collect = Collector(client)
    camera = rmw_zenoh.Publisher(client, "/camera/image_raw", types.IMAGE, rmw_zenoh.RELIABLE)  # no frame lost on the way
    try:
        wait_for_token(session, "@ros2_lv/0/*/*/*/MS/%/%/streamsam/%camera%image_raw/**")
        wait_for_token(session, "@ros2_lv/0/*/*/*/MS/%/%/test_client/**")

        def send(data: bytes, outputs: int | None = None, errors: int | None = None) -> None:
            camera.put(data)
            if outputs is not None:
                collect.wait(lambda: len(collect.segmentations) >= outputs and len(collect.detections) >= outputs)
            if errors is not None:
                collect.wait(lambda: len(node.core.status().errors) >= errors and any(
                    len([v for v in d.status[0].values if v.key.startswith("error_")]) >= errors for d in collect.diagnostics))
            assert node.core.wait_idle()

        def last_error() -> str:
            return collect.diagnostics[-1].status[0].message

        send(image_bytes(frames[0], 0, "rgb8"), outputs=1)
        reply = call(client, "/streamsam/add_objects", types.ADD_OBJECTS, add_objects_request(stamp_of(0), boxes=[(1, 15, 25, 65, 75)]), 1)
        assert reply.success and types.stamp_ns(reply.stamp) == stamp_of(0), reply.message

        # An encoding the node does not read: said on /diagnostics, at WARN, and nothing tracked.
        send(image_bytes(frames[1], 1, "yuv422"), errors=1)
        assert "'yuv422'" in last_error() and "rgb8" in last_error()
        assert collect.diagnostics[-1].status[0].level == 1
        # Bytes that are no Image, and an Image whose data is shorter than its header says.
        send(b"\x00\x01\x00\x00garbage", errors=2)
        assert "sensor_msgs/msg/Image" in last_error() and "do not deserialise" in last_error()
        send(image_bytes(frames[1], 1, "rgb8")[:-500], errors=3)
        assert "truncated" in last_error() or "deserialise" in last_error()
        # A frame of another size than the stream's: the tracker refuses it, the node goes on.
        send(image_bytes(frames[1][:100], 1, "rgb8"), errors=4)
        assert "size" in last_error()
        assert len(collect.segmentations) == 2  # frame 0 and its prompt: nothing since

        # Prompts the tracker cannot take are refused whole, with the reason; nothing changes.
        outside = call(client, "/streamsam/add_objects", types.ADD_OBJECTS, add_objects_request(stamp_of(0), points=[(1, 500, 20, 1)]), 2)
        assert not outside.success and "outside the 240x180 frame" in outside.message
        too_many = call(client, "/streamsam/add_objects", types.ADD_OBJECTS,
                        add_objects_request(stamp_of(0), points=[(2, 50, 50, 1), (3, 100, 100, 1)]), 3)
        assert not too_many.success and "max_objects=2" in too_many.message and tuple(too_many.object_ids) == (1,)
        unknown = call(client, "/streamsam/remove_object", types.REMOVE_OBJECT, remove_object_request(7), 4)
        assert not unknown.success and "7" in unknown.message and tuple(unknown.object_ids) == (1,)
        future = call(client, "/streamsam/add_objects", types.ADD_OBJECTS, add_objects_request(stamp_of(1000), points=[(2, 50, 50, 1)]), 5)
        assert not future.success and "at or after it within 0.5 s" in future.message
        # Bytes that are no request, and a request without rmw_zenoh's attachment: error replies.
        with pytest.raises(InputError, match="do not deserialise"):
            rmw_zenoh.call(client, "/streamsam/add_objects", types.ADD_OBJECTS, b"\x00\x01\x00\x00\x07", timeout_s=30)
        with pytest.raises(InputError, match="add_objects"):
            rmw_zenoh.call(client, "/streamsam/add_objects", types.ADD_OBJECTS,
                           add_objects_request(stamp_of(0), boxes=[(1, 15, 25, 65, 75), (1, 10, 10, 20, 20)]), timeout_s=30)
        key = rmw_zenoh.data_key(0, "/streamsam/remove_object", types.REMOVE_OBJECT)
        answers = list(session.get(key, payload=remove_object_request(1), timeout=30))
        assert answers and answers[0].ok is None and "attachment" in answers[0].err.payload.to_string()

        # Still tracking object 1, with its memory: the next frames match a run that never saw the bad input.
        for i in range(1, 5):
            send(image_bytes(frames[i], i, "bgr8"), outputs=2 + i)
    finally:
        collect.close()
        camera.close()
        client.close()
        session.close()
        node.close()

    tracker = streamsam.StreamTracker(DEMO_MODEL, max_objects=2)
    tracker.track(frames[0])
    tracker.add_box(1, (15, 25, 65, 75))
    segs, dets = last_per_stamp(collect.segmentations), last_per_stamp(collect.detections)
    assert list(segs) == [stamp_of(i) for i in range(5)]
    for i in range(1, 5):
        check_against(segs[stamp_of(i)], dets[stamp_of(i)], tracker.track(frames[i]))
    assert node.core.status().processed == 5 and np.all(segs[stamp_of(4)].object_ids == [1])
