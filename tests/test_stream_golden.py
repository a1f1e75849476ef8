"""StreamTracker against the official SAM2VideoPredictor on a live stream (tests/golden/stream, made by
make_golden_stream.py; README "Stream sequence"): 40 frames fed one at a time, objects 1 and 2 clicked
on frame 0, object 3 added by a box on frame 18 after tracking reached it, then all three tracked to
frame 39 (the 16-pointer FIFO and the 6-frame memory ring wrap). Per frame and object: mask IoU at
video resolution >= 0.999, equal object-score signs, low-res logits within LOGIT_TOLERANCE (max) and
MEAN_LOGIT_TOLERANCE (mean)."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from conftest import GOLDEN
from streamsam import OnnxRuntimeBackend
from streamsam.contracts import MEMORY_ATTENTION
from streamsam.stream_tracker import StreamTracker

sys.path.insert(0, str(GOLDEN))
import video_parity  # noqa: E402  (tests/golden/video_parity.py)

# Measured (ONNX Runtime 1.32 CPU, torch 2.13 export, default threads), over all 102 frame x object
# checks: reduced max |low-res logit error| 1.22e-3 (frame 35, object 1), mean 1.4e-5, min IoU 0.99993;
# tiny max 6.1e-4 (frame 38, object 1), mean 4.4e-5, min IoU 0.99992. Prompted frames are within
# 4e-5; tracked frames carry the float32 noise amplified by the bf16 memories (a value rounding to
# the other bf16 neighbour): the official predictor itself, rerun on this fixture with 2 threads
# instead of 1, moves by max 1.7e-3 / mean 2.2e-5 (reduced) and 5.9e-4 / 3.6e-5 (tiny); our
# VideoPredictor's parity is at the same level (benchmarks/results/video_parity.md: up to 2.1e-3).
# The bars: 4x the worst measured max; the mean about 2x the worst measured mean. What they catch
# (reduced, a scratch patch of MemoryBank.select): attending to 5 instead of 6 recent memories gives
# min IoU 0.32, mean error 8.5e-2; pointer positions divided by 14 instead of 15 stay at max 1.7e-3 /
# mean 4.1e-5, below the logit bars: hence the exact check of every memory-attention call's selection
# against the official one (`selection/*`), which fails on it.
LOGIT_TOLERANCE = 5e-3
MEAN_LOGIT_TOLERANCE = 1e-4


class SelectionRecordingBackend:
    """The real ONNX Runtime backend; records what each memory-attention call attends to."""

    def __init__(self, graphs) -> None:
        self.inner = OnnxRuntimeBackend(graphs)
        self.manifest = self.inner.manifest
        self.calls: list[dict[str, np.ndarray]] = []

    def run(self, graph, inputs, outputs) -> None:
        if graph == MEMORY_ATTENTION:
            self.calls.append({k: np.array(inputs[k]) for k in ("memory_tpos", "memory_valid", "obj_ptr_tpos", "obj_ptr_valid")})
        self.inner.run(graph, inputs, outputs)


def selections(backend: SelectionRecordingBackend, num_frames: int = 40) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
    """(frame, object row) -> (sorted memory temporal positions, sorted pointer distances) of our calls.
    Only track() attends (an initial prompt does not): call i is frame i + 1, rows 0..n-1."""
    assert len(backend.calls) == num_frames - 1
    out = {}
    for frame, call in enumerate(backend.calls, start=1):
        for row in range(call["memory_valid"].shape[0]):
            mem = sorted(call["memory_tpos"][row][call["memory_valid"][row]].astype(int).tolist())
            # pointer positions are distance / 15 on a stream (min(num_frames, 16) - 1 officially, 40 frames)
            ptr = sorted(np.rint(call["obj_ptr_tpos"][row][call["obj_ptr_valid"][row]] * 15).astype(int).tolist())
            out[frame, row] = (mem, ptr)
    return out


def official_selections(z, num_maskmem: int = 7) -> dict[tuple[int, int], tuple[list[int], list[int]]]:
    """The same from the fixture's selection/* (official maskmem_tpos_enc index: num_maskmem - 1 for
    prompted frames (our position 0), distance - 1 else; pointers: signed distance, here >= 0)."""
    out = {}
    for i in np.flatnonzero(z["selection/is_init_cond_frame"] == 0):
        index = z["selection/mem_tpos_index"][i]
        mem = sorted(0 if j == num_maskmem - 1 else int(j) + 1 for j in index[index >= 0])
        ptr = z["selection/ptr_tpos"][i]
        out[int(z["selection/frame_idx"][i]), int(z["selection/obj_idx"][i])] = (mem, sorted(ptr[ptr >= 0].tolist()))
    return out


def replay_stream(name: str, graphs) -> tuple[list[video_parity.FrameCheck], dict]:
    """Feed the golden stream to a StreamTracker one frame at a time with the fixture's prompts on
    their frames (after that frame's track); one check per frame and object present."""
    z = np.load(GOLDEN / "stream" / f"{name}.npz")
    meta = json.loads(z["meta"].item())
    num_frames = meta["frames"]["num_frames"]
    frames = np.ascontiguousarray(np.load(GOLDEN / "video" / "frames.npz")["frames"][:num_frames])
    assert hashlib.sha256(frames.tobytes()).hexdigest() == meta["frames"][f"sha256_first_{num_frames}"]
    obj_ids = z["obj_ids"].tolist()
    official, official_scores, has_output = z["low_res_masks"], z["object_score_logits"], z["has_output"].astype(bool)
    prompts: dict[int, list[dict]] = {}
    for step in meta["script"]:
        if step["call"] == "add_new_points_or_box":
            prompts.setdefault(step["kwargs"]["frame_idx"], []).append(step["kwargs"])

    # The official predictor skips hole filling on a CPU (its CUDA kernel is missing): so do we here.
    tracker = StreamTracker(graphs, max_objects=3, fill_hole_area=0, resize="pil_bicubic")
    size = frames.shape[1:3]
    checks: list[video_parity.FrameCheck] = []
    for t, frame in enumerate(frames):
        tracked = result = tracker.track(frame)
        assert result.frame_index == t
        for kw in prompts.get(t, []):
            if "box" in kw:
                result = tracker.add_box(kw["obj_id"], kw["box"])
            else:
                result = tracker.add_points(kw["obj_id"], kw["points"], kw["labels"])
        # A new object's prompt leaves the tracked objects' results of the frame as they were.
        n = len(tracked.object_ids)
        assert result.object_ids[:n] == tracked.object_ids
        np.testing.assert_array_equal(result.low_res_logits[:n], tracked.low_res_logits)
        rows = [obj_ids.index(i) for i in result.object_ids]
        assert sorted(rows) == np.flatnonzero(has_output[t]).tolist(), t
        checks += video_parity._compare(
            "stream", t, result.object_ids, result.low_res_logits, official[t, rows],
            result.object_scores, list(official_scores[t, rows]), size)  # fmt: skip
    return checks, meta


def summary(checks: list[video_parity.FrameCheck]) -> str:
    worst = min(checks, key=lambda c: c.iou)
    err = max(checks, key=lambda c: c.max_abs_error)
    return (f"{len(checks)} checks, min IoU {worst.iou:.6f} (frame {worst.frame} object {worst.obj_id}), "
            f"max |logit err| {err.max_abs_error:.2e} (frame {err.frame} object {err.obj_id}), "
            f"mean {np.mean([c.mean_abs_error for c in checks]):.2e}")


@pytest.mark.parametrize("name", ["reduced", "tiny"])
def test_stream_tracker_gives_the_official_stream(name, tmp_path):
    backend = SelectionRecordingBackend(video_parity.export_golden_graphs(name, tmp_path / name))
    checks, _ = replay_stream(name, backend)
    print(f"{name}: {summary(checks)}")
    # every tracked frame attends, per object, to the memories and pointers the official one does
    ours, official = selections(backend), official_selections(np.load(GOLDEN / "stream" / f"{name}.npz"))
    assert len(official) == 99 and ours == official
    assert official[19, 2] == ([0], [1]) and official[39, 2] == ([0, 1, 2, 3, 4, 5, 6], [*range(1, 16), 21])
    assert len(checks) == 40 + 40 + 22  # objects 1, 2 on every frame; object 3 from frame 18
    assert {(c.frame, c.obj_id) for c in checks} >= {(18, 3), (39, 3), (0, 1), (0, 2)}
    worst = min(checks, key=lambda c: c.iou)
    assert worst.iou >= 0.999, worst
    assert all(c.score_sign_equal for c in checks)
    assert max(c.max_abs_error for c in checks) < LOGIT_TOLERANCE, summary(checks)
    assert np.mean([c.mean_abs_error for c in checks]) < MEAN_LOGIT_TOLERANCE, summary(checks)
