"""streamsam.serve: streams over Ray workers that survive a worker's loss, and `streamsam serve`.

On a real local Ray cluster started here (no dashboard), with the bundled demo model."""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pytest

from conftest import moving_square_video

ray = pytest.importorskip("ray")
pytest.importorskip("streamsam.multi_stream")  # the multi-stream branch's tracker that the workers hold

from streamsam import StreamTracker  # noqa: E402
from streamsam.demo import DEMO_MODEL  # noqa: E402
from streamsam.errors import InputError, WorkerError  # noqa: E402
from streamsam.serve import LatestFrames, Prompt, StreamCluster  # noqa: E402

FRAMES = 6
CLICK = (60.0, 70.0)  # on the square's first position (x 20..60, y 30..70) of moving_square_video


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_a_killed_worker_costs_only_its_step(local_ray):
    """8 streams on 2 workers; one worker is killed mid-run, the other crashes a frame later. Their
    streams resume on new workers from the states the driver kept, and every stream's masks match a StreamTracker fed the same frames
    (all but the ones reported missed), prompts included (one added mid-run)."""
    videos = {f"cam{i}": list(moving_square_video(FRAMES, seed=i)) for i in range(8)}
    masks: dict = {s: {} for s in videos}
    late_click = {"cam1": (2, (150.0, 40.0))}  # object 2 on cam1, queued before step 2
    with StreamCluster(DEMO_MODEL, workers=2, streams_per_worker=4, max_objects=2) as cluster:
        for stream_id in videos:
            cluster.add_stream(stream_id, [Prompt(1, "points", (CLICK,))])
        assert len({cluster.worker_of(s) for s in videos}) == 2
        for t in range(FRAMES):
            if t == 2:
                obj_id, point = late_click["cam1"]
                cluster.add_points("cam1", obj_id, [point])
            if t == 3:  # through Ray
                killed = cluster.worker_of("cam0")
                ray.kill(cluster.actor(killed))
                lost = {s: [3] for s in videos if cluster.worker_of(s) == killed}
            if t == 4:  # a crash: the other first worker's process gets SIGKILL
                crashed = next(w for w in ("worker-1", "worker-2") if w != killed)
                os.kill(ray.get(cluster.actor(crashed).pid.remote()), signal.SIGKILL)
                lost.update({s: [4] for s in videos if cluster.worker_of(s) == crashed})
            results = cluster.step({s: v[t] for s, v in videos.items()})
            for stream_id, result in results.items():
                assert result.frame_index == t
                masks[stream_id][t] = dict(zip(result.object_ids, result.masks))
        assert cluster.restarts == 2
        assert {s: cluster.missed(s) for s in videos if cluster.missed(s)} == lost
        assert sorted(lost.values()).count([3]) == 4 and len(lost) == 8  # 4 streams per worker
        assert {cluster.worker_of(s) for s in videos} == {"worker-3", "worker-4"}
        assert all(s["frames"] == FRAMES for s in cluster.stats().values())
        missed = {s: cluster.missed(s) for s in videos}

    for stream_id, frames in videos.items():
        with StreamTracker(DEMO_MODEL, max_objects=2) as reference:
            for t, frame in enumerate(frames):
                if t in missed[stream_id]:
                    assert t not in masks[stream_id]
                    continue
                result = reference.track(frame)
                if t == 0:
                    result = reference.add_points(1, [CLICK])
                if t == 2 and stream_id in late_click:
                    result = reference.add_points(*late_click[stream_id][:1], [late_click[stream_id][1]])
                assert set(masks[stream_id][t]) == set(result.object_ids), (stream_id, t)
                for obj_id, mask in zip(result.object_ids, result.masks):
                    assert mask.any()
                    assert iou(masks[stream_id][t][obj_id], mask) >= 0.999, (stream_id, t, obj_id)


def test_bad_input_is_refused_before_anything_changes(local_ray):
    frames = list(moving_square_video(2))
    with StreamCluster(DEMO_MODEL, workers=1, streams_per_worker=2, max_objects=1) as cluster:
        cluster.add_stream("a", [Prompt(1, "points", (CLICK,))])
        cluster.add_stream("b", [Prompt(1, "points", (CLICK,))])
        with pytest.raises(InputError, match="capacity of 2"):
            cluster.add_stream("c")
        with pytest.raises(InputError, match="already running"):
            cluster.add_stream("a")
        with pytest.raises(InputError, match="'nope', which is unknown"):
            cluster.add_points("nope", 1, [CLICK])
        with pytest.raises(InputError, match="'nope', which is unknown"):
            cluster.step({"a": frames[0], "nope": frames[0]})
        cluster.step({"a": frames[0], "b": frames[0]})
        with pytest.raises(InputError, match="tracked objects"):
            cluster.remove_object("a", 7)
        with pytest.raises(InputError, match="max_objects=1"):
            cluster.add_points("a", 2, [CLICK])
        with pytest.raises(InputError, match="frame"):
            cluster.step({"a": frames[1][:50]})  # a different size from the stream's frames
        # A stream whose source died ends; the other carries on, and its slot is free again.
        cluster.end_stream("b", "stopped: camera unplugged")
        with pytest.raises(InputError, match="has ended"):
            cluster.step({"b": frames[1]})
        result = cluster.step({"a": frames[1]})["a"]
        assert result.frame_index == 1 and result.masks[0].any()
        cluster.add_stream("c", [Prompt(1, "points", (CLICK,))])
        assert cluster.active == ("a", "c")
        assert cluster.streams["a"].rejected == []  # the driver checked every prompt it passed on


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_a_worker_that_cannot_start_says_which_and_why(local_ray, tmp_path, broken):
    graphs = tmp_path / "graphs"
    if broken == "garbage":
        graphs.mkdir()
        (graphs / "manifest.json").write_text("{not json")
    with pytest.raises(WorkerError, match="worker-1 \\| could not start: .*(manifest|JSON|json)"):
        StreamCluster(graphs, workers=1, start_timeout_s=60)


