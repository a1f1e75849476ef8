"""Generate the live-stream golden fixtures of streamsam from the OFFICIAL ``SAM2VideoPredictor``.

Run (from the repository root, in the official venv; see make_golden.py for its setup)::

    /work/venv-official/bin/python tests/golden/make_golden_stream.py            # reduced + tiny
    /work/venv-official/bin/python tests/golden/make_golden_stream.py --configs reduced
    /work/venv-official/bin/python tests/golden/make_golden_stream.py --check    # regenerate, compare bytes

What it records: what a live ``StreamTracker`` must report when it is fed the first 40 frames of
``video/frames.npz`` one at a time, with two objects prompted on frame 0 and a third object
arriving by a box on frame 18, after tracking has reached frame 18. The predictor, weights,
frames and CPU notes are those of ``make_golden_video.py`` (imported, not copied): configs
``reduced`` and ``tiny`` at 256, seeded weights, one CPU thread, no hole filling (the official
``fill_hole_area=8`` needs ``sam2._C``, absent on CPU: compare with ``fill_hole_area=0``),
memory attention's ``memory`` cast to float32 when it is all bfloat16.

The stream (what StreamTracker does)::

    track(f0); add_points(1, click); add_points(2, click)    # objects 1, 2: prompted frame 0
    track(f1) .. track(f17)                                  # objects 1, 2 tracked
    track(f18)                                               # objects 1, 2 tracked on 18
    add_box(3, box)                                          # object 3: prompted frame 18
    track(f19) .. track(f39)                                 # objects 1, 2, 3 tracked

The official call sequence that gives the same per-object result on every frame (one session;
``SCRIPT`` below)::

    state = init_state(<the 40 frames>)
    add_new_points_or_box(state, frame_idx=0, obj_id=1, points=[[60, 118]], labels=[1])
    add_new_points_or_box(state, frame_idx=0, obj_id=2, points=[[205, 138]], labels=[1])
    propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=18)    # yields 0..18
    add_new_points_or_box(state, frame_idx=18, obj_id=3, box=<bbox of object 1's visible part on 18>)
    propagate_in_video(state, start_frame_idx=19)                              # yields 19..39

Why it matches the stream:

* sam2 1.1.0 (the PyPI release) *does* accept a new object after tracking started:
  ``_obj_id_to_idx`` has ``allow_new_object = True`` ("We always allow adding new objects
  (including after tracking starts)"); older git versions raised "Cannot add new object id ...
  after tracking starts". Object 3 has no tracked frames, so its frame-18 prompt is an initial
  conditioning frame (no memory, ``no_mem_embed``; a box = 2 points: single mask + dynamic
  fallback), exactly what StreamTracker does for a new object on the current frame.
* ``start_frame_idx=19`` is essential. The default start is the earliest conditioning frame (0):
  it would re-track objects 1 and 2 on 1..18 (harmless: same values) but also track object 3 on
  frames 0..17 *from its future conditioning frame 18*, and those non-conditioning memories and
  pointers (frames 13..17, 4..17) would then feed object 3 on frames 19+: not a stream. Starting
  at 18 would re-run objects 1 and 2 on frame 18 (same inputs, same values); 19 avoids that.
  The preflight of the second propagation encodes object 3's frame-18 memory (binarised, as
  StreamTracker does when the prompt arrives).
* The official predictor runs every object separately (batch 1, its own output dicts; no
  non-overlap constraint), so objects 1 and 2 are unaffected by object 3, as in StreamTracker,
  which batches objects but keeps their memories apart.
* ``max_frame_num_to_track=18`` then ``start_frame_idx=19``: frame 19 reads the non-conditioning
  outputs of frames 13..18 stored by the first propagation, exactly as one uninterrupted pass.
* A 40-frame video: the official pointer positions are divided by ``min(num_frames, 16) - 1 = 15``,
  the constant a stream (unknown length) uses; the 16-pointer FIFO and the 6-frame memory ring wrap.

Recorded per frame and object (``selection/*`` as in the video fixtures, from the same Recorder):
the official result of the frame after its last call (frame 0: after both prompts; frame 18: the
prompt's consolidated output, whose objects 1, 2 are their tracked outputs, checked): low-res
logits, object score logits, whether the object exists yet. Every reused conditioning output
and every consolidated prompt output is checked ``torch.equal`` against what is stored.

Output: ``tests/golden/stream/<config>.npz`` (layout in tests/golden/README.md, "Stream sequence").
Deterministic (one thread, fixed zip timestamps): ``--check`` reports both files ``identical``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the official propagation prints progress bars

import argparse
import filecmp
import importlib.util
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

GOLDEN_DIR = Path(__file__).resolve().parent
STREAM_DIR = GOLDEN_DIR / "stream"


def _load_make_golden_video():
    """Import the video generator by file path (predictor, frames, Recorder, helpers)."""
    path = GOLDEN_DIR / "make_golden_video.py"
    spec = importlib.util.spec_from_file_location("streamsam_make_golden_video", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


mgv = _load_make_golden_video()
mg, rw = mgv.mg, mgv.rw

T = 40  # frames of the stream: the first 40 of video/frames.npz
PAUSE = 18  # the frame tracking has reached when object 3 arrives
OBJ_IDS = (1, 2, 3)
S = mgv.S


def load_frames() -> tuple[np.ndarray, np.ndarray, str]:
    """The first T frames of video/frames.npz (the one source of the synthetic video), checked
    against its recorded sha256; returns frames, shape masks, the sha256 of the T frames."""
    z = np.load(mgv.VIDEO_DIR / "frames.npz")
    frames, masks = z["frames"], z["shape_masks"]
    if mgv.frames_sha256(frames) != json.loads(z["meta"].item())["frames_sha256"]:
        raise RuntimeError("video/frames.npz does not match its recorded sha256")
    return np.ascontiguousarray(frames[:T]), np.ascontiguousarray(masks[:T]), mgv.frames_sha256(frames[:T])


def build_script(shape_masks: np.ndarray) -> list[dict]:
    """The official call sequence (module docstring). Coordinates: pixels of the 256 x 256 video."""
    c1 = [round(v) for v in mgv._obj1_center(0)]
    c2 = [round(v) for v in mgv._obj2_center(0)]
    return [
        dict(name="p0_click_obj1_f0", call="add_new_points_or_box",
             kwargs=dict(frame_idx=0, obj_id=1, points=[c1], labels=[1])),
        dict(name="p1_click_obj2_f0", call="add_new_points_or_box",
             kwargs=dict(frame_idx=0, obj_id=2, points=[c2], labels=[1])),
        dict(name="prop1_to_18", call="propagate_in_video",
             kwargs=dict(start_frame_idx=0, max_frame_num_to_track=PAUSE)),
        dict(name="p2_box_obj3_f18", call="add_new_points_or_box",
             kwargs=dict(frame_idx=PAUSE, obj_id=3, box=mgv._bbox(shape_masks[PAUSE, 0]))),
        dict(name="prop2_from_19", call="propagate_in_video", kwargs=dict(start_frame_idx=PAUSE + 1)),
    ]


def run_session(model, frames: np.ndarray, shape_masks: np.ndarray, arrays: dict, meta: dict) -> None:
    """Play SCRIPT; fill the per-frame, per-object arrays and meta."""
    from sam2.modeling.sam2_base import NO_OBJ_SCORE

    low = model.image_size // 4
    images = mgv.normalize_frames(frames)
    with tempfile.TemporaryDirectory() as tmp:
        mgv.write_lossless_frame_folder(frames, Path(tmp))
        state = model.init_state(video_path=tmp)
    if not torch.equal(state["images"], images):
        raise RuntimeError("official loader frames != normalize_frames(frames)")
    state["images"] = images
    if (state["video_height"], state["video_width"], state["num_frames"]) != (S, S, T):
        raise RuntimeError("unexpected video size")

    lows = np.full((T, len(OBJ_IDS), low, low), NO_OBJ_SCORE, np.float32)
    scores = np.full((T, len(OBJ_IDS)), NO_OBJ_SCORE, np.float32)
    has_output = np.zeros((T, len(OBJ_IDS)), np.uint8)
    prompted = np.zeros((T, len(OBJ_IDS)), np.uint8)  # a conditioning frame of the object
    rec = mgv.Recorder(model, state)
    script = build_script(shape_masks)
    meta["script"] = []
    with warnings.catch_warnings(record=True) as caught, rec.active():
        warnings.simplefilter("always")
        for step_idx, step in enumerate(script):
            rec.phase = step_idx
            info = {"name": step["name"], "call": step["call"], "kwargs": step["kwargs"]}
            if step["call"] == "propagate_in_video":
                yielded = []
                for frame_idx, obj_ids, video_res in model.propagate_in_video(state, **step["kwargs"]):
                    per_obj = []
                    for k, obj_id in enumerate(obj_ids):
                        od = state["output_dict_per_obj"][k]
                        reused = frame_idx in od["cond_frame_outputs"]
                        out = od["cond_frame_outputs" if reused else "non_cond_frame_outputs"][frame_idx]
                        row = OBJ_IDS.index(obj_id)
                        if reused:  # the prompt's output, already stored: must be the same
                            if not (has_output[frame_idx, row] and np.array_equal(
                                    lows[frame_idx, row], mgv.n32(out["pred_masks"][0, 0]))):
                                raise RuntimeError(f"frame {frame_idx}: reused cond output != prompt output")
                        lows[frame_idx, row] = mgv.n32(out["pred_masks"][0, 0])
                        scores[frame_idx, row] = float(out["object_score_logits"])
                        has_output[frame_idx, row] = 1
                        per_obj.append(out["pred_masks"])
                    ref = F.interpolate(torch.cat(per_obj), size=(S, S), mode="bilinear", align_corners=False)
                    if not torch.equal(ref, video_res):
                        raise RuntimeError(f"frame {frame_idx}: video_res != bilinear(pred_masks)")
                    yielded.append(int(frame_idx))
                info.update(first_frame=yielded[0], last_frame=yielded[-1], num_frames=len(yielded),
                            obj_ids=[int(i) for i in obj_ids],
                            cond_frames_per_obj={str(state["obj_idx_to_id"][k]): sorted(
                                state["output_dict_per_obj"][k]["cond_frame_outputs"])
                                for k in state["output_dict_per_obj"]})
                if yielded != list(range(yielded[0], yielded[-1] + 1)):
                    raise RuntimeError(f"{step['name']}: frames not consecutive")
            else:
                rec.track_calls.clear()
                kw = step["kwargs"]
                frame_idx, obj_ids, video_res = model.add_new_points_or_box(state, **kw)
                if len(rec.track_calls) != 1:
                    raise RuntimeError(f"{step['name']}: expected one track_step call")
                tc = rec.track_calls[0]
                obj_idx = state["obj_id_to_idx"][kw["obj_id"]]
                out = state["temp_output_dict_per_obj"][obj_idx]["cond_frame_outputs"].get(frame_idx)
                if not tc["is_init_cond_frame"] or out is None:
                    raise RuntimeError(f"{step['name']}: expected an initial conditioning frame")
                row = OBJ_IDS.index(kw["obj_id"])
                lows[frame_idx, row] = mgv.n32(out["pred_masks"][0, 0])
                scores[frame_idx, row] = float(out["object_score_logits"])
                has_output[frame_idx, row] = prompted[frame_idx, row] = 1
                # the consolidated output = what the stream reports after the prompt: every known
                # object's current output on the frame (objects 1, 2 on frame 18: their tracked ones)
                rows = [OBJ_IDS.index(i) for i in obj_ids]
                if not has_output[frame_idx, rows].all():
                    raise RuntimeError(f"{step['name']}: an object without output on the frame")
                ref = F.interpolate(torch.from_numpy(lows[frame_idx, rows][:, None]), size=(S, S),
                                    mode="bilinear", align_corners=False)
                if not torch.equal(ref, video_res):
                    raise RuntimeError(f"{step['name']}: consolidated output != the stored per-object outputs")
                pts = tc["point_inputs"]
                info.update(
                    frame_idx=int(frame_idx), obj_ids=[int(i) for i in obj_ids],
                    is_init_cond_frame=bool(tc["is_init_cond_frame"]),
                    multimask_output=bool(model._use_multimask(True, pts)),
                    point_coords_model=mgv.n32(pts["point_coords"])[0].tolist(),
                    point_labels=pts["point_labels"][0].tolist(),
                    prev_sam_mask_logits=tc["prev_sam_mask_logits"] is not None,
                    object_score_logit=round(float(out["object_score_logits"]), 4),
                )
            meta["script"].append(info)
    fill_warnings = [w for w in caught if "Skipping the post-processing" in str(w.message)]
    meta["hole_filling"] = {
        "fill_hole_area": model.fill_hole_area, "skipped_on_cpu": bool(fill_warnings),
        "warnings": len(fill_warnings),
        "other_warnings": sorted({str(w.message).splitlines()[0] for w in caught if w not in fill_warnings}),
    }
    meta["memory_attention"] = {"calls": rec.memory_attention_calls,
                                "calls_with_all_bf16_memory_cast_to_float32": rec.bf16_memory_calls}
    meta["preflight_memory_encoder_calls"] = [
        dict(r, step=script[r["step"]]["name"]) for r in rec.preflight_encodes]
    expected = np.zeros((T, len(OBJ_IDS)), np.uint8)
    expected[:, :2], expected[PAUSE:, 2] = 1, 1
    if not np.array_equal(has_output, expected):
        raise RuntimeError("unexpected set of (frame, object) outputs")
    arrays["frame_idx"] = np.arange(T, dtype=np.int64)
    arrays["obj_ids"] = np.array(OBJ_IDS, dtype=np.int64)
    arrays["low_res_masks"] = lows
    arrays["object_score_logits"] = scores
    arrays["has_output"] = has_output
    arrays["prompted"] = prompted
    mgv._store_selection(rec, arrays)


def stats(arrays: dict) -> dict:
    lows, scores, has = arrays["low_res_masks"], arrays["object_score_logits"], arrays["has_output"].astype(bool)
    out = {}
    for k, obj_id in enumerate(OBJ_IDS):
        rows = has[:, k]
        vals = lows[rows, k]
        areas = (vals > 0).sum(axis=(1, 2))
        out[str(obj_id)] = {
            "frames": int(rows.sum()),
            "score_positive": int((scores[rows, k] > 0).sum()),
            "min_abs_score": round(float(np.abs(scores[rows, k]).min()), 4),
            "median_abs_logit": round(float(np.median(np.abs(vals))), 4),
            "frac_abs_logit_below_1e-3": round(float((np.abs(vals) < 1e-3).mean()), 5),
            "area_min_max": [int(areas.min()), int(areas.max())],
        }
    return out


def generate(names: list[str], out_dir: Path) -> dict:
    frames, shape_masks, fsha = load_frames()
    all_meta = {}
    for name in names:
        model = mgv.build_predictor(name)
        arrays: dict[str, np.ndarray] = {}
        meta: dict = {
            "script_file": "tests/golden/make_golden_stream.py",
            "config": name,
            "config_file": mg.CONFIGS[name].config_file,
            "hydra_overrides": mgv.config_overrides(name),
            "build": "as make_golden_video.py: build_sam2(config_file, ckpt_path=None, device='cpu', "
                     "mode='eval', hydra_overrides_extra=hydra_overrides, apply_postprocessing=False) "
                     "-> SAM2VideoPredictor, seeded_state_dict(seed=0)",
            "weights_sha256": rw.state_dict_sha256(model.state_dict()),
            "versions": mg.versions(),
            "settings": mgv.predictor_settings(model),
            "frames": {"source": "video/frames.npz frames[:%d]" % T, "num_frames": T,
                       "sha256_first_%d" % T: fsha, "size": [S, S]},
            "objects": {"1": "click on frame 0 (ellipse centre)", "2": "click on frame 0 (square centre)",
                        "3": "box on frame %d (bbox of object 1's visible part), added after tracking "
                             "reached frame %d" % (PAUSE, PAUSE)},
            "stream": ["track(f0)", "add_points(1, p0 points)", "add_points(2, p1 points)",
                       "track(f1..f18)", "add_box(3, p2 box)", "track(f19..f39)"],
            "layout": "low_res_masks [T,3,l,l], object_score_logits [T,3]: the official result of each "
                      "frame after its last call, objects in obj_ids order; has_output [T,3] (object 3 "
                      "exists from frame %d; elsewhere -1024); prompted [T,3]: conditioning frames" % PAUSE,
        }
        stage_cfg = json.loads((GOLDEN_DIR / name / "config.json").read_text())
        if stage_cfg["weights_sha256"] != meta["weights_sha256"]:
            raise RuntimeError(f"{name}: weights differ from the stage fixtures")
        with torch.inference_mode():
            run_session(model, frames, shape_masks, arrays, meta)
        meta["stats"] = stats(arrays)
        mg.save_npz(out_dir / f"{name}.npz", arrays, meta)
        all_meta[name] = meta
    return all_meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="*", default=list(mgv.VIDEO_CONFIGS), choices=mgv.VIDEO_CONFIGS)
    parser.add_argument("--out", type=Path, default=STREAM_DIR)
    parser.add_argument("--check", action="store_true", help="regenerate into a temp folder and compare bytes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(mg.SEED)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(args.configs, Path(tmp))
            for path in sorted(Path(tmp).iterdir()):
                ref = args.out / path.name
                same = ref.exists() and filecmp.cmp(path, ref, shallow=False)
                print(f"stream/{path.name}: {'identical' if same else 'DIFFERENT'}")
        return
    for name, meta in generate(args.configs, args.out).items():
        print(f"== {name}: hole filling {meta['hole_filling']}, memory attention {meta['memory_attention']}")
        for info in meta["script"]:
            keep = {k: v for k, v in info.items() if k not in ("point_coords_model",)}
            print(json.dumps(keep))
        print(json.dumps(meta["stats"]))
    for path in sorted(args.out.iterdir()):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
