"""Generate the golden fixtures of streamsam from the OFFICIAL SAM 2 code.

Run (from the repository root)::

    /work/venv-official/bin/python tests/golden/make_golden.py            # all configs
    /work/venv-official/bin/python tests/golden/make_golden.py --configs reduced
    /work/venv-official/bin/python tests/golden/make_golden.py --dump-keys /work/scratch/golden

Official venv setup (CPU only, no CUDA extension; nothing else is needed)::

    python3.11 -m venv /work/venv-official
    /work/venv-official/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    /work/venv-official/bin/pip install numpy hydra-core iopath omegaconf tqdm pillow
    SAM2_BUILD_CUDA=0 /work/venv-official/bin/pip install --no-deps --no-build-isolation sam2==1.1.0

What it does, per config (see CONFIGS): builds the official ``SAM2Base`` with
``sam2.build_sam.build_sam2`` (hydra config + overrides, ``ckpt_path=None``, CPU, eval),
loads ``export/random_weights.py::seeded_state_dict(model.state_dict())`` strictly, feeds
seeded inputs to the official stage functions and writes
``tests/golden/<config>/<stage>.npz`` plus ``tests/golden/<config>/config.json``.
The layout of every file is documented in ``tests/golden/README.md``.

Determinism: one CPU thread, seeded inputs, and an npz writer with fixed zip timestamps,
so two runs give byte-identical files (``--check`` regenerates into a temporary folder and
compares).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import gzip
import hashlib
import importlib.util
import io
import json
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

GOLDEN_DIR = Path(__file__).resolve().parent
REPO_ROOT = GOLDEN_DIR.parents[1]
SEED = 0
B = 2  # objects per batch


def _load_random_weights():
    """Import export/random_weights.py by file path (our package is not installed here)."""
    path = REPO_ROOT / "export" / "random_weights.py"
    spec = importlib.util.spec_from_file_location("streamsam_random_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rw = _load_random_weights()

# --------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------

#: The settings build_sam2_video_predictor adds (apply_postprocessing=True), minus
#: fill_hole_area (a predictor setting, not a SAM2Base argument).
VIDEO_OVERRIDES = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
]

_MA = "model.memory_attention"
_ME = "model.memory_encoder"
#: Reduced widths applied on top of the tiny yaml (SAM 2 or SAM 2.1 rules).
REDUCED_OVERRIDES = [
    "model.image_size=256",
    "model.image_encoder.trunk.embed_dim=16",
    "model.image_encoder.trunk.num_heads=1",
    "model.image_encoder.trunk.stages=[1,1,2,1]",
    "model.image_encoder.trunk.global_att_blocks=[3]",
    "model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.trunk.window_spec=[8,4,14,7]",
    "model.image_encoder.neck.d_model=64",
    "model.image_encoder.neck.position_encoding.num_pos_feats=64",
    "model.image_encoder.neck.backbone_channel_list=[128,64,32,16]",
    f"{_MA}.d_model=64",
    f"{_MA}.num_layers=2",
    f"{_MA}.layer.d_model=64",
    f"{_MA}.layer.dim_feedforward=128",
    f"{_MA}.layer.self_attention.embedding_dim=64",
    f"{_MA}.layer.self_attention.num_heads=1",
    f"{_MA}.layer.self_attention.feat_sizes=[16,16]",
    f"{_MA}.layer.cross_attention.embedding_dim=64",
    f"{_MA}.layer.cross_attention.num_heads=1",
    f"{_MA}.layer.cross_attention.kv_in_dim=16",
    f"{_MA}.layer.cross_attention.feat_sizes=[16,16]",
    f"{_ME}.out_dim=16",
    f"++{_ME}.in_dim=64",
    f"{_ME}.position_encoding.num_pos_feats=16",
    f"++{_ME}.mask_downsampler.embed_dim=64",
    f"{_ME}.fuser.layer.dim=64",
    f"{_ME}.fuser.num_layers=1",
]

TINY_256_OVERRIDES = [
    "model.image_size=256",
    f"{_MA}.layer.self_attention.feat_sizes=[16,16]",
    f"{_MA}.layer.cross_attention.feat_sizes=[16,16]",
]

ALL_STAGES = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")


@dataclass
class GoldenConfig:
    """One model configuration and what to generate for it."""

    name: str
    config_file: str
    overrides: list[str]
    stages: tuple[str, ...] = ALL_STAGES
    #: stage -> case names to generate (None: all cases of the stage)
    cases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: "<stage>/<tensor>" names not stored for this config (size); see README.
    skip_keys: tuple[str, ...] = ()
    #: mask-decoder cases whose high_res_multimasks / high_res_masks are stored (size: the
    #: others are bilinear upsamplings of the stored low-res ones, checked at generation)
    high_res_cases: tuple[str, ...] = ("click_multimask", "mask_as_output")
    #: mask-decoder cases whose high_res_multimasks is stored (else only high_res_masks)
    high_res_multi_cases: tuple[str, ...] = ("mask_as_output",)
    description: str = ""


CONFIGS = {
    "reduced": GoldenConfig(
        name="reduced",
        config_file="configs/sam2.1/sam2.1_hiera_t.yaml",
        overrides=REDUCED_OVERRIDES + VIDEO_OVERRIDES,
        description="SAM 2.1 rules, reduced widths, image 256",
    ),
    "reduced_sam2": GoldenConfig(
        name="reduced_sam2",
        config_file="configs/sam2/sam2_hiera_t.yaml",
        overrides=REDUCED_OVERRIDES + VIDEO_OVERRIDES,
        stages=("memory_attention", "memory_encoder"),
        description="SAM 2 (2.0) rules, reduced widths, image 256",
    ),
    "tiny": GoldenConfig(
        name="tiny",
        config_file="configs/sam2.1/sam2.1_hiera_t.yaml",
        overrides=TINY_256_OVERRIDES + VIDEO_OVERRIDES,
        cases={
            "memory_attention": ("seven_memories",),
            "mask_decoder": ("click_multimask", "three_clicks", "mask_as_output"),
            "memory_encoder": ("present_absent",),
        },
        skip_keys=(
            "memory_attention/memory",  # = concatenation of the stored inputs (see selected/)
            "mask_decoder/image_pe",
            "mask_decoder/dense_embeddings",
        ),
        high_res_cases=("mask_as_output",),
        description="sam2.1_hiera_t.yaml at image 256 (full widths; fewer cases, size)",
    ),
}

#: Official model names for --dump-keys (config file at image 1024).
KEY_DUMP_MODELS = {
    f"{ver}_{size}": f"configs/{ver}/{ver}_hiera_{short}.yaml"
    for ver in ("sam2", "sam2.1")
    for size, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}

# --------------------------------------------------------------------------------------
# Model and inputs
# --------------------------------------------------------------------------------------


def build_official(config_file: str, overrides: list[str]) -> torch.nn.Module:
    """Official SAM2Base with seeded random weights loaded strictly (CPU, eval)."""
    from sam2.build_sam import build_sam2

    model = build_sam2(
        config_file,
        ckpt_path=None,
        device="cpu",
        mode="eval",
        hydra_overrides_extra=list(overrides),
        apply_postprocessing=False,  # the same settings are in VIDEO_OVERRIDES, explicitly
    )
    state = rw.seeded_state_dict(model.state_dict(), seed=SEED)
    missing, unexpected = model.load_state_dict(state, strict=True)
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing={missing} unexpected={unexpected}")
    return model.eval()


def seeded_input(name: str, shape, std: float = 1.0, step: float = 1 / 16) -> np.ndarray:
    """Seeded normal input ``std * N(0,1)`` rounded to multiples of ``step`` (a power of 2).

    Rounding keeps the values exact in float32 and makes the stored inputs compress well.
    """
    draw = rw.key_rng(f"input:{name}", SEED).standard_normal(size=tuple(shape))
    return (np.round(draw * std / step) * step).astype(np.float32)


def t(x: np.ndarray) -> torch.Tensor:
    """numpy -> torch (copy)."""
    return torch.from_numpy(np.array(x))


def n(x: torch.Tensor) -> np.ndarray:
    """torch -> float32 numpy (ints keep their dtype)."""
    x = x.detach().cpu()
    return x.numpy().copy() if not x.is_floating_point() else x.float().numpy().copy()


def to_seq(x: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] -> [HW, B, C] (the official flattened layout)."""
    return x.flatten(2).permute(2, 0, 1).contiguous()


