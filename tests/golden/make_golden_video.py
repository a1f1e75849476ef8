"""Generate the video-level golden fixtures of streamsam from the OFFICIAL ``SAM2VideoPredictor``.

Run (from the repository root, in the official venv; see make_golden.py for its setup)::

    /work/venv-official/bin/python tests/golden/make_golden_video.py            # reduced + tiny
    /work/venv-official/bin/python tests/golden/make_golden_video.py --configs reduced
    /work/venv-official/bin/python tests/golden/make_golden_video.py --check    # regenerate, compare bytes

What it does: builds the official ``SAM2VideoPredictor`` the way
``sam2.build_sam.build_sam2_video_predictor`` does (same hydra overrides, written out
explicitly, on top of the config's overrides of ``make_golden.py``), loads
``export/random_weights.py::seeded_state_dict`` strictly (the weights of the stage fixtures),
renders a seeded synthetic video (48 RGB frames of exactly 256 x 256, so the official loader
does not resize), and plays a fixed script of prompts and propagations (``SCRIPT``) through
the official predictor, recording every prompt call's output and every yielded frame.

Outputs (layout in tests/golden/README.md, section "Video sequences")::

    tests/golden/video/frames.npz      uint8 frames + the shapes' ground-truth masks
    tests/golden/video/<config>.npz    per-prompt and per-frame official outputs

Determinism: one CPU thread, seeded frames, fixed zip timestamps: ``--check`` reports
``identical`` for every file.

CPU notes (see README): the official hole filling (``fill_hole_area=8``) needs the CUDA
extension ``sam2._C``; on a CPU it warns and is skipped, so these fixtures contain no hole
filling (the generator counts how many output pixels it would have changed). Memory
attention gets its ``memory`` cast to float32 (a no-op on values: the official predictor
stores memories in bfloat16 and, on CPU without autocast, a frame whose memory has no object
pointers would otherwise fail with a bf16/float dtype error).
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # the official propagation prints progress bars

import argparse
import contextlib
import filecmp
import hashlib
import importlib.util
import json
import sys
import tempfile
import warnings
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

GOLDEN_DIR = Path(__file__).resolve().parent
VIDEO_DIR = GOLDEN_DIR / "video"


def _load_make_golden():
    """Import the stage-level generator by file path (reuses its configs and helpers)."""
    path = GOLDEN_DIR / "make_golden.py"
    spec = importlib.util.spec_from_file_location("streamsam_make_golden", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


mg = _load_make_golden()
rw = mg.rw
SEED = mg.SEED

# --------------------------------------------------------------------------------------
# Configs and predictor settings
# --------------------------------------------------------------------------------------

#: What build_sam2_video_predictor adds on top of build_sam2 (its ``hydra_overrides`` first,
#: then the postprocessing extras; the three dynamic-multimask settings and
#: binarize_mask_from_pts_for_mem_enc are already in make_golden's config overrides).
PREDICTOR_TARGET = "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor"
FILL_HOLE = "++model.fill_hole_area=8"

VIDEO_CONFIGS = ("reduced", "tiny")

#: Per-config weight perturbations applied after loading seeded_state_dict
#: (official key -> value added). Empty: the seeded weights give non-degenerate videos.
WEIGHT_PERTURBATIONS: dict[str, dict[str, float]] = {"reduced": {}, "tiny": {}}


def config_overrides(name: str) -> list[str]:
    """The full hydra override list of the video predictor for config ``name``."""
    return [PREDICTOR_TARGET] + list(mg.CONFIGS[name].overrides) + [FILL_HOLE]


def build_predictor(name: str):
    """Official SAM2VideoPredictor with the seeded weights of the stage fixtures (CPU, eval)."""
    from sam2.build_sam import build_sam2
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    cfg = mg.CONFIGS[name]
    model = build_sam2(
        cfg.config_file,
        ckpt_path=None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=config_overrides(name),
        apply_postprocessing=False,  # the same settings are in the override list, explicitly
    )
    if type(model) is not SAM2VideoPredictor:
        raise RuntimeError(f"expected SAM2VideoPredictor, got {type(model)}")
    state = rw.seeded_state_dict(model.state_dict(), seed=SEED)
    missing, unexpected = model.load_state_dict(state, strict=True)
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    with torch.no_grad():
        params = dict(model.named_parameters())
        for key, delta in WEIGHT_PERTURBATIONS[name].items():
            params[key].add_(delta)
    return model.eval()


#: Attributes of the predictor that change results (recorded in meta and the README).
SETTING_ATTRS = (
    "image_size", "num_maskmem", "max_cond_frames_in_attn", "memory_temporal_stride_for_eval",
    "max_obj_ptrs_in_encoder", "only_obj_ptrs_in_the_past_for_eval", "use_obj_ptrs_in_encoder",
    "add_tpos_enc_to_obj_ptrs", "proj_tpos_enc_in_obj_ptrs", "use_signed_tpos_enc_to_obj_ptrs",
    "directly_add_no_mem_embed", "binarize_mask_from_pts_for_mem_enc",
    "sigmoid_scale_for_mem_enc", "sigmoid_bias_for_mem_enc", "non_overlap_masks_for_mem_enc",
    "use_mask_input_as_output_without_sam", "multimask_output_in_sam", "multimask_min_pt_num",
    "multimask_max_pt_num", "multimask_output_for_tracking", "use_multimask_token_for_obj_ptr",
    "iou_prediction_use_sigmoid", "pred_obj_scores", "pred_obj_scores_mlp", "fixed_no_obj_ptr",
    "soft_no_obj_ptr", "use_mlp_for_obj_ptr_proj", "use_high_res_features_in_sam",
    # SAM2VideoPredictor
    "fill_hole_area", "non_overlap_masks", "clear_non_cond_mem_around_input",
    "add_all_frames_to_correct_as_cond",
)


def predictor_settings(model) -> dict:
    """Values of SETTING_ATTRS plus the mask decoder's dynamic-multimask settings."""
    out = {k: getattr(model, k) for k in SETTING_ATTRS}
    dec = model.sam_mask_decoder
    out["no_obj_embed_spatial"] = model.no_obj_embed_spatial is not None
    out["dynamic_multimask_via_stability"] = dec.dynamic_multimask_via_stability
    out["dynamic_multimask_stability_delta"] = dec.dynamic_multimask_stability_delta
    out["dynamic_multimask_stability_thresh"] = dec.dynamic_multimask_stability_thresh
    out["training"] = model.training
    return {k: (v if isinstance(v, (bool, int, float, str)) else repr(v)) for k, v in out.items()}


