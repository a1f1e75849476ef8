"""The node core without any transport: only the newest waiting frame is tracked, a prompt stamped
after the current frame waits for the frame at or after its stamp and says which it landed on,
and a closed core refuses requests instead of hanging."""

from __future__ import annotations

import threading

import numpy as np

from ros2_helpers import DEMO_MODEL, camera_frames, stamp_of

import streamsam
from streamsam.ros2 import CoreConfig, NodeCore, ObjectPrompt


def test_newest_frame_and_prompt_stamps():
    frames = list(camera_frames(6))
    outputs = []
    core = NodeCore(streamsam.StreamTracker(DEMO_MODEL, max_objects=2), outputs.append, config=CoreConfig(prompt_timeout_s=30))
    for i in range(3):  # arrive before the worker runs: 0 and 1 are replaced by 2
        core.submit_frame(stamp_of(i), "cam", frames[i])
    with core:
        assert core.wait_idle()
        assert (core.received, core.processed, core.dropped) == (3, 1, 2)
        assert [o.stamp_ns for o in outputs] == [stamp_of(2)] and outputs[0].dropped_frames == 2

        # Made on frame 4, which has not come yet: it waits for it, and lands there rather than on frame 3.
        replies = []
        waiter = threading.Thread(target=lambda: replies.append(core.add_objects(stamp_of(4), [ObjectPrompt(1, box=(15, 25, 65, 75))])))
        waiter.start()
        core.submit_frame(stamp_of(3), "cam", frames[3])
        assert core.wait_idle() and not replies
        core.submit_frame(stamp_of(4), "cam", frames[4])
        waiter.join(timeout=60)
        assert replies[0].success and replies[0].stamp_ns == stamp_of(4) and replies[0].object_ids == (1,)
        # Made on frame 2, older than the current frame 4: it lands on frame 4 at once.
        late = core.add_objects(stamp_of(2), [ObjectPrompt(2, points=np.array([[200, 150]], np.float32), labels=np.array([1], np.int32))])
        assert late.success and late.stamp_ns == stamp_of(4) and late.object_ids == (1, 2)
        assert [o.stamp_ns for o in outputs] == [stamp_of(2), stamp_of(3), stamp_of(4), stamp_of(4)]
        assert outputs[-1].object_ids == (1, 2) and outputs[-1].labels.dtype == np.uint8

    after = core.add_objects(0, [ObjectPrompt(3, box=(0, 0, 10, 10))])
    assert not after.success and "not running" in after.message

    tracker = streamsam.StreamTracker(DEMO_MODEL, max_objects=2)
    tracker.track(frames[2])
    tracker.track(frames[3])
    tracker.track(frames[4])
    tracker.add_box(1, (15, 25, 65, 75))
    result = tracker.add_points(2, [(200, 150)], [1])
    logits = result.logits()
    np.testing.assert_array_equal(outputs[-1].labels, np.where((logits > 0).any(0), logits.argmax(0) + 1, 0))
    assert outputs[-1].labels.any()