def expand_b(x: np.ndarray) -> torch.Tensor:
    """[1, ...] shared tensor -> contiguous [B, ...] torch tensor."""
    return t(np.repeat(x, B, axis=0))


def model_dims(model) -> dict:
    """The sizes the stages depend on."""
    h = model.image_size // model.backbone_stride
    return {
        "image_size": model.image_size,
        "feat_size": h,
        "hidden_dim": model.hidden_dim,
        "mem_dim": model.mem_dim,
        "num_maskmem": model.num_maskmem,
        "max_obj_ptrs_in_encoder": model.max_obj_ptrs_in_encoder,
        "s0_dim": model.sam_mask_decoder.conv_s0.out_channels,
        "s1_dim": model.sam_mask_decoder.conv_s1.out_channels,
    }


# --------------------------------------------------------------------------------------
# Output store
# --------------------------------------------------------------------------------------


class Store:
    """Ordered tensors of one npz file plus its JSON meta (key ``meta``)."""

    def __init__(self, prefix: str, skip: tuple[str, ...]):
        self.arrays: dict[str, np.ndarray] = {}
        self.meta: dict = {"cases": {}}
        self.stats: dict = {}
        self._skip = {s.split("/", 1)[1] for s in skip if s.startswith(prefix + "/")}

    def put(self, key: str, value) -> None:
        """Store ``value`` (torch / numpy / python scalar) under ``key`` unless skipped."""
        if key.rsplit("/", 1)[-1] in self._skip:
            self.meta.setdefault("skipped_keys", []).append(key)
            return
        if isinstance(value, torch.Tensor):
            value = n(value)
        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        if key in self.arrays:
            raise KeyError(f"duplicate key {key}")
        self.arrays[key] = value