# --------------------------------------------------------------------------------------
# Synthetic video
# --------------------------------------------------------------------------------------

S = 256  # frame size = model image size (no resize anywhere)
T = 48  # frames
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


def _obj1_center(t: int) -> tuple[float, float]:
    """Ellipse (object 1): left to right."""
    return 60.0 + 2.6 * t, 118.0 + 12.0 * np.sin(2 * np.pi * t / 40)


def _obj2_center(t: int) -> tuple[float, float]:
    """Square (object 2): right to left over object 1 (occluding it around frames 14-24),
    partly out of the left edge (frames ~30-38, at most 16 px visible at 34), back in."""
    if t <= 20:
        cx = 205.0 - (85.0 / 20) * t
    elif t <= 34:
        cx = 120.0 - (130.0 / 14) * (t - 20)
    else:
        cx = -10.0 + (80.0 / 13) * (t - 34)
    return cx, 128.0 + 10.0 * np.cos(2 * np.pi * t / 48)


def make_frames() -> tuple[np.ndarray, np.ndarray]:
    """Seeded synthetic video: uint8 frames [T,S,S,3] and visible-shape masks [T,2,S,S] (bool).

    Static background: three seeded low-frequency sinusoids per channel plus a seeded 16x16
    texture tile, quantized to steps of 4. Object 1: an ellipse (38 x 30 half-axes) with a
    radial red texture; object 2: a 53 x 45 square with a blue 8-px checkerboard, drawn on top
    (object 1's mask is its visible part).
    """
    rng = rw.key_rng("video/frames", SEED)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
    bg = np.zeros((S, S, 3))
    for c in range(3):
        v = np.full((S, S), 110.0 + 20 * c)
        for _ in range(3):
            fx, fy = rng.uniform(0.5, 2.5, 2)
            phase = rng.uniform(0, 2 * np.pi)
            v += 22 * np.sin(2 * np.pi * (fx * xx + fy * yy) / S + phase)
        bg[..., c] = v
    bg += np.tile(rng.integers(-6, 7, size=(16, 16, 3)), (S // 16, S // 16, 1))
    bg = np.round(bg / 4) * 4
    frames = np.empty((T, S, S, 3), np.uint8)
    masks = np.zeros((T, 2, S, S), bool)
    for t in range(T):
        f = bg.copy()
        cx, cy = _obj1_center(t)
        r = np.sqrt(((xx - cx) / 38) ** 2 + ((yy - cy) / 30) ** 2)
        m1 = r <= 1
        ang = np.arctan2(yy - cy, xx - cx)
        tex1 = np.stack([200 + 30 * np.sin(6 * ang), 60 + 25 * np.sin(6 * ang + 1), 50 + 20 * r], -1)
        f[m1] = np.round(tex1[m1] / 4) * 4
        cx2, cy2 = _obj2_center(t)
        m2 = (np.abs(xx - cx2) <= 26) & (np.abs(yy - cy2) <= 22)
        chk = (((xx - cx2) // 8).astype(int) + ((yy - cy2) // 8).astype(int)) % 2
        tex2 = np.stack([40 + 30 * chk, 80 + 40 * chk, 210 - 30 * chk], -1)
        f[m2] = tex2[m2]
        frames[t] = np.clip(f, 0, 255).astype(np.uint8)
        masks[t, 0] = m1 & ~m2
        masks[t, 1] = m2
    return frames, masks


def normalize_frames(frames: np.ndarray) -> torch.Tensor:
    """[T,S,S,3] uint8 -> [T,3,S,S] float32 exactly as sam2.utils.misc does it for a JPEG folder.

    ``_load_img_as_tensor``: ``np.array(img) / 255.0`` in float64, stored into a float32
    tensor (one rounding); then in float32 ``images -= mean``, ``images /= std``.
    """
    x = torch.from_numpy((frames.astype(np.float64) / 255.0).astype(np.float32)).permute(0, 3, 1, 2)
    x = x.contiguous()
    x -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    x /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return x


def write_lossless_frame_folder(frames: np.ndarray, folder: Path) -> None:
    """The official loader only lists ``*.jpg``; PIL opens files by content, so PNG data
    under ``00000.jpg`` names is read back losslessly (checked against ``normalize_frames``)."""
    from PIL import Image

    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", format="PNG")


def check_pil_same_size_resize(frames: np.ndarray) -> bool:
    """PIL ``resize`` to the same size returns an unchanged copy (the loader's resize)."""
    from PIL import Image

    return all(np.array_equal(np.array(Image.fromarray(f).convert("RGB").resize((S, S))), f)
               for f in frames)


# --------------------------------------------------------------------------------------
# Script of prompts and propagations
# --------------------------------------------------------------------------------------


def _bbox(mask: np.ndarray) -> list[float]:
    """[x0, y0, x1, y1] pixel bounds (inclusive min, inclusive max) of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]


def build_script(shape_masks: np.ndarray) -> list[dict]:
    """The call sequence (see README). Coordinates are pixels of the 256 x 256 video."""
    c1_0 = [round(v) for v in _obj1_center(0)]
    c1_24 = [round(v) for v in _obj1_center(24)]
    return [
        dict(name="p0_click_obj1_f0", call="add_new_points_or_box",
             kwargs=dict(frame_idx=0, obj_id=1, points=[c1_0], labels=[1])),
        dict(name="p1_box_obj2_f5", call="add_new_points_or_box",
             kwargs=dict(frame_idx=5, obj_id=2, box=_bbox(shape_masks[5, 1]))),
        dict(name="prop1_forward", call="propagate_in_video", kwargs={}),
        # frame 20: object 1's visible part is left of the square (cx 112, square from 94)
        dict(name="p2_click_obj1_f20_pos", call="add_new_points_or_box",
             kwargs=dict(frame_idx=20, obj_id=1, points=[[84, 120]], labels=[1],
                         clear_old_points=False)),
        dict(name="p3_click_obj1_f20_neg", call="add_new_points_or_box",
             kwargs=dict(frame_idx=20, obj_id=1, points=[[125, 130]], labels=[0],
                         clear_old_points=False)),
        dict(name="p4_mask_obj2_f30", call="add_new_mask",
             kwargs=dict(frame_idx=30, obj_id=2, mask="shape_masks[30, 1]")),
        dict(name="prop2_forward", call="propagate_in_video", kwargs={}),
        dict(name="prop2_reverse", call="propagate_in_video",
             kwargs=dict(start_frame_idx=T - 1, reverse=True)),
        dict(name="p5_click_obj1_f24_pos", call="add_new_points_or_box",
             kwargs=dict(frame_idx=24, obj_id=1, points=[c1_24], labels=[1],
                         clear_old_points=False)),
        dict(name="p6_mask_obj2_f24", call="add_new_mask",
             kwargs=dict(frame_idx=24, obj_id=2, mask="shape_masks[24, 1]")),
        dict(name="prop3_forward_25", call="propagate_in_video",
             kwargs=dict(start_frame_idx=25, max_frame_num_to_track=12)),
    ]


# --------------------------------------------------------------------------------------
# Recording hooks
# --------------------------------------------------------------------------------------

MAX_MEM = 8  # padded width of selection/mem_* (at most 1 cond frame per object + 6 non-cond)


class Recorder:
    """Hooks on the official predictor: memory selection per memory-attention call, the
    track_step arguments, and the bf16 -> float32 cast of memory attention's ``memory``."""

    def __init__(self, model, state):
        self.model = model
        self.state = state
        self.phase = -1
        self.selections: list[dict] = []
        self.track_calls: list[dict] = []
        self.preflight_encodes: list[dict] = []
        self.bf16_memory_calls = 0
        self.memory_attention_calls = 0
        self._ma = None
        self._tpos = None

    @contextlib.contextmanager
    def active(self):
        import sam2.modeling.sam2_base as sam2_base

        model = self.model
        orig_pe = sam2_base.get_1d_sine_pe
        orig_prepare = model._prepare_memory_conditioned_features
        orig_track = model.track_step
        orig_mem_enc = model._run_memory_encoder

        def pe_wrapper(pos_inds, dim, temperature=10000):
            self._tpos = pos_inds.detach().clone()
            return orig_pe(pos_inds, dim, temperature)

        def ma_hook(_module, args, kwargs):
            memory = kwargs["memory"]
            self.memory_attention_calls += 1
            if memory.dtype != torch.float32:
                # all-bfloat16 memory (no object pointers): on CPU without autocast the
                # official code fails here; bf16 -> float32 is exact.
                self.bf16_memory_calls += 1
                kwargs = dict(kwargs, memory=memory.float())
            self._ma = {k: kwargs[k] for k in ("memory", "memory_pos", "num_obj_ptr_tokens")}
            return args, kwargs

        def prepare_wrapper(**kwargs):
            self._ma, self._tpos = None, None
            out = orig_prepare(**kwargs)
            self.selections.append(self._identify(kwargs))
            return out

        def track_wrapper(**kwargs):
            self.track_calls.append(kwargs)
            return orig_track(**kwargs)

        def mem_enc_wrapper(**kwargs):  # only called by propagate_in_video_preflight
            obj = [k for k, d in self.state["temp_output_dict_per_obj"].items()
                   for key in ("cond_frame_outputs", "non_cond_frame_outputs")
                   if d[key].get(kwargs["frame_idx"]) is not None
                   and d[key][kwargs["frame_idx"]]["maskmem_features"] is None
                   and torch.equal(d[key][kwargs["frame_idx"]]["object_score_logits"],
                                   kwargs["object_score_logits"])]
            self.preflight_encodes.append(
                {"step": self.phase, "frame_idx": kwargs["frame_idx"],
                 "obj_idx": obj[0] if len(obj) == 1 else None,
                 "is_mask_from_pts": bool(kwargs["is_mask_from_pts"])})
            return orig_mem_enc(**kwargs)

        handle = model.memory_attention.register_forward_pre_hook(ma_hook, with_kwargs=True)
        sam2_base.get_1d_sine_pe = pe_wrapper
        model._prepare_memory_conditioned_features = prepare_wrapper
        model.track_step = track_wrapper
        model._run_memory_encoder = mem_enc_wrapper
        try:
            yield self
        finally:
            handle.remove()
            sam2_base.get_1d_sine_pe = orig_pe
            del model._prepare_memory_conditioned_features
            del model.track_step
            del model._run_memory_encoder

    def _obj_idx(self, output_dict) -> int:
        for idx, d in self.state["output_dict_per_obj"].items():
            if d is output_dict:
                return idx
        raise RuntimeError("output_dict of unknown object")

    def _identify(self, kw) -> dict:
        """Which frames' memories / pointers went into memory attention (by equality)."""
        model = self.model
        frame_idx, reverse = kw["frame_idx"], bool(kw["track_in_reverse"])
        out_dict = kw["output_dict"]
        rec = {"phase": self.phase, "frame_idx": frame_idx, "obj_idx": self._obj_idx(out_dict),
               "is_init_cond_frame": bool(kw["is_init_cond_frame"]), "reverse": reverse,
               "mem_frames": [], "mem_tpos_index": [], "ptr_frames": [], "ptr_tpos": []}
        if self._ma is None:  # initial conditioning frame: directly_add_no_mem_embed
            if not kw["is_init_cond_frame"]:
                raise RuntimeError("memory attention skipped on a non-initial frame")
            return rec
        hw = kw["feat_sizes"][-1][0] * kw["feat_sizes"][-1][1]
        num_maskmem, mem_dim = model.num_maskmem, model.mem_dim
        memory, memory_pos = self._ma["memory"], self._ma["memory_pos"]
        n_ptr_tokens = int(self._ma["num_obj_ptr_tokens"])
        pos_seq = mg.to_seq(self.state["constants"]["maskmem_pos_enc"][-1])
        tpos_table = model.maskmem_tpos_enc.detach().reshape(num_maskmem, mem_dim)
        cond = out_dict["cond_frame_outputs"]
        non_cond = out_dict["non_cond_frame_outputs"]
        sign = -1 if reverse else 1
        for i in range((memory.shape[0] - n_ptr_tokens) // hw):
            chunk = memory[i * hw:(i + 1) * hw]
            tpos = (memory_pos[i * hw:(i + 1) * hw] - pos_seq).mean(dim=(0, 1))
            tidx = int(torch.argmin((tpos_table - tpos).abs().sum(-1)))
            t_pos = num_maskmem - 1 - tidx
            if t_pos == 0:
                cands = [f for f, o in cond.items()
                         if torch.equal(mg.to_seq(o["maskmem_features"].float()), chunk)]
            else:
                f = frame_idx - sign * (num_maskmem - t_pos)
                o = non_cond.get(f)
                ok = o is not None and torch.equal(mg.to_seq(o["maskmem_features"].float()), chunk)
                cands = [f] if ok else []
            if len(cands) != 1:
                raise RuntimeError(f"frame {frame_idx}: memory {i} not identified ({cands})")
            rec["mem_frames"].append(int(cands[0]))
            rec["mem_tpos_index"].append(tidx)
        if n_ptr_tokens:
            t_diff_max = min(kw["num_frames"], model.max_obj_ptrs_in_encoder) - 1
            pos = torch.round(self._tpos * t_diff_max).to(torch.int64).tolist()
            split = model.hidden_dim // mem_dim
            tokens = memory[memory.shape[0] - n_ptr_tokens:]
            ptrs = tokens.reshape(-1, split, 1, mem_dim).permute(0, 2, 1, 3).reshape(-1, 1, model.hidden_dim)
            for p, ptr in zip(pos, ptrs):
                f = frame_idx - sign * p
                o = cond.get(f) if f in cond else non_cond.get(f)
                if o is None or not torch.equal(o["obj_ptr"], ptr):
                    raise RuntimeError(f"frame {frame_idx}: pointer at tpos {p} not identified")
                rec["ptr_frames"].append(int(f))
                rec["ptr_tpos"].append(int(p))
        return rec


# --------------------------------------------------------------------------------------
# CUDA hole filling, emulated (for the report only)
# --------------------------------------------------------------------------------------


def hole_fill_changes(mask: np.ndarray, max_area: int) -> int:
    """Pixels that sam2.utils.misc.fill_holes_in_mask_scores would set to 0.1 on CUDA:
    8-connected components of ``mask <= 0`` with area <= max_area (border ones included)."""
    bg = mask <= 0
    h, w = bg.shape
    seen = np.zeros_like(bg)
    changed = 0
    for y0, x0 in zip(*np.nonzero(bg)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        queue, comp = deque([(y0, x0)]), 0
        while queue:
            y, x = queue.popleft()
            comp += 1
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and bg[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        queue.append((yy, xx))
        if comp <= max_area:
            changed += comp
    return changed


# --------------------------------------------------------------------------------------
# Session
# --------------------------------------------------------------------------------------


def n32(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().copy()


def _lookup_out(state, obj_idx: int, frame_idx: int, storage_key: str | None = None):
    """An object's output on a frame, looked up like _consolidate_temp_output_across_obj."""
    out = None
    if storage_key is not None:
        out = state["temp_output_dict_per_obj"][obj_idx][storage_key].get(frame_idx)
    if out is None:
        out = state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"].get(frame_idx)
    if out is None:
        out = state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"].get(frame_idx)
    return out


def run_session(model, frames: np.ndarray, shape_masks: np.ndarray, arrays: dict, meta: dict):
    """Play SCRIPT through the official predictor; fill ``arrays`` and ``meta``."""
    from sam2.modeling.sam2_base import NO_OBJ_SCORE

    low = model.image_size // 4
    images = normalize_frames(frames)
    with tempfile.TemporaryDirectory() as tmp:
        write_lossless_frame_folder(frames, Path(tmp))
        state = model.init_state(video_path=tmp)
    loader_equal = bool(torch.equal(state["images"], images))
    if not loader_equal:
        raise RuntimeError("official loader frames != normalize_frames(frames)")
    state["images"] = images  # identical values (checked); the formula is documented
    if (state["video_height"], state["video_width"], state["num_frames"]) != (S, S, T):
        raise RuntimeError("unexpected video size")
    meta["frames_input"] = {
        "method": "init_state on a temporary folder holding the frames as lossless PNG data "
                  "under 00000.jpg..00047.jpg names (official loader, PIL opens by content); "
                  "state['images'] then checked torch.equal to normalize_frames(frames) and "
                  "replaced by it (same values)",
        "official_loader_equals_normalize_frames": loader_equal,
        "pil_same_size_resize_is_identity": check_pil_same_size_resize(frames),
        "video_height": S, "video_width": S, "num_frames": T,
    }

    rec = Recorder(model, state)
    script = build_script(shape_masks)
    meta["script"] = []
    prompt_outputs: dict[str, np.ndarray] = {}  # name -> low-res [n_obj,1,l,l] (for prev logits)
    last_prop: dict[tuple[int, int], tuple[str, np.ndarray]] = {}  # (obj_idx, frame) -> (name, low)
    hole_fill = {}
    with warnings.catch_warnings(record=True) as caught, rec.active():
        warnings.simplefilter("always")
        for step_idx, step in enumerate(script):
            rec.phase = step_idx
            name, kwargs = step["name"], dict(step["kwargs"])
            info = {"name": name, "call": step["call"], "kwargs": dict(kwargs)}
            if step["call"] == "propagate_in_video":
                _record_propagation(model, state, rec, name, kwargs, arrays, info, last_prop, low)
                prev = [m for m in meta["script"] if m["call"] == "propagate_in_video"
                        and m["num_frames"] == info["num_frames"] and "same_as" not in m]
                for p in prev:  # a propagation identical to an earlier one: store a reference
                    keys = ("frame_idx", "low_res_masks", "object_score_logits", "obj_ptr",
                            "reused_cond_output")
                    if all(np.array_equal(arrays[f"{name}/{k}"], arrays[f"{p['name']}/{k}"])
                           for k in keys):
                        for k in keys:
                            del arrays[f"{name}/{k}"]
                        info["same_as"] = p["name"]
                        break
            else:
                if kwargs.get("mask") is not None and isinstance(kwargs["mask"], str):
                    t_mask = int(kwargs["mask"].split("[")[1].split(",")[0])
                    kwargs["mask"] = shape_masks[t_mask, 1]
                    arrays[f"{name}/in/mask"] = shape_masks[t_mask, 1].copy()
                rec.track_calls.clear()
                fn = getattr(model, step["call"])
                frame_idx, obj_ids, video_res = fn(state, **kwargs)
                _record_prompt(model, state, rec, name, frame_idx, obj_ids, video_res, arrays,
                               info, prompt_outputs, last_prop, NO_OBJ_SCORE, low)
            meta["script"].append(info)
    fill_warnings = [w for w in caught if "Skipping the post-processing" in str(w.message)]
    meta["hole_filling"] = {
        "fill_hole_area": model.fill_hole_area,
        "skipped_on_cpu": bool(fill_warnings),
        "warnings": len(fill_warnings),
        "warning_first_line": str(fill_warnings[0].message).splitlines()[0] if fill_warnings else None,
        "other_warnings": sorted({str(w.message).splitlines()[0] for w in caught
                                  if w not in fill_warnings}),
    }
    meta["memory_attention"] = {
        "calls": rec.memory_attention_calls,
        "calls_with_all_bf16_memory_cast_to_float32": rec.bf16_memory_calls,
    }
    meta["preflight_memory_encoder_calls"] = [
        dict(r, step=script[r["step"]]["name"]) for r in rec.preflight_encodes]
    _store_selection(rec, arrays)
    return state


def _record_prompt(model, state, rec, name, frame_idx, obj_ids, video_res, arrays, info,
                   prompt_outputs, last_prop, no_obj_score, low):
    """One add_new_points_or_box / add_new_mask call: consolidated output and its inputs."""
    if len(rec.track_calls) != 1:
        raise RuntimeError(f"{name}: expected one track_step call, got {len(rec.track_calls)}")
    tc = rec.track_calls[0]
    obj_idx = state["obj_id_to_idx"][info["kwargs"]["obj_id"]]
    is_init = bool(tc["is_init_cond_frame"])
    storage_key = "cond_frame_outputs" if (is_init or model.add_all_frames_to_correct_as_cond) \
        else "non_cond_frame_outputs"
    n_obj = len(obj_ids)
    lows = torch.full((n_obj, 1, low, low), no_obj_score, dtype=torch.float32)
    present = []
    for k in range(n_obj):
        out = _lookup_out(state, k, frame_idx, storage_key)
        if out is not None:
            lows[k] = out["pred_masks"][0]
        present.append(out is not None)
    ref = F.interpolate(lows, size=(S, S), mode="bilinear", align_corners=False)
    if not torch.equal(ref, video_res):
        raise RuntimeError(f"{name}: video_res_masks != bilinear(consolidated low-res)")
    cur = state["temp_output_dict_per_obj"][obj_idx][storage_key][frame_idx]
    arrays[f"{name}/low_res_masks"] = n32(lows)
    arrays[f"{name}/object_score_logits"] = n32(cur["object_score_logits"])
    arrays[f"{name}/obj_ptr"] = n32(cur["obj_ptr"])
    pts = tc["point_inputs"]
    if pts is not None:
        arrays[f"{name}/in/point_coords"] = n32(pts["point_coords"])
        arrays[f"{name}/in/point_labels"] = pts["point_labels"].numpy().astype(np.int32)
    prev_source = None
    if tc["prev_sam_mask_logits"] is not None:
        prev = tc["prev_sam_mask_logits"]
        candidates = [(n_, a[obj_idx:obj_idx + 1]) for n_, a in prompt_outputs.items()
                      if n_.startswith("f%d:" % frame_idx)]
        if (obj_idx, frame_idx) in last_prop:
            candidates.append(last_prop[(obj_idx, frame_idx)])
        for src, a in reversed(candidates):
            if torch.equal(torch.clamp(torch.from_numpy(a), -32.0, 32.0), prev):
                prev_source = src
                break
        if prev_source is None:
            raise RuntimeError(f"{name}: prev_sam_mask_logits source not found")
    prompt_outputs[f"f{frame_idx}:{name}"] = n32(lows)
    info.update(
        frame_idx=int(frame_idx), obj_ids=[int(i) for i in obj_ids], obj_idx=obj_idx,
        is_init_cond_frame=is_init, track_in_reverse=bool(tc["track_in_reverse"]),
        storage_key=storage_key, objects_with_output=present,
        path="_use_mask_as_output" if tc["mask_inputs"] is not None else "_forward_sam_heads",
        multimask_output=(bool(model._use_multimask(is_init, pts)) if pts is not None else None),
        num_points=(int(pts["point_labels"].shape[1]) if pts is not None else 0),
        prev_sam_mask_logits_from=prev_source,
        object_score_logit=round(float(cur["object_score_logits"]), 4),
    )
    if isinstance(info["kwargs"].get("mask"), np.ndarray):
        info["kwargs"]["mask"] = f"{name}/in/mask (bool [{S},{S}])"


def _record_propagation(model, state, rec, name, kwargs, arrays, info, last_prop, low):
    """One propagate_in_video call: every yielded frame, per object."""
    rows = {"frame_idx": [], "low": [], "score": [], "ptr": [], "reused": []}
    for frame_idx, obj_ids, video_res in model.propagate_in_video(state, **kwargs):
        lows, scores, ptrs, reused = [], [], [], []
        for k in range(len(obj_ids)):
            od = state["output_dict_per_obj"][k]
            is_cond = frame_idx in od["cond_frame_outputs"]
            out = od["cond_frame_outputs" if is_cond else "non_cond_frame_outputs"][frame_idx]
            lows.append(out["pred_masks"])
            scores.append(out["object_score_logits"])
            ptrs.append(out["obj_ptr"])
            reused.append(is_cond)
        lows_t = torch.cat(lows, 0)
        ref = F.interpolate(lows_t, size=(S, S), mode="bilinear", align_corners=False)
        if not torch.equal(ref, video_res):
            raise RuntimeError(f"{name} frame {frame_idx}: video_res != bilinear(pred_masks)")
        rows["frame_idx"].append(frame_idx)
        rows["low"].append(n32(lows_t[:, 0]))
        rows["score"].append(n32(torch.cat(scores, 0)[:, 0]))
        rows["ptr"].append(n32(torch.cat(ptrs, 0)))
        rows["reused"].append(reused)
        for k in range(len(obj_ids)):
            last_prop[(k, frame_idx)] = (f"{name}/low_res_masks[{len(rows['frame_idx']) - 1}]",
                                         rows["low"][-1][k:k + 1][:, None])
        info["obj_ids"] = [int(i) for i in obj_ids]
    arrays[f"{name}/frame_idx"] = np.array(rows["frame_idx"], dtype=np.int64)
    arrays[f"{name}/low_res_masks"] = np.stack(rows["low"])
    arrays[f"{name}/object_score_logits"] = np.stack(rows["score"])
    arrays[f"{name}/obj_ptr"] = np.stack(rows["ptr"])
    arrays[f"{name}/reused_cond_output"] = np.array(rows["reused"], dtype=np.uint8)
    info.update(num_frames=len(rows["frame_idx"]), first_frame=rows["frame_idx"][0],
                last_frame=rows["frame_idx"][-1],
                cond_frames_per_obj={str(state["obj_idx_to_id"][k]): sorted(
                    state["output_dict_per_obj"][k]["cond_frame_outputs"])
                    for k in state["output_dict_per_obj"]})


def _store_selection(rec: Recorder, arrays: dict) -> None:
    """selection/*: one row per _prepare_memory_conditioned_features call, in call order."""
    sel = rec.selections
    n = len(sel)

    def pad(key, width):
        a = np.full((n, width), -1, dtype=np.int64)
        for i, r in enumerate(sel):
            if len(r[key]) > width:
                raise RuntimeError(f"selection {key} wider than {width}")
            a[i, :len(r[key])] = r[key]
        return a

    arrays["selection/step"] = np.array([r["phase"] for r in sel], dtype=np.int64)
    arrays["selection/frame_idx"] = np.array([r["frame_idx"] for r in sel], dtype=np.int64)
    arrays["selection/obj_idx"] = np.array([r["obj_idx"] for r in sel], dtype=np.int64)
    arrays["selection/is_init_cond_frame"] = np.array([r["is_init_cond_frame"] for r in sel], np.uint8)
    arrays["selection/reverse"] = np.array([r["reverse"] for r in sel], dtype=np.uint8)
    arrays["selection/mem_frames"] = pad("mem_frames", MAX_MEM)
    arrays["selection/mem_tpos_index"] = pad("mem_tpos_index", MAX_MEM)
    arrays["selection/ptr_frames"] = pad("ptr_frames", 16)
    arrays["selection/ptr_tpos"] = pad("ptr_tpos", 16)


# --------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------


def logit_stats(lows: np.ndarray, scores: np.ndarray, fill_area: int) -> dict:
    """lows [n, n_obj, l, l], scores [n, n_obj] -> degeneracy statistics."""
    present = scores > 0
    vals = lows[present]
    areas = (lows > 0).sum(axis=(2, 3))
    return {
        "object_score_positive_per_obj": present.sum(0).tolist(),
        "object_score_negative_per_obj": (~present).sum(0).tolist(),
        "min_abs_object_score": round(float(np.abs(scores).min()), 4),
        "median_abs_logit_present": round(float(np.median(np.abs(vals))), 4) if vals.size else None,
        "frac_abs_logit_below_1e-3_present": round(float((np.abs(vals) < 1e-3).mean()), 5)
        if vals.size else None,
        "frac_abs_logit_below_1e-2_present": round(float((np.abs(vals) < 1e-2).mean()), 5)
        if vals.size else None,
        "low_res_area_per_frame_obj": areas.tolist(),
        "low_res_area_min_max_present": [int(areas[present].min()), int(areas[present].max())]
        if present.any() else None,
        "frames_full_mask": int((areas == lows.shape[-1] ** 2).sum()),
        "cuda_hole_fill_changed_pixels": int(sum(
            hole_fill_changes(lows[i, k], fill_area)
            for i in range(lows.shape[0]) for k in range(lows.shape[1]))),
    }


def compute_stats(arrays: dict, meta: dict, fill_area: int) -> dict:
    stats = {}
    for info in meta["script"]:
        name = info["name"]
        if info["call"] == "propagate_in_video":
            src = info.get("same_as", name)
            stats[name] = logit_stats(arrays[f"{src}/low_res_masks"],
                                      arrays[f"{src}/object_score_logits"], fill_area)
        else:
            lows = arrays[f"{name}/low_res_masks"][:, 0]
            k = info["obj_idx"]
            stats[name] = {
                "object_score_logit": info["object_score_logit"],
                "low_res_area_prompted_obj": int((lows[k] > 0).sum()),
                "median_abs_logit_prompted_obj": round(float(np.median(np.abs(lows[k]))), 4),
                "cuda_hole_fill_changed_pixels": hole_fill_changes(lows[k], fill_area),
            }
    return stats


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def frames_sha256(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def generate(names: list[str], out_dir: Path) -> dict:
    frames, shape_masks = make_frames()
    fsha = frames_sha256(frames)
    mg.save_npz(out_dir / "frames.npz",
             {"frames": frames, "shape_masks": shape_masks},
             {"frames_sha256": fsha, "shape": list(frames.shape), "dtype": "uint8",
              "layout": "frames [T,H,W,3] RGB uint8; shape_masks [T,2,H,W] bool (visible "
                        "part of object 1 (ellipse) and object 2 (square)); both stored in "
                        "Fortran order (np.load returns the normal shapes)",
              "img_mean": IMG_MEAN, "img_std": IMG_STD, "seed": SEED},
             fortran=("frames", "shape_masks"))
    all_stats = {}
    for name in names:
        model = build_predictor(name)
        arrays: dict[str, np.ndarray] = {}
        meta: dict = {
            "config": name,
            "config_file": mg.CONFIGS[name].config_file,
            "hydra_overrides": config_overrides(name),
            "build": "sam2.build_sam.build_sam2(config_file, ckpt_path=None, device='cpu', "
                     "mode='eval', hydra_overrides_extra=hydra_overrides, "
                     "apply_postprocessing=False) -> SAM2VideoPredictor",
            "weights_sha256": rw.state_dict_sha256(model.state_dict()),
            "weight_perturbations": WEIGHT_PERTURBATIONS[name],
            "versions": mg.versions(),
            "seed": SEED,
            "settings": predictor_settings(model),
            "dims": mg.model_dims(model),
            "frames_sha256": fsha,
        }
        # unperturbed weights == the stage fixtures' weights
        stage_cfg = json.loads((GOLDEN_DIR / name / "config.json").read_text())
        if not WEIGHT_PERTURBATIONS[name] and stage_cfg["weights_sha256"] != meta["weights_sha256"]:
            raise RuntimeError(f"{name}: weights differ from the stage fixtures")
        meta["weights_equal_stage_fixtures"] = stage_cfg["weights_sha256"] == meta["weights_sha256"]
        with torch.inference_mode():
            run_session(model, frames, shape_masks, arrays, meta)
        meta["stats"] = compute_stats(arrays, meta, model.fill_hole_area)
        mg.save_npz(out_dir / f"{name}.npz", arrays, meta)
        all_stats[name] = meta
    return all_stats


def print_summary(all_meta: dict) -> None:
    for name, meta in all_meta.items():
        print(f"== {name}: hole filling {meta['hole_filling']}, memory attention "
              f"{meta['memory_attention']}")
        for info in meta["script"]:
            st = meta["stats"][info["name"]]
            st = {k: v for k, v in st.items() if k != "low_res_area_per_frame_obj"}
            extra = {k: info.get(k) for k in ("same_as", "is_init_cond_frame", "track_in_reverse",
                                              "multimask_output", "prev_sam_mask_logits_from",
                                              "path", "num_frames") if k in info}
            print(f"{info['name']}: {json.dumps(extra)} {json.dumps(st)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="*", default=list(VIDEO_CONFIGS), choices=VIDEO_CONFIGS)
    parser.add_argument("--out", type=Path, default=VIDEO_DIR)
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temp folder and compare bytes with --out")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(args.configs, Path(tmp))
            for path in sorted(Path(tmp).iterdir()):
                ref = args.out / path.name
                same = ref.exists() and filecmp.cmp(path, ref, shallow=False)
                print(f"video/{path.name}: {'identical' if same else 'DIFFERENT'}")
        return
    print_summary(generate(args.configs, args.out))
    for path in sorted(args.out.iterdir()):
        print(f"{path}: {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
