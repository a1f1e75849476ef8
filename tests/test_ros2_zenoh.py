"""The node on the rmw_zenoh wire, end to end: a camera in another process publishes 150 frames
(rgb8, bgr8 and PNG CompressedImage, 33-byte attachments) faster than the node tracks; prompts go
through the add_objects queryable, a removal mid-stream; what the node publishes, decoded with
rosbags, matches a StreamTracker run directly on the frames it reports it processed. Real Zenoh
sessions, peer to peer over loopback, multicast scouting off."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("zenoh")
pytest.importorskip("rosbags")

from conftest import REPO  # noqa: E402
from ros2_helpers import (  # noqa: E402
    DEMO_MODEL, Collector, camera_frames, check_against, free_port, last_per_stamp, node_endpoint, peer_endpoint, stamp_of, wait_for_token,
)

import streamsam  # noqa: E402
from streamsam.ros2 import codec, rmw_zenoh, types  # noqa: E402
from streamsam.ros2.zenoh_node import ZenohNode  # noqa: E402

FRAMES = 150
ENCODINGS = ("rgb8", "bgr8", "compressed")  # frame i is sent as ENCODINGS[i % 3]

CAMERA = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{tests!r}]
    from ros2_helpers import camera_frames, compressed_bytes, image_bytes, peer_endpoint, wait_for_token
    from streamsam.ros2 import rmw_zenoh, types
    endpoint = peer_endpoint({port})
    session = endpoint.open()
    graph = rmw_zenoh.Graph(session, endpoint, "camera")
    # Reliable (Zenoh blocks rather than drops): every frame must reach the node, so that the
    # frames it skipped are its own dropping, counted exactly. The key expressions are the same.
    raw = rmw_zenoh.Publisher(graph, "/camera/image_raw", types.IMAGE, rmw_zenoh.RELIABLE, depth=1)
    packed = rmw_zenoh.Publisher(graph, "/camera/image_raw/compressed", types.COMPRESSED_IMAGE, rmw_zenoh.RELIABLE, depth=1)
    info = rmw_zenoh.Publisher(graph, "/camera/camera_info", types.CAMERA_INFO, depth=1)
    # The node's subscriptions, seen through their liveliness tokens: the routes exist.
    wait_for_token(session, "@ros2_lv/0/*/*/*/MS/%/%/streamsam/%camera%image_raw%compressed/**")
    wait_for_token(session, "@ros2_lv/0/*/*/*/MS/%/%/streamsam/%camera%image_raw/**")
    wait_for_token(session, "@ros2_lv/0/*/*/*/MS/%/%/streamsam/%camera%camera_info/**")
    info.put(bytes.fromhex({camera_info!r}))
    encodings = {encodings!r}
    start = time.monotonic()
    for i, frame in enumerate(camera_frames({frames})):
        time.sleep(max(0.0, start + i * {period} - time.monotonic()))
        enc = encodings[i % len(encodings)]
        (packed if enc == "compressed" else raw).put(compressed_bytes(frame, i) if enc == "compressed" else image_bytes(frame, i, enc))
    print("sent", {frames}, flush=True)
    time.sleep(0.5)
    graph.close()
    session.close()
""")


