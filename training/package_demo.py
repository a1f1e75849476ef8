"""Put the trained demo model and its clip into the package (runtime/demo_model/), for `streamsam demo`.

    python -m training.package_demo --checkpoint training/runs/demo/model.pt
    python -m training.evaluate --graphs runtime/demo_model --out runtime/demo_model/eval.json

Writes, in --out:
    image_encoder.onnx ... memory_encoder.onnx, manifest.json   the graphs, weights stored in float16
                                                                (computed in float32; half the size)
    recipe.json        how the weights were made (training/train.py's record of the run)
    clip.mp4           a held-out generated video (H.264), the demo's input
    clip.json          its seed, settings, the click on each object and where the true masks are
    clip_masks.npz     the true masks, bit-packed: the demo reports its IoU against them

The clip comes from its own seed stream (3, ...), which neither training (0), validation (2) nor
evaluation (1) draws. Evaluation then runs on these very graphs, so the figures describe what ships.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from .demo_config import DEMO_CONFIG, get_training_config
from .prompts import center_clicks
from .videos import VideoSettings, generate_video

DEMO_STREAM = 3
CLIP_SETTINGS = VideoSettings(height=288, width=384, num_frames=72, min_objects=2, max_objects=3)
MIN_CLICK_AREA = 0.01  # of the frame: objects the demo clicks on frame 0
FPS = 12  # slow enough to follow the masks by eye


def choose_clip(settings: VideoSettings = CLIP_SETTINGS, max_attempts: int = 200):
    """The first video of the demo stream with two or more objects clearly visible on frame 0 that
    later pass behind something (the memory bank's job)."""
    for attempt in range(max_attempts):
        seed = (DEMO_STREAM, 0, attempt)
        video = generate_video(seed, settings)
        area = video.masks[0].reshape(video.num_objects, -1).mean(1)
        objects = [int(k) for k in np.flatnonzero(area >= MIN_CLICK_AREA)]
        if len(objects) < 2:
            continue
        visible = video.masks[:, objects].reshape(video.num_frames, len(objects), -1).mean(2)
        occluded = (visible < 0.5 * visible[0]).any(0)  # shrinks to under half its first-frame area
        if occluded.any():
            return seed, video, objects
    raise RuntimeError(f"choose_clip | no clip with 2+ objects and an occlusion in {max_attempts} attempts")


def write_clip(out: Path) -> dict:
    from streamsam.writers import VideoWriter

    seed, video, objects = choose_clip()
    writer = VideoWriter(out / "clip.mp4", fps=FPS)
    for frame in video.frames:
        writer.write(frame)
    writer.close()
    masks = video.masks[:, objects]
    np.savez_compressed(out / "clip_masks.npz", packed=np.packbits(masks, axis=-1), shape=np.array(masks.shape))
    points, _ = center_clicks(masks[0])
    clip = {
        "video": "clip.mp4",
        "masks": "clip_masks.npz",
        "seed": list(seed),
        "settings": json.loads(json.dumps(dataclasses.asdict(CLIP_SETTINGS))),
        "fps": FPS,
        "clicks": [{"obj_id": i + 1, "frame": 0, "point": [float(x), float(y)]} for i, (x, y) in enumerate(points[:, 0])],
    }
    (out / "clip.json").write_text(json.dumps(clip, indent=2) + "\n")
    return clip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.package_demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="model.pt of a training run (its recipe.json beside it)")
    p.add_argument("--config", help="the checkpoint's config (default: the one its recipe.json names, else demo)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "runtime" / "demo_model")
    args = p.parse_args(argv)

    from streamsam.export.checkpoint import load_checkpoint
    from streamsam.export.onnx_export import ExportOptions, export_model

    recipe_path = args.checkpoint.parent / "recipe.json"
    made = json.loads(recipe_path.read_text()) if recipe_path.is_file() else None
    config = get_training_config(args.config or (made or {}).get("config", {}).get("name", DEMO_CONFIG.name))
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_checkpoint(args.checkpoint, config=config, image_size=config.image_size)
    export_model(model, args.out, ExportOptions(weights="float16"))
    if made is not None:
        # The run's record, plus what was shipped: the run may have trained at another input size.
        made["packaged"] = {"checkpoint": args.checkpoint.name, "config": config.name, "image_size": config.image_size,
                            "command": "python -m training.package_demo " + " ".join(argv if argv is not None else sys.argv[1:])}
        (args.out / "recipe.json").write_text(json.dumps(made, indent=2) + "\n")
    clip = write_clip(args.out)
    print(f"wrote {args.out}: graphs, recipe.json, a {CLIP_SETTINGS.num_frames}-frame clip with {len(clip['clicks'])} objects")


if __name__ == "__main__":
    main()