def save_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict, fortran: tuple[str, ...] = ()) -> None:
    """Write a compressed .npz with fixed zip timestamps (byte-reproducible). Keys in `fortran`
    are stored in Fortran order (np.load returns the same shape; for frames [T,H,W,3] a pixel's
    values over time sit together, which compresses about 10x better)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = dict(arrays)
    items["meta"] = np.array(json.dumps(meta, indent=1, sort_keys=True))
    with zipfile.ZipFile(path, "w") as zf:
        for key, value in items.items():
            buf = io.BytesIO()
            value = np.asfortranarray(value) if key in fortran else np.array(value, order="C")
            np.lib.format.write_array(buf, value, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)


def fstats(x: torch.Tensor) -> dict:
    """mean / std / min / max of a float tensor, rounded for printing."""
    x = x.detach().float()
    return {k: round(float(v), 4) for k, v in
            (("mean", x.mean()), ("std", x.std()), ("min", x.min()), ("max", x.max()))}


# --------------------------------------------------------------------------------------
# Stage: image encoder
# --------------------------------------------------------------------------------------


def gen_image_encoder(model, cfg: GoldenConfig, store: Store) -> None:
    """Official forward_image on a seeded image [1, 3, S, S]."""
    s = model.image_size
    image = seeded_input(f"{cfg.name}/image_encoder/main/image", (1, 3, s, s), 1.0, 1 / 8)
    out = model.forward_image(t(image))
    store.put("main/in/image", image)
    for i, feat in enumerate(out["backbone_fpn"]):
        store.put(f"main/out/backbone_fpn_{i}", feat)
    store.put("main/out/vision_pos_enc_2", out["vision_pos_enc"][-1])
    store.meta["function"] = "SAM2Base.forward_image(image)"
    store.meta["cases"]["main"] = "seeded N(0,1) image rounded to 1/8"
    store.stats["main"] = {
        f"backbone_fpn_{i}": fstats(f) for i, f in enumerate(out["backbone_fpn"])
    }
    store.stats["main"]["vision_pos_enc_2"] = fstats(out["vision_pos_enc"][-1])


# --------------------------------------------------------------------------------------
# Stage: memory attention
# --------------------------------------------------------------------------------------

#: case -> (cond frames (insertion order), non-cond frames, frame_idx, num_frames,
#:          track_in_reverse, is_init_cond_frame, description)
MEMORY_ATTENTION_CASES = {
    "one_memory": ([0], [], 1, 50, False, False, "cond frame 0, tracking frame 1"),
    "seven_memories": (
        [0], list(range(5, 20)), 20, 50, False, False,
        "cond 0 + non-cond 5..19 at frame 20: 7 memories, 16 pointers",
    ),
    "two_cond": (
        [0, 30], list(range(31, 37)), 37, 50, False, False,
        "cond 0 and 30 + non-cond 31..36, forward at frame 37",
    ),
    "reverse": (
        [10, 40], list(range(41, 46)), 39, 50, True, False,
        "reverse tracking at 39: cond 40 + non-cond 41..45, plus cond 10 "
        "(a memory, but its pointer is excluded: only 'past' pointers, t >= 39 in reverse)",
    ),
    "init_cond": ([], [], 0, 50, False, True, "is_init_cond_frame: no_mem_embed path"),
}


@contextlib.contextmanager
def capture_memory_attention(model):
    """Record the kwargs passed to model.memory_attention and get_1d_sine_pe's input."""
    import sam2.modeling.sam2_base as sam2_base

    record: dict = {"calls": [], "tpos_inputs": []}
    orig_pe = sam2_base.get_1d_sine_pe

    def pe_wrapper(pos_inds, dim, temperature=10000):
        record["tpos_inputs"].append(pos_inds.detach().clone())
        return orig_pe(pos_inds, dim, temperature)

    def hook(_module, _args, kwargs):
        record["calls"].append({k: v for k, v in kwargs.items()})

    handle = model.memory_attention.register_forward_pre_hook(hook, with_kwargs=True)
    sam2_base.get_1d_sine_pe = pe_wrapper
    try:
        yield record
    finally:
        handle.remove()
        sam2_base.get_1d_sine_pe = orig_pe


