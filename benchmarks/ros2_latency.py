"""Latency the ROS 2 node adds beyond the tracker: serialisation, transport, label image and boxes.

    python -m benchmarks.ros2_latency [--frames 60] [--width 640 --height 480] [--objects 1]

A camera (its own Zenoh session, in its own process) publishes one sensor_msgs/Image at a time
over loopback to the node (ZenohNode, rmw_zenoh wire, demo model); it waits for the node's
Segmentation of that frame before sending the next, so no frame is dropped. For each frame:
end-to-end time (camera put -> Segmentation decoded by the camera) minus the tracker's own
`track()` time = what the node adds. Writes benchmarks/results/ros2_latency_<machine>.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.export_models import RESULTS, cpu_model_name, machine_id


class TimedTracker:
    """A StreamTracker whose track() calls are timed; everything else passes through."""

    def __init__(self, tracker) -> None:
        self._tracker, self.track_s = tracker, []

    def track(self, frame):
        start = time.perf_counter()
        result = self._tracker.track(frame)
        self.track_s.append(time.perf_counter() - start)
        return result

    def __getattr__(self, name):
        return getattr(self._tracker, name)


def camera(port: int, frames: int, width: int, height: int, results) -> None:
    """The camera side: publish, wait for the segmentation of that stamp, record the round trip."""
    from streamsam.ros2 import rmw_zenoh, types
    from streamsam.ros2.codec import header

    endpoint = rmw_zenoh.ZenohEndpoint(connect=(f"tcp/127.0.0.1:{port}",))
    session = endpoint.open()
    graph = rmw_zenoh.Graph(session, endpoint, "camera")
    publisher = rmw_zenoh.Publisher(graph, "/camera/image_raw", types.IMAGE, rmw_zenoh.BEST_EFFORT)
    arrived, cond = {}, threading.Condition()

    def on_segmentation(data, _attachment):
        msg = types.deserialize(data, types.SEGMENTATION)  # decoding is the consumer's cost, counted too
        with cond:
            arrived[types.stamp_ns(msg.header.stamp)] = time.perf_counter()
            cond.notify_all()

    sub = rmw_zenoh.subscribe(graph, "/streamsam/segmentation", types.SEGMENTATION, on_segmentation, rmw_zenoh.RELIABLE)
    while not [r for r in session.liveliness().get("@ros2_lv/0/*/*/*/MS/%/%/streamsam/%camera%image_raw/**", timeout=1.0) if r.ok is not None]:
        time.sleep(0.05)
    time.sleep(0.5)  # the node's route to our subscription settles too
    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    texture = rng.integers(130, 255, (96, 96, 3), dtype=np.uint8)
    round_trips = []
    for i in range(frames):
        frame = background.copy()
        x, y = 40 + (4 * i) % (width - 180), 40 + (3 * i) % (height - 180)
        frame[y : y + 96, x : x + 96] = texture
        stamp = STAMP0 + i * 33_333_333
        msg = types.message(types.IMAGE)(header=header(stamp, "camera"), height=height, width=width, encoding="rgb8",
                                          is_bigendian=0, step=width * 3, data=frame.reshape(-1))
        start = time.perf_counter()
        publisher.put(types.serialize(msg, types.IMAGE))  # serialising is the camera's cost, counted too
        with cond:
            if not cond.wait_for(lambda: stamp in arrived, timeout=120):
                raise RuntimeError(f"no segmentation for frame {i} within 120 s")
        round_trips.append(arrived[stamp] - start)
    results.put(round_trips)
    sub.undeclare()
    publisher.close()
    graph.close()
    session.close()


STAMP0 = 1_700_000_000_000_000_000


def percentiles(values) -> dict:
    ms = np.asarray(values) * 1e3
    return {"median_ms": round(float(np.median(ms)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames timed after the first (the prompt lands on the first)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads (default 1: the transport has the other core)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import socket

    import streamsam
    from streamsam.ros2 import ObjectPrompt
    from streamsam.ros2.rmw_zenoh import ZenohEndpoint
    from streamsam.ros2.zenoh_node import ZenohNode

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    load_before = os.getloadavg()
    model = Path(streamsam.__file__).parent / "demo_model"
    tracker = TimedTracker(streamsam.StreamTracker(streamsam.OnnxRuntimeBackend(model, threads=args.threads), max_objects=1))
    node = ZenohNode(tracker, ZenohEndpoint(listen=(f"tcp/127.0.0.1:{port}",), connect=()))
    results = mp.get_context("spawn").Queue()
    cam = mp.get_context("spawn").Process(target=camera, args=(port, args.frames + 1, args.width, args.height, results))
    cam.start()
    box = (40.0, 40.0, 136.0, 136.0)  # the square on frame 0
    reply = node.core.add_objects(STAMP0, [ObjectPrompt(1, box=box)], timeout_s=120)  # lands on frame 0 when it comes
    assert reply.success, reply.message
    round_trips = results.get(timeout=600)
    cam.join(timeout=30)
    node.close()
    load_after = os.getloadavg()

    # Frame 0 carries the prompt and the first run of each graph: left out.
    round_trips, track_s = round_trips[1:], tracker.track_s[1 : len(round_trips) + 1]
    assert len(track_s) == len(round_trips) == args.frames and node.core.status().dropped == 0
    added = np.asarray(round_trips) - np.asarray(track_s)
    report = {
        "command": "python -m benchmarks.ros2_latency " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": cpu_model_name(), "cores": os.cpu_count(), "frame": f"{args.width}x{args.height} rgb8", "objects": 1,
        "frames": args.frames, "model": "bundled demo model (384 px), ONNX Runtime CPU, threads=" + str(args.threads),
        "transport": "rmw_zenoh wire over loopback TCP, camera in another process",
        "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in load_after],
        "added_by_node": percentiles(added), "end_to_end": percentiles(round_trips), "tracker_track": percentiles(track_s),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"ros2_latency_{machine_id()}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {report[key]['median_ms']} | {report[key]['p99_ms']} |" for name, key in (
        ("added by the node (end to end - track)", "added_by_node"), ("end to end (put -> Segmentation decoded)", "end_to_end"),
        ("StreamTracker.track", "tracker_track")))
    stem.with_suffix(".md").write_text(f"""# ROS 2 node latency beyond the tracker

`{report['command']}`

{report['frames']} frames of {report['frame']}, one object, {report['model']}; {report['transport']}. Each frame
is sent once the previous one's Segmentation came back (nothing dropped). What the node adds:
Image CDR in and out (rosbags), the Zenoh hops both ways, the label image, boxes and detections.

| ms | median | p99 |
|---|---|---|
{rows}

{machine_note(report)}
""")
    print(stem.with_suffix(".md").read_text())


def machine_note(report: dict) -> str:
    """The machine and its load; a run that started on a busy machine (side_by_side's threshold) says so."""
    from .side_by_side import BUSY_LOAD

    busy = report["load_average_before"][0] > BUSY_LOAD
    note = (f"Machine: {report['machine']}, {report['cores']} cores; load average {report['load_average_before']} before and "
            f"{report['load_average_after']} after (1, 5, 15 min).")
    if busy:
        note += f" **The 1-minute load was above {BUSY_LOAD} when it started: something else was running; the p99 carries its noise.**"
    return note


if __name__ == "__main__":
    main()