def test_live_frames_keep_the_newest_and_count_drops():
    box = LatestFrames()
    box.open("live")
    box.open("file")
    for i in range(3):
        box.put("live", i, wait=False)
    box.put("file", 0, wait=True)
    second = threading.Thread(target=box.put, args=("file", 1, True))
    second.start()
    second.join(0.2)
    assert second.is_alive()  # a file's frame waits for its slot: none dropped
    frames, ended = box.take()
    assert frames == {"live": 2, "file": 0} and ended == {}
    assert box.dropped == {"live": 2, "file": 0}
    second.join(5)
    box.end("file", "ended")
    frames, ended = box.take()
    assert frames == {"file": 1} and ended == {"file": "ended"}


def test_serve_command_writes_each_stream(local_ray, tmp_path, capsys):
    from streamsam.cli import main
    from streamsam.writers import VideoWriter

    sources = []
    for i in range(2):
        path = tmp_path / f"clip{i}.mp4"
        writer = VideoWriter(path, fps=10)
        for frame in moving_square_video(4, seed=i):
            writer.write(frame)
        writer.close()
        sources += ["--source", str(path)]
    # A third source dies at its third frame (an image that cannot be decoded): its stream ends, the
    # others carry on, and the command's exit status says something stopped.
    from PIL import Image

    folder = tmp_path / "folder"
    folder.mkdir()
    for t, frame in enumerate(moving_square_video(4, seed=2)):
        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    (folder / "002.png").write_bytes(b"not a png")
    sources += ["--source", str(folder)]
    out = tmp_path / "runs"
    code = main(["serve", *sources, "--point", "0:60,70", "--box", "1:20,30,60,70", "--point", "2:60,70", "--workers", "2",
                 "--out-dir", str(out), "--out", "masks", "--out", "overlay.mp4", "--out", "masks.jsonl", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "stream2: 2 frames; stopped: InputError: image" in err
    assert sorted(p.name for p in (out / "stream2" / "masks").iterdir()) == ["000000_obj1.png", "000001_obj1.png"]
    import av

    for i in range(2):
        stream = out / f"stream{i}"
        assert sorted(p.name for p in (stream / "masks").iterdir()) == [f"{t:06d}_obj1.png" for t in range(4)]
        lines = [json.loads(line) for line in (stream / "masks.jsonl").read_text().splitlines()]
        assert [line["frame"] for line in lines] == list(range(4)) and all(line["objects"][0]["rle"]["counts"] for line in lines)
        with av.open(str(stream / "overlay.mp4")) as video:
            assert sum(1 for _ in video.decode(video=0)) == 4
    assert "stream0: 4 frames; ended" in err and "stream1: 4 frames; ended" in err


def test_serve_prompt_syntax_errors_are_clear(capsys):
    from streamsam.cli import main
    from streamsam.serve.command import parse_prompts

    assert main(["serve", "--source", "a", "--source", "b", "--source", "c", "--point", "0:1,1", "--streams-per-worker", "1", "--workers", "2"]) == 1
    assert "received 3 sources; expected at most --workers x --streams-per-worker = 2 x 1" in capsys.readouterr().err

    with pytest.raises(InputError, match="expected 0 to 1"):
        parse_prompts(["2:10,10"], None, 2)
    with pytest.raises(InputError, match="SOURCE"):
        parse_prompts(["10,10"], None, 2)
    with pytest.raises(InputError, match="no --point or --box for source 1"):
        parse_prompts(["0:10,10"], None, 2)
    prompts = parse_prompts(["0:10,10", "1:5,6"], ["0:1,2,30,40"], 2)
    assert [(p.obj_id, p.kind) for p in prompts[0]] == [(1, "points"), (2, "box")]


def test_serve_overhead_benchmark_runs(tmp_path):
    """The benchmark the lead times alone (`python -m benchmarks.serve_overhead`), at a tiny size, in
    its own process (it starts its own Ray)."""
    import subprocess
    import sys

    from conftest import REPO

    subprocess.run([sys.executable, "-m", "benchmarks.serve_overhead", "--streams", "1", "--frames", "3", "--calls", "5",
                    "--width", "160", "--height", "120", "--out", str(tmp_path)], cwd=REPO, check=True, capture_output=True, timeout=300)
    report = json.loads(next(tmp_path.glob("serve_overhead_*.json")).read_text())
    assert report["steps_timed"] >= 1 and report["noop_actor_call_ms"] > 0 and report["state_bytes_per_stream"] > 0


def test_a_worker_with_no_room_to_start_times_out_by_name(local_ray):
    """The test cluster has 4 CPUs: a fifth one-CPU worker cannot be placed, and says so instead of hanging."""
    with pytest.raises(WorkerError, match="worker-5 \\| did not start within 3 s.*1 free CPU"):
        StreamCluster(DEMO_MODEL, workers=5, cpus_per_worker=1, start_timeout_s=3)
    with StreamCluster(DEMO_MODEL, workers=1) as cluster:  # the four started before were stopped
        cluster.add_stream("a", [Prompt(1, "points", (CLICK,))])
        assert cluster.step({"a": next(moving_square_video(1))})["a"].masks[0].any()