def _identify_memories(model, frames, memory, memory_pos, num_ptr_tokens, pos_seq, dims):
    """Which frames' memories / pointers the official code put into ``memory`` (by equality)."""
    hw = dims["feat_size"] ** 2
    mem_dim, hidden = dims["mem_dim"], dims["hidden_dim"]
    n_spatial = (memory.shape[0] - num_ptr_tokens) // hw
    mem_frames, tpos_index = [], []
    tpos_table = model.maskmem_tpos_enc.detach().reshape(model.num_maskmem, mem_dim)
    for i in range(n_spatial):
        chunk = memory[i * hw:(i + 1) * hw]
        match = [f for f, d in frames.items() if torch.equal(to_seq(d["maskmem_features"]), chunk)]
        mem_frames.append(match[0] if len(match) == 1 else -1)
        tpos = (memory_pos[i * hw:(i + 1) * hw] - pos_seq).mean(dim=(0, 1))
        tpos_index.append(int(torch.argmin((tpos_table - tpos).abs().sum(-1))))
    ptr_frames = []
    if num_ptr_tokens:
        split = hidden // mem_dim
        tokens = memory[memory.shape[0] - num_ptr_tokens:]
        ptrs = tokens.reshape(-1, split, B, mem_dim).permute(0, 2, 1, 3).reshape(-1, B, hidden)
        for p in ptrs:
            match = [f for f, d in frames.items() if torch.equal(d["obj_ptr"], p)]
            ptr_frames.append(match[0] if len(match) == 1 else -1)
    return mem_frames, tpos_index, ptr_frames


def gen_memory_attention(model, cfg: GoldenConfig, store: Store) -> None:
    """Official _prepare_memory_conditioned_features on synthetic output_dicts."""
    d = model_dims(model)
    h, c, mem_dim = d["feat_size"], d["hidden_dim"], d["mem_dim"]
    prefix = f"{cfg.name}/memory_attention"
    feats = seeded_input(f"{prefix}/vision_feats", (1, c, h, h))
    vision_pos = model.image_encoder.neck.position_encoding(torch.zeros(1, c, h, h))
    maskmem_pos = model.memory_encoder.position_encoding(torch.zeros(1, mem_dim, h, h))
    store.put("shared/vision_feats", feats)
    store.put("shared/vision_pos_enc", vision_pos)
    store.put("shared/maskmem_pos_enc", maskmem_pos)
    store.meta["function"] = (
        "SAM2Base._prepare_memory_conditioned_features(frame_idx, is_init_cond_frame, "
        "[to_seq(vision_feats)], [to_seq(vision_pos_enc)], [(h, w)], output_dict, "
        "num_frames, track_in_reverse)"
    )
    pos_b = expand_b(n(maskmem_pos))
    for case in cfg.cases.get("memory_attention", tuple(MEMORY_ATTENTION_CASES)):
        cond, non_cond, frame_idx, num_frames, reverse, is_init, desc = MEMORY_ATTENTION_CASES[case]
        frames = {}
        for f in cond + non_cond:
            features = seeded_input(
                f"{prefix}/{case}/{f}/maskmem_features", (B, mem_dim, h, h), 1.0, 1 / 8)
            if f not in cond and abs(f - frame_idx) >= model.num_maskmem:
                features = np.zeros_like(features)  # never read: older than num_maskmem - 1
            frames[f] = {
                "maskmem_features": t(features),
                "maskmem_pos_enc": [pos_b],
                "obj_ptr": t(seeded_input(f"{prefix}/{case}/{f}/obj_ptr", (B, c), 1.0, 1 / 16)),
            }
            store.put(f"{case}/in/frame_{f}/maskmem_features", frames[f]["maskmem_features"])
            store.put(f"{case}/in/frame_{f}/obj_ptr", frames[f]["obj_ptr"])
        output_dict = {
            "cond_frame_outputs": {f: frames[f] for f in cond},
            "non_cond_frame_outputs": {f: frames[f] for f in non_cond},
        }
        scalars = {"frame_idx": frame_idx, "num_frames": num_frames,
                   "track_in_reverse": int(reverse), "is_init_cond_frame": int(is_init)}
        store.put(f"{case}/in/cond_frames", np.array(cond, dtype=np.int64))
        store.put(f"{case}/in/non_cond_frames", np.array(non_cond, dtype=np.int64))
        for k, v in scalars.items():
            store.put(f"{case}/in/{k}", np.array(v, dtype=np.int64))
        with capture_memory_attention(model) as rec:
            out = model._prepare_memory_conditioned_features(
                frame_idx=frame_idx,
                is_init_cond_frame=is_init,
                current_vision_feats=[to_seq(expand_b(feats))],
                current_vision_pos_embeds=[to_seq(expand_b(n(vision_pos)))],
                feat_sizes=[(h, h)],
                output_dict=output_dict,
                num_frames=num_frames,
                track_in_reverse=reverse,
            )
        store.put(f"{case}/out/pix_feat_with_mem", out)
        info = {"description": desc, **scalars, "cond_frames": cond, "non_cond_frames": non_cond,
                "memory_attention_called": bool(rec["calls"])}
        if rec["calls"]:
            call = rec["calls"][0]
            memory, memory_pos = call["memory"], call["memory_pos"]
            n_ptr = int(call["num_obj_ptr_tokens"])
            mem_frames, tpos_index, ptr_frames = _identify_memories(
                model, frames, memory, memory_pos, n_ptr, to_seq(pos_b), d)
            if -1 in mem_frames or -1 in ptr_frames:
                raise RuntimeError(f"{case}: could not identify memories {mem_frames} {ptr_frames}")
            store.put(f"{case}/captured/memory", memory)
            store.put(f"{case}/captured/memory_pos", memory_pos)
            store.put(f"{case}/captured/num_obj_ptr_tokens", np.array(n_ptr, dtype=np.int64))
            store.put(f"{case}/selected/memory_frames", np.array(mem_frames, dtype=np.int64))
            store.put(f"{case}/selected/memory_tpos_index", np.array(tpos_index, dtype=np.int64))
            store.put(f"{case}/selected/ptr_frames", np.array(ptr_frames, dtype=np.int64))
            info.update(memory_frames=mem_frames, memory_tpos_index=tpos_index,
                        ptr_frames=ptr_frames, num_obj_ptr_tokens=n_ptr)
            if rec["tpos_inputs"]:
                pos_in = rec["tpos_inputs"][0]
                t_diff_max = min(num_frames, model.max_obj_ptrs_in_encoder) - 1
                ptr_tpos = torch.round(pos_in * t_diff_max).to(torch.int64)
                store.put(f"{case}/selected/ptr_tpos_normalized", pos_in)
                store.put(f"{case}/selected/ptr_tpos", ptr_tpos)
                info["ptr_tpos"] = ptr_tpos.tolist()
        store.meta["cases"][case] = info
        base = to_seq(expand_b(feats)).permute(1, 2, 0).reshape(out.shape)
        store.stats[case] = {
            "memories": len(info.get("memory_frames", [])),
            "ptrs": len(info.get("ptr_frames", [])),
            "out": fstats(out),
            "mean_abs_change_vs_input": round(float((out - base).abs().mean()), 4),
        }