def camera_info_bytes() -> bytes:
    m = types.message
    msg = m(types.CAMERA_INFO)(
        header=codec.header(stamp_of(0), "camera_optical"), height=180, width=240, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.arange(9, dtype=np.float64), r=np.eye(3).reshape(-1), p=np.zeros(12), binning_x=0, binning_y=0,
        roi=m("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )
    return types.serialize(msg, types.CAMERA_INFO)


def add_objects_request(stamp_ns: int, boxes=(), points=(), masks=()) -> bytes:
    """boxes: (id, x0, y0, x1, y1); points: (id, x, y, label); masks: (id, HxW bool)."""
    m = types.message
    from streamsam.ros2 import images

    def bbox(x0, y0, x1, y1):
        center = m("vision_msgs/msg/Pose2D")(position=m("vision_msgs/msg/Point2D")(x=(x0 + x1) / 2, y=(y0 + y1) / 2), theta=0.0)
        return m("vision_msgs/msg/BoundingBox2D")(center=center, size_x=float(x1 - x0), size_y=float(y1 - y0))

    req = m(types.ADD_OBJECTS + "_Request")(
        stamp=types.time_msg(stamp_ns),
        bbox_object_ids=np.array([b[0] for b in boxes], np.int32), bboxes=[bbox(*b[1:]) for b in boxes],
        point_object_ids=np.array([p[0] for p in points], np.int32),
        points=[m("vision_msgs/msg/Point2D")(x=float(p[1]), y=float(p[2])) for p in points],
        point_labels=np.array([p[3] for p in points], np.int32),
        mask_object_ids=np.array([k[0] for k in masks], np.int32),
        masks=[images.mono_image(codec.header(stamp_ns, ""), k[1].astype(np.uint8) * 255) for k in masks],
    )
    return types.serialize(req, types.ADD_OBJECTS + "_Request")


def remove_object_request(obj_id: int) -> bytes:
    return types.serialize(types.message(types.REMOVE_OBJECT + "_Request")(object_id=obj_id), types.REMOVE_OBJECT + "_Request")


def call(graph, service: str, type_name: str, request: bytes, sequence: int):
    reply = rmw_zenoh.call(graph, service, type_name, request, timeout_s=60.0, sequence=sequence)
    return types.deserialize(reply, type_name + "_Response")


def test_zenoh_node_end_to_end(tmp_path):
    port = free_port()
    node = ZenohNode(streamsam.StreamTracker(DEMO_MODEL, max_objects=4), node_endpoint(port))
    client_session = peer_endpoint(port).open()
    client = rmw_zenoh.Graph(client_session, peer_endpoint(port), "test_client")
    collect = Collector(client)
    camera = None
    try:
        # The node is on the graph as ROS 2 sees it: node, publishers, subscriptions and services.
        tokens = wait_for_token(client_session, "@ros2_lv/0/**")
        assert any(k.endswith("/NN/%/%/streamsam") for k in tokens)
        for kind, name, type_name in (("MP", "%streamsam%segmentation", types.SEGMENTATION), ("MP", "%streamsam%detections", types.DETECTIONS),
                                      ("MS", "%camera%image_raw", types.IMAGE), ("SS", "%streamsam%add_objects", types.ADD_OBJECTS),
                                      ("SS", "%streamsam%remove_object", types.REMOVE_OBJECT)):
            assert any(f"/{kind}/%/%/streamsam/{name}/{types.dds_name(type_name)}/{types.type_hash(type_name)}/" in k for k in tokens), (kind, name)
        wait_for_token(client_session, "@ros2_lv/0/*/*/*/MS/%/%/test_client/**")
        info_seen = []
        info_sub = rmw_zenoh.subscribe(client, "/streamsam/camera_info", types.CAMERA_INFO, lambda d, a: info_seen.append(d), rmw_zenoh.RELIABLE)

        script = CAMERA.format(tests=str(REPO / "tests"), port=port, frames=FRAMES, period=0.02, encodings=ENCODINGS,
                               camera_info=camera_info_bytes().hex())
        camera = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # Prompts made on frame 0 land on the newest frame at or after it.
        ops = []  # (kind, payload, landed stamp), in the order they were issued
        first = call(client, "/streamsam/add_objects", types.ADD_OBJECTS,
                     add_objects_request(stamp_of(0), boxes=[(1, 15, 25, 65, 75)], points=[(2, 200, 150, 1)]), 1)
        assert first.success, first.message
        assert tuple(first.object_ids) == (1, 2)
        ops.append(("prompt", [("box", 1, (15, 25, 65, 75)), ("points", 2, [(200, 150)], [1])], types.stamp_ns(first.stamp)))

        collect.wait(lambda: len({types.stamp_ns(s.header.stamp) for s in collect.segmentations}) >= 3)
        removed = call(client, "/streamsam/remove_object", types.REMOVE_OBJECT, remove_object_request(2), 2)
        assert removed.success and tuple(removed.object_ids) == (1,), removed.message
        ops.append(("remove", 2, types.stamp_ns(removed.stamp)))

        mask = np.zeros((180, 240), bool)
        mask[140:170, 10:50] = True
        third = call(client, "/streamsam/add_objects", types.ADD_OBJECTS, add_objects_request(types.stamp_ns(removed.stamp), masks=[(3, mask)],
                     points=[(4, 120, 20, 1), (4, 100, 90, 0)]), 3)
        # Objects are prompted in the order their ids first appear: boxes, then points, then masks.
        assert third.success and tuple(third.object_ids) == (1, 4, 3), third.message
        assert types.stamp_ns(third.stamp) >= types.stamp_ns(removed.stamp)
        ops.append(("prompt", [("points", 4, [(120, 20), (100, 90)], [1, 0]), ("mask", 3, mask)], types.stamp_ns(third.stamp)))

        out, err = camera.communicate(timeout=120)
        assert camera.returncode == 0, err
        deadline = time.monotonic() + 60
        while node.core.status().received < FRAMES:
            assert time.monotonic() < deadline, node.core.status()
            time.sleep(0.05)
        assert node.core.wait_idle()
        processed = node.core.status().processed
        collect.wait(lambda: len({types.stamp_ns(s.header.stamp) for s in collect.segmentations}) >= processed
                     and len(collect.detections) >= len(collect.segmentations) and collect.diagnostics
                     and collect.diagnostics[-1].status[0].values[1].value == str(processed))
        info_sub.undeclare()
    finally:
        if camera is not None and camera.poll() is None:
            camera.kill()
            camera.wait()
        collect.close()
        client.close()
        client_session.close()
        node.close()

    status = node.core.status()
    # Every frame arrived; those not processed were replaced by a newer one while the node was busy.
    assert status.received == FRAMES and status.errors == ()
    assert status.dropped == FRAMES - status.processed > 0
    assert int(collect.segmentations[-1].dropped_frames) == status.dropped
    values = {kv.key: kv.value for kv in collect.diagnostics[-1].status[0].values}
    assert values == {"received_frames": str(FRAMES), "processed_frames": str(status.processed), "dropped_frames": str(status.dropped)}
    assert all(len(a) == 33 for a in collect.attachments)
    assert info_seen and info_seen[-1] == camera_info_bytes()  # camera_info passed through untouched

    # Stamps and frame ids come back untouched, and each names a frame that was sent.
    frames = list(camera_frames(FRAMES))
    index_of = {stamp_of(i): i for i in range(FRAMES)}
    segs, dets = last_per_stamp(collect.segmentations), last_per_stamp(collect.detections)
    assert list(segs) == sorted(segs) and len(segs) == status.processed and set(segs) <= set(index_of)
    assert all(s.header.frame_id == "camera_optical" for s in collect.segmentations)
    assert {i % 3 for i in (index_of[s] for s in segs)} == {0, 1, 2} or status.processed < 6

    # The same frames and prompts through a StreamTracker directly: the same objects and masks.
    tracker = streamsam.StreamTracker(DEMO_MODEL, max_objects=4)
    for stamp in segs:
        result = tracker.track(frames[index_of[stamp]])
        for kind, payload, landed in ops:
            if landed != stamp:
                continue
            if kind == "remove":
                tracker.remove_object(payload)
                result = tracker.result()
                continue
            for prompt in payload:
                if prompt[0] == "box":
                    result = tracker.add_box(prompt[1], prompt[2])
                elif prompt[0] == "mask":
                    result = tracker.add_mask(prompt[1], prompt[2])
                else:
                    result = tracker.add_points(prompt[1], prompt[2], prompt[3])
        check_against(segs[stamp], dets[stamp], result)
        np.testing.assert_allclose(segs[stamp].scores, 1 / (1 + np.exp(-result.object_scores.astype(np.float64))), rtol=1e-6)
    assert tuple(segs[max(segs)].object_ids) == (1, 4, 3)
