"""Calibrate a trained checkpoint's object score: shift the score head's output bias to the value
with the best J&F on the tuning split (held-out videos 30 and on, never in the reported figures).

    python -m training.calibrate_score --checkpoint training/runs/a2/model.pt --config demo_384 \
        --shifts 1,0,-0.5,-1 --out training/runs/a2_cal

Why: an object scored below 0 is called absent (its mask is emptied and its memory says "not
here"), and where a training run leaves that threshold swings from run to run (training/README.md,
"Status"). Shifting the bias by d is moving the threshold to -d; it stays inside the weights, so the
exported graphs, the runtime and the official code need nothing new.

Writes in --out: model.pt (the chosen shift applied, float32), recipe.json (the checkpoint's run
record plus the sweep, so package_demo keeps the history) and calibration.json (every shift's J&F).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from .evaluate import EVAL_SETTINGS, PROMPTS, TUNING_FIRST_VIDEO, evaluate_graphs, export_checkpoint
from .videos import VideoSettings


def score_bias_key(state: dict[str, torch.Tensor]) -> str:
    """The state-dict key of the object-score head's output bias (an MLP's last layer, or one Linear)."""
    prefix = "sam_mask_decoder.pred_obj_score_head."
    layers = prefix + "layers."
    indices = sorted(int(k[len(layers):].split(".")[0]) for k in state if k.startswith(layers) and k.endswith(".bias"))
    key = f"{layers}{indices[-1]}.bias" if indices else f"{prefix}bias"
    if key not in state:
        raise KeyError(f"score_bias_key | received a state dict without {prefix}*; expected a SAM 2 model with an object-score head")
    return key


def shifted(state: dict[str, torch.Tensor], shift: float) -> dict[str, torch.Tensor]:
    """A copy of `state` whose object scores are all `shift` higher (the threshold moves to -shift)."""
    key = score_bias_key(state)
    out = dict(state)
    out[key] = state[key] + shift
    return out


def sweep_shifts(state: dict[str, torch.Tensor], config, shifts: list[float], videos: int, first_video: int = TUNING_FIRST_VIDEO,
                 prompts: tuple[str, ...] = ("click", "box"), settings: VideoSettings = EVAL_SETTINGS) -> list[dict[str, float]]:
    """J&F (memory on) of the model with each shift, exported and run through the runtime as shipped."""
    sweep = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, shift in enumerate(shifts):
            path = Path(tmp) / f"shift_{i}.pt"
            torch.save({"model": shifted(state, shift)}, path)
            graphs = export_checkpoint(path, config, Path(tmp) / f"graphs_{i}", progress=None)
            summaries = evaluate_graphs(graphs, videos, prompts, ("on",), settings=settings, progress=None, first_video=first_video)
            row = {"shift": shift, "j_and_f": float(np.mean([s.j_and_f for s in summaries]))}
            for s in summaries:
                row.update({f"{s.prompt}_j_and_f": s.j_and_f, f"{s.prompt}_absent_empty": s.absent_correct,
                            f"{s.prompt}_present_empty": s.present_empty})
            sweep.append(row)
            print(" ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return sweep


def main(argv: list[str] | None = None) -> float:
    """Returns the chosen shift."""
    p = argparse.ArgumentParser(prog="python -m training.calibrate_score", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help='a {"model": state_dict} file (its recipe.json beside it)')
    p.add_argument("--config", default="demo", help="the config to evaluate it as (default demo; the bundle ships demo_384)")
    p.add_argument("--shifts", default="1,0,-0.5,-1", help="comma-separated bias shifts to try (0: the checkpoint as it is)")
    p.add_argument("--videos", type=int, default=10, help="tuning videos, from index --first-video")
    p.add_argument("--first-video", type=int, default=TUNING_FIRST_VIDEO)
    p.add_argument("--prompts", default="click,box", help=f"comma-separated, of {PROMPTS}: the score is their mean J&F (memory on)")
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    try:
        shifts = [float(x) for x in args.shifts.split(",") if x.strip()]
    except ValueError:
        p.error(f"received --shifts {args.shifts!r}; expected comma-separated numbers such as 1,0,-0.5,-1")
    prompts = tuple(x for x in args.prompts.split(",") if x)
    if not shifts or any(x not in PROMPTS for x in prompts) or not prompts or args.videos < 1 or args.first_video < 0:
        p.error(f"received shifts {shifts}, prompts {prompts}, videos {args.videos}, first video {args.first_video}; expected at "
                f"least one shift, prompts of {PROMPTS}, videos >= 1 and first video >= 0")

    from .demo_config import get_training_config

    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    sweep = sweep_shifts(state, get_training_config(args.config), shifts, args.videos, args.first_video, prompts)
    best = max(sweep, key=lambda row: row["j_and_f"])
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save({"model": shifted(state, best["shift"])}, args.out / "model.pt")
    record = {"checkpoint": str(args.checkpoint), "config": args.config, "score_bias": score_bias_key(state),
              "tuning_videos": f"evaluation videos {args.first_video}..{args.first_video + args.videos - 1}",
              "prompts": list(prompts), "sweep": sweep, "chosen_shift": best["shift"],
              "command": "python -m training.calibrate_score " + " ".join(argv if argv is not None else sys.argv[1:])}
    (args.out / "calibration.json").write_text(json.dumps(record, indent=2) + "\n")
    recipe_path = args.checkpoint.parent / "recipe.json"
    made = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
    made["object_score_calibration"] = record
    (args.out / "recipe.json").write_text(json.dumps(made, indent=2) + "\n")
    print(f"chose shift {best['shift']} (mean J&F {best['j_and_f']:.3f} on the tuning videos) -> {args.out / 'model.pt'}")
    return best["shift"]


if __name__ == "__main__":
    main()
