"""The official SAM2VideoPredictor on a GPU, timed as benchmarks/gpu_check.py times ours.

    python3 benchmarks/gpu_official.py --config sam2.1_hiera_tiny --device cuda --jobs JOBS.json

JOBS.json: [{"image_size", "weights", "frames_dir", "prompts", "frames", "autocast": "bf16"|"none",
"out"}, ...], run in one process (torch imported once, one model per size and weights) and each
job's result written to its "out" (or {"error": ...} there, and the next job runs).

benchmarks/official_side.py's helpers (config, overrides, strict weights, prompts, the bf16 memory
cast) on `device`; imports only the standard library, numpy, torch and sam2, as official_side.py.
`--autocast bf16` runs as sam2's own benchmark script (sam2/benchmark.py): the whole propagation
under torch.autocast("cuda", bfloat16), TF32 matmuls and convolutions allowed; `none` is plain FP32
(TF32 left at torch's defaults). Per frame: the time from resuming propagate_in_video's generator
to the frame's masks on the host ((video_res_masks > 0).cpu(): what ours returns), the device
synchronized at both ends; per stage: the four SAM2Base methods (official_side.STAGE_METHODS),
synchronized around each call. Hole filling (fill_hole_area=8) needs sam2's CUDA extension
(sam2._C), which the carried wheel does not hold: sam2 warns and skips it, and ours runs with
fill_hole_area=0 for this comparison.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import official_side as official  # noqa: E402  (a script's sibling, not a package import: streamsam may be absent)

DEFAULT_CUDNN_TF32 = torch.backends.cudnn.allow_tf32  # torch's defaults, restored for the plain FP32 jobs


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def wrap_stages(model, device: str, sums: dict[str, float]) -> None:
    """Synchronized timers around the official stage methods (instance attributes: the official
    code calls self.<method>)."""
    for key, name in official.STAGE_METHODS.items():
        original = getattr(model, name)
        sums[key] = 0.0

        def timed(*args, _original=original, _key=key, **kwargs):
            synchronize(device)
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                synchronize(device)
                sums[_key] += time.perf_counter() - start

        setattr(model, name, timed)


def take(sums: dict[str, float]) -> dict[str, float]:
    out = {k: round(v * 1e3, 3) for k, v in sums.items()}
    for k in sums:
        sums[k] = 0.0
    return out


MODELS: dict = {}


def build(config: str, image_size: int, weights: Path, device: str):
    """The predictor as users build it (build_sam2_video_predictor), weights loaded strictly,
    stage timers on; one per (size, weights) for all the jobs."""
    key = (image_size, str(weights))
    if key not in MODELS:
        from sam2.build_sam import build_sam2_video_predictor

        MODELS.clear()  # one size at a time on the device
        model = build_sam2_video_predictor(official.config_file(config), ckpt_path=None, device=device,
                                           mode="eval", hydra_overrides_extra=official.size_overrides(image_size))
        official.load_weights(model, weights)
        model = model.to(device).eval()
        sums: dict[str, float] = {}
        wrap_stages(model, device, sums)
        MODELS[key] = (model, sums)
    return MODELS[key]


def run(args) -> dict:
    prompts = official.read_prompts(args.prompts)
    model, sums = build(args.config, args.image_size, args.weights, args.device)
    bf16 = args.autocast == "bf16"  # as sam2/benchmark.py: TF32 allowed, bfloat16 autocast around everything
    torch.backends.cuda.matmul.allow_tf32 = bf16
    torch.backends.cudnn.allow_tf32 = bf16 or DEFAULT_CUDNN_TF32
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    counter = {"bf16_memory_casts": 0}
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    hole_filling_warnings = 0
    with torch.inference_mode(), amp, official.float32_memory(model, counter), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = model.init_state(video_path=str(args.frames_dir))
        take(sums)
        prompt_ms = []
        for obj in prompts["objects"]:
            synchronize(args.device)
            start = time.perf_counter()
            model.add_new_points_or_box(state, frame_idx=prompts["frame"], obj_id=obj["obj_id"],
                                        points=np.asarray(obj["points"], np.float32), labels=np.asarray(obj["labels"], np.int32))
            synchronize(args.device)
            prompt_ms.append(round((time.perf_counter() - start) * 1e3, 3))
        take(sums)
        generator = model.propagate_in_video(state, start_frame_idx=prompts["frame"], max_frame_num_to_track=args.frames - 1)
        records = []
        while True:
            synchronize(args.device)
            start = time.perf_counter()
            item = next(generator, None)
            if item is None:
                break
            frame_idx, obj_ids, masks = item
            host = (masks > 0.0).cpu().numpy()
            ms = (time.perf_counter() - start) * 1e3
            records.append({"index": int(frame_idx), "ms": round(ms, 3), "stages_ms": take(sums),
                            "objects": len(obj_ids), "mask_pixels": int(host.sum())})
        hole_filling_warnings = sum("_C" in str(w.message) for w in caught)
    props = torch.cuda.get_device_properties(0) if args.device.startswith("cuda") else None
    return {
        "peer": f"sam2 {official.package_version('sam2')} SAM2VideoPredictor", "config": args.config,
        "image_size": args.image_size, "device": args.device, "autocast": args.autocast,
        "gpu": props.name if props else None, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "objects": len(prompts["objects"]), "prompt_ms": prompt_ms, "frames": records,
        "bf16_memory_casts": counter["bf16_memory_casts"], "hole_filling_skipped_warnings": hole_filling_warnings,
        "max_memory_allocated_mb": round(torch.cuda.max_memory_allocated() / 1e6, 1) if props else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--jobs", type=Path, required=True)
    args = p.parse_args(argv)
    failed = 0
    for job in json.loads(args.jobs.read_text()):
        one = argparse.Namespace(config=args.config, device=args.device, image_size=int(job["image_size"]), weights=Path(job["weights"]),
                                 frames_dir=Path(job["frames_dir"]), prompts=Path(job["prompts"]), frames=int(job["frames"]),
                                 autocast=job["autocast"])
        began = time.perf_counter()
        try:
            result = run(one)
        except Exception as err:  # noqa: BLE001 - written for this job; the next job runs
            import traceback

            failed += 1
            result = {"error": f"{type(err).__name__}: {err}\n{traceback.format_exc()[-2000:]}"}
        result["job_s"] = round(time.perf_counter() - began, 2)
        Path(job["out"]).write_text(json.dumps(result, indent=1) + "\n")
        print(f"gpu_official: {job['image_size']} x{len(official.read_prompts(one.prompts)['objects'])} {job['autocast']}: "
              f"{'ERROR' if 'error' in result else 'done'} in {result['job_s']} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