# --------------------------------------------------------------------------------------
# Stage: mask decoder (SAM heads)
# --------------------------------------------------------------------------------------

SAM_OUTPUT_NAMES = (
    "low_res_multimasks", "high_res_multimasks", "ious", "low_res_masks",
    "high_res_masks", "obj_ptr", "object_score_logits",
)


def _points(s: int, pts: list[list[tuple[float, float, int]]]):
    """Per-object lists of (x_frac, y_frac, label) -> coords [B,P,2] (pixels), labels [B,P]."""
    coords = np.array([[(x * s, y * s) for x, y, _ in obj] for obj in pts], dtype=np.float32)
    labels = np.array([[lab for _, _, lab in obj] for obj in pts], dtype=np.int32)
    return coords, labels


def mask_decoder_cases(s: int, h: int, prefix: str) -> dict:
    """case -> dict(point_coords, point_labels, mask_inputs, multimask_output, kind, desc)."""
    yy, xx = np.mgrid[0:s, 0:s] / s
    blob = (((xx - 0.45) / 0.25) ** 2 + ((yy - 0.55) / 0.18) ** 2 <= 1.0).astype(np.float32)
    full_mask = np.stack([blob[None], np.zeros_like(blob)[None]])  # object 1: empty mask
    cases = {
        "click_multimask": dict(
            points=_points(s, [[(0.30, 0.40, 1)], [(0.70, 0.62, 1)]]), multimask=True,
            desc="one positive click per object, multimask_output=True"),
        "three_clicks": dict(
            points=_points(s, [[(0.30, 0.40, 1), (0.50, 0.45, 0), (0.35, 0.60, 1)],
                               [(0.70, 0.62, 1), (0.62, 0.30, 1), (0.80, 0.80, 0)]]),
            multimask=False,
            desc="two positive + one negative click, multimask_output=False "
                 "(dynamic multimask via stability)"),
        "box_click": dict(
            points=_points(s, [[(0.20, 0.25, 2), (0.60, 0.70, 3), (0.40, 0.50, 1)],
                               [(0.55, 0.10, 2), (0.95, 0.45, 3), (0.75, 0.30, 1)]]),
            multimask=False, desc="box (labels 2, 3) + positive click, multimask_output=False"),
        "mask_input": dict(
            mask=seeded_input(f"{prefix}/mask_input/mask_inputs", (B, 1, 4 * h, 4 * h), 4.0, 1 / 8),
            multimask=False,
            desc="low-res mask logits [B,1,4h,4w] as mask_inputs, no points "
                 "(official pads a (0,0) point with label -1), multimask_output=False"),
        "tracking": dict(multimask=True,
                         desc="no points, no mask (tracking), multimask_output=True"),
        "mask_as_output": dict(
            full_mask=full_mask, desc="_use_mask_as_output with a full-res binary mask "
                                      "[B,1,S,S]; object 1 has an empty mask"),
    }
    return cases


@contextlib.contextmanager
def capture_sam_heads(model):
    """Record prompt-encoder outputs and the decoder's raw (all-token) predictions."""
    record: dict = {"prompt": [], "decoder": []}
    dec = model.sam_mask_decoder
    orig_predict = dec.predict_masks

    def predict_wrapper(**kwargs):
        out = orig_predict(**kwargs)
        record["decoder"].append({"sparse": kwargs["sparse_prompt_embeddings"],
                                  "dense": kwargs["dense_prompt_embeddings"], "out": out})
        return out

    def pe_hook(_module, _args, kwargs):
        record["prompt"].append(kwargs.get("masks"))

    handle = model.sam_prompt_encoder.register_forward_pre_hook(pe_hook, with_kwargs=True)
    dec.predict_masks = predict_wrapper
    try:
        yield record
    finally:
        handle.remove()
        del dec.predict_masks


def gen_mask_decoder(model, cfg: GoldenConfig, store: Store) -> None:
    """Official _forward_sam_heads / _use_mask_as_output on seeded features and prompts."""
    d = model_dims(model)
    s, h, c = d["image_size"], d["feat_size"], d["hidden_dim"]
    prefix = f"{cfg.name}/mask_decoder"
    feats = seeded_input(f"{prefix}/backbone_features", (B, c, h, h))
    s0 = seeded_input(f"{prefix}/high_res_feat_s0", (1, d["s0_dim"], 4 * h, 4 * h))
    s1 = seeded_input(f"{prefix}/high_res_feat_s1", (1, d["s1_dim"], 2 * h, 2 * h))
    store.put("shared/backbone_features", feats)
    store.put("shared/high_res_feat_s0", s0)
    store.put("shared/high_res_feat_s1", s1)
    store.put("shared/image_pe", model.sam_prompt_encoder.get_dense_pe())
    store.meta["function"] = (
        "SAM2Base._forward_sam_heads(backbone_features, point_inputs, mask_inputs, "
        "[high_res_feat_s0, high_res_feat_s1], multimask_output) or "
        "SAM2Base._use_mask_as_output(backbone_features, [s0, s1], mask_inputs)"
    )
    bf, hr = t(feats), [expand_b(s0), expand_b(s1)]
    all_cases = mask_decoder_cases(s, h, prefix)
    for case in cfg.cases.get("mask_decoder", tuple(all_cases)):
        spec = all_cases[case]
        info = {"description": spec["desc"]}
        with capture_sam_heads(model) as rec:
            if "full_mask" in spec:
                store.put(f"{case}/in/mask_inputs", spec["full_mask"])
                outs = model._use_mask_as_output(bf, hr, t(spec["full_mask"]))
                info["function"] = "_use_mask_as_output"
            else:
                point_inputs, mask_inputs = None, None
                if "points" in spec:
                    coords, labels = spec["points"]
                    point_inputs = {"point_coords": t(coords), "point_labels": t(labels)}
                    store.put(f"{case}/in/point_coords", coords)
                    store.put(f"{case}/in/point_labels", labels)
                if "mask" in spec:
                    mask_inputs = t(spec["mask"])
                    store.put(f"{case}/in/mask_inputs", spec["mask"])
                store.put(f"{case}/in/multimask_output", np.array(int(spec["multimask"])))
                info["multimask_output"] = spec["multimask"]
                info["function"] = "_forward_sam_heads"
                outs = model._forward_sam_heads(
                    backbone_features=bf, point_inputs=point_inputs, mask_inputs=mask_inputs,
                    high_res_features=hr, multimask_output=spec["multimask"])
        for name, value in zip(SAM_OUTPUT_NAMES, outs):
            if (name.startswith("high_res") and case not in cfg.high_res_cases) or (
                    name == "high_res_multimasks" and case not in cfg.high_res_multi_cases):
                store.meta.setdefault("skipped_keys", []).append(f"{case}/out/{name}")
                continue
            store.put(f"{case}/out/{name}", value)
        if info["function"] == "_forward_sam_heads":
            _check_high_res(outs, s, case)
        _store_decoder_capture(model, store, case, rec, info)
        store.meta["cases"][case] = info
        store.stats[case] = _mask_stats(outs, info)


def _check_high_res(outs, s: int, case: str) -> None:
    """high_res_multimasks must be bilinear(low_res_multimasks) (documented in README)."""
    low, high = outs[0], outs[1]
    if high.shape[-1] != s:
        raise RuntimeError(f"{case}: unexpected high-res size {tuple(high.shape)}")
    ref = torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    if not torch.equal(ref, high):
        raise RuntimeError(f"{case}: high_res_multimasks != interpolate(low_res_multimasks)")


def _store_decoder_capture(model, store: Store, case: str, rec: dict, info: dict) -> None:
    """Prompt-encoder outputs, raw decoder ious and the single-mask stability of the call."""
    if len(rec["decoder"]) != 1:
        raise RuntimeError(f"{case}: expected one decoder call, got {len(rec['decoder'])}")
    call = rec["decoder"][0]
    masks_all, iou_all, _, _ = call["out"]
    store.put(f"{case}/captured/sparse_embeddings", call["sparse"])
    store.put(f"{case}/captured/dense_embeddings", call["dense"])
    if rec["prompt"][0] is not None:
        store.put(f"{case}/captured/prompt_mask_input", rec["prompt"][0])
    store.put(f"{case}/captured/iou_pred_all_tokens", iou_all)
    dec = model.sam_mask_decoder
    stability = dec._get_stability_scores(masks_all[:, 0:1])
    store.put(f"{case}/captured/singlemask_stability", stability)
    info["singlemask_stability"] = [round(float(v), 4) for v in stability.flatten()]
    info["singlemask_is_stable"] = [bool(v) for v in
                                    (stability >= dec.dynamic_multimask_stability_thresh).flatten()]


def _mask_stats(outs, info: dict) -> dict:
    """Per-object fraction of positive low-res logits, scores and ious."""
    low_res_masks, ious, obj_ptr, scores = outs[3], outs[2], outs[5], outs[6]
    return {
        "object_score_logits": [round(float(v), 3) for v in scores.flatten()],
        "frac_pos_low_res_masks": [round(float((m > 0).float().mean()), 3) for m in low_res_masks],
        "ious": [[round(float(v), 3) for v in row] for row in ious],
        "obj_ptr_std": round(float(obj_ptr.std()), 3),
        "low_res_masks_std_present": round(float(low_res_masks[scores.flatten() > 0].std()), 3)
        if bool((scores > 0).any()) else None,
        "singlemask_is_stable": info.get("singlemask_is_stable"),
    }


# --------------------------------------------------------------------------------------
# Stage: memory encoder
# --------------------------------------------------------------------------------------

#: case -> (object_score_logits per object, is_mask_from_pts, absent objects' mask is
#:          NO_OBJ_SCORE, description)
MEMORY_ENCODER_CASES = {
    "soft_present": ([2.5, 1.5], False, False, "soft mask logits, both objects present"),
    "binarized": ([2.5, 1.5], True, False,
                  "is_mask_from_pts=True -> binarized (binarize_mask_from_pts_for_mem_enc)"),
    "present_absent": ([3.0, -2.0], False, True,
                       "object 0 present, object 1 absent (score < 0, mask = NO_OBJ_SCORE -1024)"),
}


def gen_memory_encoder(model, cfg: GoldenConfig, store: Store) -> None:
    """Official _encode_new_memory on seeded features and mask logits."""
    from sam2.modeling.sam2_base import NO_OBJ_SCORE

    d = model_dims(model)
    s, h, c = d["image_size"], d["feat_size"], d["hidden_dim"]
    prefix = f"{cfg.name}/memory_encoder"
    feats = seeded_input(f"{prefix}/vision_feats", (1, c, h, h))
    store.put("shared/vision_feats", feats)
    store.meta["function"] = (
        "SAM2Base._encode_new_memory([to_seq(vision_feats)], [(h, w)], pred_masks_high_res, "
        "object_score_logits, is_mask_from_pts)"
    )
    for case in cfg.cases.get("memory_encoder", tuple(MEMORY_ENCODER_CASES)):
        scores, from_pts, absent_no_obj, desc = MEMORY_ENCODER_CASES[case]
        masks = seeded_input(f"{prefix}/{case}/pred_masks_high_res", (B, 1, s, s), 4.0, 1 / 2)
        score_arr = np.array(scores, dtype=np.float32)[:, None]
        if absent_no_obj:
            masks[score_arr[:, 0] <= 0] = NO_OBJ_SCORE
        store.put(f"{case}/in/pred_masks_high_res", masks)
        store.put(f"{case}/in/object_score_logits", score_arr)
        store.put(f"{case}/in/is_mask_from_pts", np.array(int(from_pts)))
        features, pos = model._encode_new_memory(
            current_vision_feats=[to_seq(expand_b(feats))],
            feat_sizes=[(h, h)],
            pred_masks_high_res=t(masks),
            object_score_logits=t(score_arr),
            is_mask_from_pts=from_pts,
        )
        store.put(f"{case}/out/maskmem_features", features)
        store.put(f"{case}/out/maskmem_pos_enc", pos[-1])
        store.meta["cases"][case] = {"description": desc, "object_score_logits": scores,
                                     "is_mask_from_pts": from_pts}
        store.stats[case] = {"maskmem_features_std_per_object":
                             [round(float(f.std()), 4) for f in features],
                             "maskmem_features": fstats(features)}


STAGE_FUNCS: dict[str, Callable] = {
    "image_encoder": gen_image_encoder,
    "memory_attention": gen_memory_attention,
    "mask_decoder": gen_mask_decoder,
    "memory_encoder": gen_memory_encoder,
}

# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def versions() -> dict:
    """Versions of the packages the fixtures depend on."""
    from importlib.metadata import version

    return {"sam2": version("sam2"), "torch": torch.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0]}


def generate_config(cfg: GoldenConfig, out_dir: Path) -> dict:
    """Build the official model for ``cfg`` and write its config.json and stage npz files."""
    model = build_official(cfg.config_file, cfg.overrides)
    state = model.state_dict()
    config_meta = {
        "config": cfg.name,
        "description": cfg.description,
        "config_file": cfg.config_file,
        "hydra_overrides": cfg.overrides,
        "build": "sam2.build_sam.build_sam2(config_file, ckpt_path=None, device='cpu', "
                 "mode='eval', hydra_overrides_extra=hydra_overrides, apply_postprocessing=False)",
        "versions": versions(),
        "seed": SEED,
        "batch_objects": B,
        "random_weights": {k: getattr(rw, k) for k in
                           ("OBJ_SCORE_BIAS", "EMBED_STD", "GAMMA_MEAN", "GAMMA_STD",
                            "BIAS_STD", "NORM_STD")},
        "weights_sha256": rw.state_dict_sha256(state),
        "dims": model_dims(model),
        "state_dict_shapes": {k: list(v.shape) for k, v in state.items()},
        "stages": list(cfg.stages),
    }
    (out_dir / cfg.name).mkdir(parents=True, exist_ok=True)
    (out_dir / cfg.name / "config.json").write_text(json.dumps(config_meta, indent=1) + "\n")
    all_stats = {}
    with torch.inference_mode():
        for stage in cfg.stages:
            store = Store(stage, cfg.skip_keys)
            STAGE_FUNCS[stage](model, cfg, store)
            store.meta.update(
                config=cfg.name, stage=stage, stats=store.stats, batch_objects=B,
                config_file=cfg.config_file, hydra_overrides=cfg.overrides,
                versions=config_meta["versions"], weights_sha256=config_meta["weights_sha256"])
            save_npz(out_dir / cfg.name / f"{stage}.npz", store.arrays, store.meta)
            all_stats[stage] = store.stats
    return all_stats


def dump_keys(out_dir: Path) -> None:
    """Write the official state-dict keys and shapes of the 8 released models (image 1024): one
    text file per model in out_dir, and tests/golden/official_state_dict_shapes.json.gz, which
    tests/test_checkpoint.py compares with our model's keys and shapes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    from sam2.build_sam import build_sam2

    configs = {}
    for name, config_file in KEY_DUMP_MODELS.items():
        model = build_sam2(config_file, ckpt_path=None, device="cpu", mode="eval")
        lines = [f"{k}\t{list(v.shape)}\t{str(v.dtype).replace('torch.', '')}"
                 for k, v in model.state_dict().items()]
        path = out_dir / f"official_keys_{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        version, size = name.split("_", 1)
        configs[f"{version}_hiera_{size}"] = {k: list(v.shape) for k, v in model.state_dict().items()}
        print(f"{path}: {len(lines)} keys")
    data = {
        "source": "sam2 1.1.0, build_sam2(<official yaml>, ckpt_path=None) at image 1024: state_dict() "
        "keys and shapes (tests/golden/make_golden.py --dump-keys)",
        "configs": configs,
    }
    with gzip.GzipFile(GOLDEN_DIR / "official_state_dict_shapes.json.gz", "wb", mtime=0) as f:
        f.write(json.dumps(data, sort_keys=True).encode())


def check_reproducible(names: list[str], ref_dir: Path) -> None:
    """Regenerate into a temp folder and compare bytes with the committed fixtures."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            generate_config(CONFIGS[name], Path(tmp))
            for path in sorted((Path(tmp) / name).iterdir()):
                ref = ref_dir / name / path.name
                same = ref.exists() and filecmp.cmp(path, ref, shallow=False)
                print(f"{name}/{path.name}: {'identical' if same else 'DIFFERENT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR)
    parser.add_argument("--dump-keys", type=Path, default=None,
                        help="only write official_keys_<model>.txt files into this folder")
    parser.add_argument("--check", action="store_true",
                        help="regenerate into a temp folder and compare with --out files")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(SEED)
    if args.dump_keys is not None:
        dump_keys(args.dump_keys)
        return
    if args.check:
        check_reproducible(args.configs, args.out)
        return
    for name in args.configs:
        stats = generate_config(CONFIGS[name], args.out)
        for stage, cases in stats.items():
            for case, values in cases.items():
                print(f"{name}/{stage}/{case}: {json.dumps(values)}")


if __name__ == "__main__":
    main()
