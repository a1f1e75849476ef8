"""The peer side of the benchmarks: the official SAM 2 video predictor and SAM 1 image mode, timed.

Run with the OFFICIAL virtualenv's python (torch CPU, sam2, hydra, segment-anything; no streamsam,
no torchvision); ``python -m benchmarks`` calls it in a subprocess and reads the JSON it writes::

    python benchmarks/official_side.py video --config sam2.1_hiera_tiny --image-size 512 \\
        --weights W.pt --frames-dir DIR --prompts P.json [--frames N] --threads 1 --out R.json
    python benchmarks/official_side.py sam-image --model vit_b --image-size 1024 \\
        --repeats 20 --warmup 2 --threads 1 --out R.json
    python benchmarks/official_side.py sam2-image --config sam2.1_hiera_tiny --image-size 1024 \\
        [--weights W.pt] --repeats 20 --warmup 2 --threads 1 --out R.json
    python benchmarks/official_side.py flops --config sam2.1_hiera_tiny --image-size 1024 \
        --threads 1 --out R.json

Everything runs in float32 on the CPU: the official predictors apply no autocast there. Stage times
come from timers wrapped around the official methods and modules (perf_counter), so nothing of the
official code path is replaced. This file imports only the standard library, numpy, torch, sam2 and
segment_anything, so that it runs where streamsam is not installed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # propagate_in_video draws a progress bar otherwise

import argparse
import contextlib
import importlib
import importlib.util
import json
import resource
import sys
import time
import types
from functools import partial
from pathlib import Path

import numpy as np
import torch

#: Short names of the official checkpoint and YAML files (sam2.1_hiera_b+.yaml, ...).
HIERA_FILE_NAMES = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
BACKBONE_STRIDE = 16
#: The four stages of a tracked frame, named as our graphs; each is the official SAM2Base method
#: that covers the same work (module forward plus the glue around it: conv_s0/s1 projections,
#: temporal encodings and pointer projections, mask upsampling and object pointer, mask sigmoid).
STAGE_METHODS = {
    "image_encoder": "forward_image",
    "memory_attention": "_prepare_memory_conditioned_features",
    "mask_decoder": "_forward_sam_heads",
    "memory_encoder": "_encode_new_memory",
}
#: The official nn.Modules inside those stages, timed on their own forward.
STAGE_MODULES = ("image_encoder", "memory_attention", "sam_prompt_encoder", "sam_mask_decoder",
                 "memory_encoder")
#: ViT settings of segment_anything.build_sam (embed dim, depth, heads, global attention blocks).
SAM1_MODELS = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}
SAM1_PROMPT_DIM = 256
SAM1_PATCH = 16


class OfficialSideError(Exception):
    """A bad argument or input file; printed without a traceback, exit code 1."""


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size now (MB = 1e6 bytes), as benchmarks/stream_memory.py reads it."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def percentiles(values_ms: list[float]) -> dict:
    """p50 / p90 / p99 / mean / min / max of a list of milliseconds, rounded to 0.01 ms."""
    a = np.asarray(values_ms, dtype=np.float64)
    stats = {"p50": np.percentile(a, 50), "p90": np.percentile(a, 90), "p99": np.percentile(a, 99),
             "mean": a.mean(), "min": a.min(), "max": a.max()}
    return {k: round(float(v), 2) for k, v in stats.items()} | {"n": int(a.size)}


class StageTimer:
    """Sums of wall time per stage, collected by wrappers that leave the official code in place.

    Methods are wrapped by an instance attribute (the official code calls ``self.<method>``),
    modules by forward pre/post hooks. ``take()`` returns the sums since the last call and
    resets them, so a caller can attribute them to one frame.
    """

    def __init__(self):
        self._sums: dict[str, float] = {}
        self._undo: list = []

    def _add(self, key: str, seconds: float) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + seconds

    def wrap_method(self, obj, name: str, key: str) -> None:
        original = getattr(obj, name)
        self._sums[key] = 0.0

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(key, time.perf_counter() - start)

        setattr(obj, name, timed)
        self._undo.append(lambda: delattr(obj, name))

    def hook_module(self, module: torch.nn.Module, key: str) -> None:
        starts: list[float] = []
        self._sums[key] = 0.0

        def pre(_module, _args):
            starts.append(time.perf_counter())

        def post(_module, _args, _output):
            self._add(key, time.perf_counter() - starts.pop())

        self._undo.append(module.register_forward_pre_hook(pre).remove)
        self._undo.append(module.register_forward_hook(post).remove)

    def take(self) -> dict[str, float]:
        """Milliseconds per stage since the last take (0 for stages that did not run)."""
        out = {k: round(v * 1e3, 3) for k, v in self._sums.items()}
        self._sums = dict.fromkeys(self._sums, 0.0)
        return out

    def remove(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def cpu_sdpa_flops(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs) -> int:
    """FLOPs of the CPU kernel of scaled_dot_product_attention, which FlopCounterMode does not
    know (it counts the CUDA kernels only): the same count as theirs, QK^T plus AV."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


FLOPS_NOTE = ("FLOPs by torch.utils.flop_counter.FlopCounterMode (2 per multiply-add; matmul, "
              "convolution and attention ops; CPU attention counted as the CUDA kernels are), "
              "counted once, outside the timing.")


def flops_of(fn) -> int:
    """FLOPs (2 per multiply-add) of one call of ``fn``, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, custom_mapping={cpu_attention: cpu_sdpa_flops})
    with counter:
        fn()
    return int(counter.get_total_flops())


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def environment(threads: int) -> dict:
    """The fields every result shares: library versions and the threads torch was limited to."""
    return {"torch": torch.__version__, "numpy": np.__version__, "threads": threads,
            "torch_num_threads": torch.get_num_threads(), "python": sys.version.split()[0]}


# --------------------------------------------------------------------------------------
# Official SAM 2 model
# --------------------------------------------------------------------------------------


def config_file(name: str) -> str:
    """'sam2.1_hiera_tiny' (or '..._t', '..._b+', '..._base_plus') -> the official YAML path."""
    for version in ("sam2.1", "sam2"):
        prefix = f"{version}_hiera_"
        if name.startswith(prefix):
            size = name[len(prefix):]
            short = HIERA_FILE_NAMES.get(size, size)
            if short in HIERA_FILE_NAMES.values():
                return f"configs/{version}/{version}_hiera_{short}.yaml"
    names = [f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in HIERA_FILE_NAMES]
    raise OfficialSideError(f"--config | received {name!r}; expected one of {', '.join(names)}")


def size_overrides(image_size: int) -> list[str]:
    """Hydra overrides for a non-1024 input: the model's image size and memory attention's RoPE
    grid (the official YAMLs hard-code 64 x 64; RoPE would otherwise rebuild its table per call)."""
    if image_size % 32 or not 256 <= image_size <= 2048:
        raise OfficialSideError(f"--image-size | received {image_size}; expected a multiple of 32 "
                                "from 256 to 2048")
    grid = image_size // BACKBONE_STRIDE
    attention = "model.memory_attention.layer"
    return [f"++model.image_size={image_size}",
            f"++{attention}.self_attention.feat_sizes=[{grid},{grid}]",
            f"++{attention}.cross_attention.feat_sizes=[{grid},{grid}]"]


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load an official-format checkpoint ({"model": state_dict}) strictly, with a clear error."""
    if not path.is_file():
        raise OfficialSideError(f"--weights | received {path}; the file does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise OfficialSideError(f"--weights {path} | received a {type(checkpoint).__name__} "
                                "without a 'model' key; expected torch.save({'model': state_dict})")
    missing, unexpected = model.load_state_dict(checkpoint["model"], strict=False)
    if missing or unexpected:
        raise OfficialSideError(f"--weights {path} | the keys do not match the config: missing "
                                f"{missing[:5]} ({len(missing)}), unexpected {unexpected[:5]} "
                                f"({len(unexpected)}); expected the official keys of this config")


def build_video_predictor(config: str, image_size: int, weights: Path | None):
    """SAM2VideoPredictor as users build it (build_sam2_video_predictor: postprocessing settings
    and fill_hole_area=8 included), at ``image_size``, with ``weights`` loaded strictly."""
    from sam2.build_sam import build_sam2_video_predictor

    model = build_sam2_video_predictor(config_file(config), ckpt_path=None, device="cpu",
                                       mode="eval", hydra_overrides_extra=size_overrides(image_size))
    if weights is not None:
        load_weights(model, weights)
    return model.eval()


@contextlib.contextmanager
def float32_memory(model, counter: dict):
    """Cast memory attention's ``memory`` to float32 when it arrives as bfloat16.

    The official predictor stores memories in bfloat16; on a GPU autocast absorbs that, on a CPU a
    memory without object pointers (which would promote the concatenation to float32) fails with a
    dtype error in the first linear layer. bf16 -> float32 is exact; the calls are counted.
    """

    def cast(_module, args, kwargs):
        memory = kwargs.get("memory")
        if memory is None or memory.dtype == torch.float32:
            return None
        counter["bf16_memory_casts"] += 1
        return args, dict(kwargs, memory=memory.float())

    handle = model.memory_attention.register_forward_pre_hook(cast, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def instrument(model) -> tuple[StageTimer, StageTimer]:
    """Timers on the four stage methods and on the official modules inside them."""
    stages, modules = StageTimer(), StageTimer()
    for key, method in STAGE_METHODS.items():
        stages.wrap_method(model, method, key)
    for name in STAGE_MODULES:
        modules.hook_module(getattr(model, name), name)
    return stages, modules


# --------------------------------------------------------------------------------------
# video: SAM2VideoPredictor on a folder of JPEG frames
# --------------------------------------------------------------------------------------


def read_prompts(path: Path) -> dict:
    """P.json: {"frame": 0, "objects": [{"obj_id": 1, "points": [[x, y]], "labels": [1]}, ...]}."""
    try:
        prompts = json.loads(path.read_text())
        objects = prompts["objects"]
        frame = int(prompts["frame"])
        for obj in objects:
            if len(obj["points"]) != len(obj["labels"]) or not obj["points"]:
                raise ValueError(f"object {obj['obj_id']}: {len(obj['points'])} points, "
                                 f"{len(obj['labels'])} labels")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise OfficialSideError(
            f"--prompts {path} | received an unreadable prompt file ({err!r}); expected "
            '{"frame": 0, "objects": [{"obj_id": 1, "points": [[x, y]], "labels": [1]}]}') from err
    if not objects:
        raise OfficialSideError(f"--prompts {path} | received no objects; expected at least one")
    return {"frame": frame, "objects": objects}


def timed_propagation(model, state, start: int, frames: int | None, stages, modules) -> list[dict]:
    """Each yielded frame of propagate_in_video: time inside the generator, stages, RSS after."""
    limit = None if frames is None else frames - 1  # the official count excludes the start frame
    generator = model.propagate_in_video(state, start_frame_idx=start, max_frame_num_to_track=limit)
    records = []
    while True:
        begin = time.perf_counter()
        item = next(generator, None)
        elapsed = time.perf_counter() - begin
        if item is None:
            return records
        frame_idx, _obj_ids, _masks = item
        stage_ms = stages.take()
        ms = elapsed * 1e3
        records.append({"index": int(frame_idx), "ms": round(ms, 3), "rss_mb": round(rss_mb(), 2),
                        "stages_ms": stage_ms | {"other": round(ms - sum(stage_ms.values()), 3)},
                        "modules_ms": modules.take()})


def run_video(args) -> dict:
    prompts = read_prompts(args.prompts)
    if not args.frames_dir.is_dir():
        raise OfficialSideError(f"--frames-dir | received {args.frames_dir}; expected a folder "
                                "of JPEG frames 00000.jpg, 00001.jpg, ...")
    model = build_video_predictor(args.config, args.image_size, args.weights)
    rss_model = rss_mb()
    stages, modules = instrument(model)
    counter = {"bf16_memory_casts": 0}
    with torch.inference_mode(), float32_memory(model, counter):
        start = time.perf_counter()
        state = model.init_state(video_path=str(args.frames_dir))
        init_s = time.perf_counter() - start
        init_stages, _ = stages.take(), modules.take()
        rss_init = rss_mb()
        prompt_s, prompt_stages = [], []
        for obj in prompts["objects"]:
            start = time.perf_counter()
            model.add_new_points_or_box(state, frame_idx=prompts["frame"], obj_id=obj["obj_id"],
                                        points=np.asarray(obj["points"], np.float32),
                                        labels=np.asarray(obj["labels"], np.int32))
            prompt_s.append(round(time.perf_counter() - start, 4))
            prompt_stages.append(stages.take())
            modules.take()
        records = timed_propagation(model, state, prompts["frame"], args.frames, stages, modules)
    stages.remove()
    modules.remove()
    return {
        "peer": f"sam2 {package_version('sam2')} SAM2VideoPredictor",
        "config": args.config, "config_file": config_file(args.config),
        "image_size": args.image_size, **environment(args.threads),
        "video": {"frames_in_folder": state["num_frames"], "height": state["video_height"],
                  "width": state["video_width"], "objects": len(prompts["objects"]),
                  "prompt_frame": prompts["frame"]},
        "init_state_s": round(init_s, 4), "init_state_stages_ms": init_stages,
        "prompt_s": prompt_s, "prompt_stages_ms": prompt_stages,
        "frames": records,
        "rss_mb_after_model": round(rss_model, 2), "rss_mb_after_init_state": round(rss_init, 2),
        "peak_rss_mb": round(peak_rss_mb(), 2),
        "bf16_memory_casts": counter["bf16_memory_casts"],
        "notes": VIDEO_NOTES,
    }


VIDEO_NOTES = [
    "float32 on CPU: the official predictor applies no autocast on a CPU.",
    "Built with sam2.build_sam.build_sam2_video_predictor (apply_postprocessing=True, as users "
    "do), then the weights loaded strictly; hydra overrides set model.image_size and memory "
    "attention's RoPE feat_sizes to image_size/16.",
    "init_state loads and resizes EVERY frame of the folder into one float32 tensor "
    "[T,3,S,S] and runs the image encoder on frame 0 (its warm-up and feature cache): "
    "init_state_s includes both.",
    "frames[i].ms is the time spent inside propagate_in_video's generator for that frame "
    "(from resuming it to its yield); the first yield is the prompted frame, whose time is the "
    "preflight: the memory encoder on each prompted object's mask.",
    "Objects are tracked one after another (batch 1 each); the image features of the current "
    "frame are cached, so the image encoder runs once per frame.",
    "stages_ms: the SAM2Base method of each stage (forward_image, "
    "_prepare_memory_conditioned_features, _forward_sam_heads, _encode_new_memory), i.e. the "
    "modules plus their glue; 'other' = ms minus those (feature expansion, resizing the masks to "
    "the video resolution, the state's bookkeeping). modules_ms: the nn.Module forwards alone.",
    "Hole filling (fill_hole_area=8) needs the CUDA extension sam2._C: on a CPU it warns and is "
    "skipped, so it costs nothing here.",
    "Memory attention's memory is cast bfloat16 -> float32 when it arrives as bfloat16 (exact; "
    "counted in bf16_memory_casts): the official CPU path fails otherwise.",
    "The state keeps every frame's outputs (memories in bfloat16, masks, pointers), never "
    "trimmed: rss_mb grows with the frame count.",
]


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# --------------------------------------------------------------------------------------
# Image mode: SAM 1 (segment_anything) and SAM 2 (SAM2ImagePredictor's steps)
# --------------------------------------------------------------------------------------


def import_sam1_modeling():
    """``segment_anything.modeling`` without running the package's __init__.

    The package __init__ imports the predictor and the automatic mask generator, which need
    torchvision (absent here); the modeling modules need only torch. Registering a bare package
    module with the right __path__ lets the real modeling modules import.
    """
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or not spec.submodule_search_locations:
            raise OfficialSideError("segment_anything | not installed in this python; expected "
                                    "`pip install --no-deps segment-anything` in the official venv")
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.modeling")


def build_sam1(model_name: str, image_size: int) -> torch.nn.Module:
    """segment_anything's Sam as build_sam._build_sam makes it, at ``image_size`` (random init)."""
    if model_name not in SAM1_MODELS:
        raise OfficialSideError(f"--model | received {model_name!r}; expected one of "
                                f"{', '.join(SAM1_MODELS)}")
    if image_size % SAM1_PATCH:
        raise OfficialSideError(f"--image-size | received {image_size}; expected a multiple of "
                                f"{SAM1_PATCH} for SAM 1")
    m = import_sam1_modeling()
    embed_dim, depth, heads, global_blocks = SAM1_MODELS[model_name]
    grid = image_size // SAM1_PATCH
    torch.manual_seed(0)
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(
            depth=depth, embed_dim=embed_dim, img_size=image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=heads,
            patch_size=SAM1_PATCH, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=global_blocks, window_size=14, out_chans=SAM1_PROMPT_DIM),
        prompt_encoder=m.PromptEncoder(
            embed_dim=SAM1_PROMPT_DIM, image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size), mask_in_chans=16),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=2, embedding_dim=SAM1_PROMPT_DIM, mlp_dim=2048,
                                            num_heads=8),
            transformer_dim=SAM1_PROMPT_DIM, iou_head_depth=3, iou_head_hidden_dim=256))
    return sam.eval()


def sam1_steps(sam, image_size: int):
    """SamPredictor's set_image (preprocess + image encoder) and predict (one click, 3 masks,
    upscaled to the image and thresholded) on a [1,3,S,S] pixel-valued image."""
    image = torch.rand(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    image = image * 255
    click = torch.tensor([[[image_size * 0.4, image_size * 0.6]]])
    label = torch.tensor([[1]])
    size = (image_size, image_size)

    def encode():
        return sam.image_encoder(sam.preprocess(image))

    def decode(embedding):
        sparse, dense = sam.prompt_encoder(points=(click, label), boxes=None, masks=None)
        low_res, ious = sam.mask_decoder(
            image_embeddings=embedding, image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
        return low_res, ious

    def postprocess(low_res):
        return sam.postprocess_masks(low_res, size, size) > sam.mask_threshold

    return encode, decode, postprocess


def sam2_image_steps(model, image_size: int):
    """SAM2ImagePredictor's set_image and _predict on the model directly (the predictor imports
    torchvision, and its feature sizes are fixed to 1024's), on a normalised [1,3,S,S] image."""
    image = torch.randn(1, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    click = torch.tensor([[[image_size * 0.4, image_size * 0.6]]])
    label = torch.tensor([[1]], dtype=torch.int32)
    sizes = [(image_size // s, image_size // s) for s in (4, 8, 16)]

    def encode():
        backbone_out = model.forward_image(image)
        _, feats, _, _ = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + model.no_mem_embed
        maps = [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats, sizes)]
        return maps[-1], maps[:-1]

    def decode(features):
        image_embed, high_res = features
        sparse, dense = model.sam_prompt_encoder(points=(click, label), boxes=None, masks=None)
        low_res, ious, _, _ = model.sam_mask_decoder(
            image_embeddings=image_embed, image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=True, repeat_image=False, high_res_features=high_res)
        return low_res, ious

    def postprocess(low_res):
        masks = torch.nn.functional.interpolate(low_res, (image_size, image_size),
                                                mode="bilinear", align_corners=False)
        return masks > 0.0

    return encode, decode, postprocess


def time_image_mode(encode, decode, postprocess, repeats: int, warmup: int) -> dict:
    """Warm-up calls, then ``repeats`` timed set_image + predict pairs (ms per step)."""
    if repeats < 1 or warmup < 0:
        raise OfficialSideError(f"--repeats/--warmup | received {repeats}/{warmup}; expected "
                                "repeats >= 1 and warmup >= 0")
    times: dict[str, list[float]] = {"encoder": [], "decoder": [], "postprocess": [], "total": []}
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        features = encode()
        t1 = time.perf_counter()
        low_res, _ = decode(features)
        t2 = time.perf_counter()
        postprocess(low_res)
        t3 = time.perf_counter()
        if i >= warmup:
            for key, seconds in (("encoder", t1 - t0), ("decoder", t2 - t1),
                                 ("postprocess", t3 - t2), ("total", t3 - t0)):
                times[key].append(seconds * 1e3)
    return {key: percentiles(values) for key, values in times.items()}


def image_flops(encode, decode) -> dict:
    features = encode()
    return {"encoder": flops_of(encode), "decoder": flops_of(lambda: decode(features))}


def measure_image_mode(args, encode, decode, postprocess, model, image_encoder, decoder_modules) -> dict:
    """FLOPs (counted once) and timings of an image mode, with the parameter counts and peak RSS
    that every image-mode record carries."""
    flops = image_flops(encode, decode)
    ms = time_image_mode(encode, decode, postprocess, args.repeats, args.warmup)
    return {
        "repeats": args.repeats, "warmup": args.warmup, "ms": ms, "flops": flops,
        "parameters": {"total": parameter_count(model),
                       "image_encoder": parameter_count(image_encoder),
                       "decoder": sum(parameter_count(m) for m in decoder_modules)},
        "peak_rss_mb": round(peak_rss_mb(), 2),
    }


def run_sam_image(args) -> dict:
    with torch.inference_mode():
        sam = build_sam1(args.model, args.image_size)
        encode, decode, postprocess = sam1_steps(sam, args.image_size)
        measured = measure_image_mode(args, encode, decode, postprocess, sam, sam.image_encoder, (sam.prompt_encoder, sam.mask_decoder))
    return {
        "peer": f"segment_anything {package_version('segment_anything')} Sam {args.model} "
                "(SamPredictor steps)",
        "model": args.model, "image_size": args.image_size, **environment(args.threads),
        **measured,
        "notes": [
            "float32 on CPU, random weights (torch.manual_seed(0), default init): timing does not "
            "depend on the values.",
            "Built like segment_anything.build_sam._build_sam with img_size = image_size "
            "(embedding grid image_size/16); the real modeling modules run, loaded without the "
            "package __init__ (which needs torchvision).",
            "encoder = Sam.preprocess (normalise, pad) + image_encoder, as SamPredictor.set_image; "
            "decoder = prompt_encoder + mask_decoder for one click, multimask_output=True; "
            "postprocess = masks upscaled to the image and thresholded (predict_torch's rest); "
            "total = all three. The uint8 -> resized tensor step of set_image is not included.",
            FLOPS_NOTE,
        ],
    }


def run_sam2_image(args) -> dict:
    from sam2.build_sam import build_sam2

    model = build_sam2(config_file(args.config), ckpt_path=None, device="cpu", mode="eval",
                       hydra_overrides_extra=size_overrides(args.image_size))
    if args.weights is not None:
        load_weights(model, args.weights)
    with torch.inference_mode():
        encode, decode, postprocess = sam2_image_steps(model.eval(), args.image_size)
        measured = measure_image_mode(args, encode, decode, postprocess, model, model.image_encoder,
                                      (model.sam_prompt_encoder, model.sam_mask_decoder))
    return {
        "peer": f"sam2 {package_version('sam2')} SAM2ImagePredictor steps",
        "config": args.config, "config_file": config_file(args.config),
        "image_size": args.image_size, **environment(args.threads),
        "weights": str(args.weights) if args.weights else "default init (timing only)",
        **measured,
        "notes": [
            "float32 on CPU. SAM2ImagePredictor itself is not used: it imports torchvision "
            "(absent) and fixes its feature sizes to 1024's; its set_image and _predict steps "
            "run on the model instead (build_sam2 with apply_postprocessing=True, as "
            "SAM2ImagePredictor.from_pretrained builds it).",
            "encoder = forward_image + _prepare_backbone_features + no_mem_embed + reshape "
            "(set_image); decoder = sam_prompt_encoder + sam_mask_decoder for one click, "
            "multimask_output=True, with the high-resolution features (_predict); postprocess "
            "= masks upscaled to the image and thresholded. The input is an already normalised "
            "[1,3,S,S] tensor (the torchvision transforms are not included).",
            FLOPS_NOTE,
        ],
    }


# --------------------------------------------------------------------------------------
# flops: the official stages of one tracked frame
# --------------------------------------------------------------------------------------

MEMORIES = 7  # 1 prompted frame + 6 recent ones (num_maskmem)
POINTERS = 16  # max_obj_ptrs_in_encoder


def tracked_frame_calls(model, image_size: int) -> dict:
    """One call per stage of a tracked frame (batch 1) on seeded inputs of the right shapes."""
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, image_size, image_size, generator=gen)
    _, feats, pos, sizes = model._prepare_backbone_features(model.forward_image(image))
    hw = sizes[-1][0] * sizes[-1][1]
    ptr_tokens = POINTERS * (model.hidden_dim // model.mem_dim)
    memory = torch.randn(MEMORIES * hw + ptr_tokens, 1, model.mem_dim, generator=gen)
    memory_pos = torch.randn_like(memory)
    pix_feat = feats[-1].permute(1, 2, 0).view(1, model.hidden_dim, *sizes[-1])
    high_res = [f.permute(1, 2, 0).view(1, -1, *s) for f, s in zip(feats[:-1], sizes[:-1])]
    click = {"point_coords": torch.tensor([[[image_size * 0.4, image_size * 0.6]]]),
             "point_labels": torch.tensor([[1]], dtype=torch.int32)}
    masks = torch.randn(1, 1, image_size, image_size, generator=gen)
    return {
        "image_encoder": lambda: model.forward_image(image),
        "memory_attention": lambda: model.memory_attention(
            curr=feats[-1:], curr_pos=pos[-1:], memory=memory, memory_pos=memory_pos,
            num_obj_ptr_tokens=ptr_tokens),
        "mask_decoder": lambda: model._forward_sam_heads(
            backbone_features=pix_feat, point_inputs=click, high_res_features=high_res,
            multimask_output=True),
        "memory_encoder": lambda: model._encode_new_memory(
            current_vision_feats=feats, feat_sizes=sizes, pred_masks_high_res=masks,
            object_score_logits=torch.ones(1, 1), is_mask_from_pts=False),
    }


def run_flops(args) -> dict:
    from sam2.build_sam import build_sam2

    model = build_sam2(config_file(args.config), ckpt_path=None, device="cpu", mode="eval",
                       hydra_overrides_extra=size_overrides(args.image_size)).eval()
    with torch.inference_mode():
        calls = tracked_frame_calls(model, args.image_size)
        flops = {stage: flops_of(call) for stage, call in calls.items()}
    return {
        "peer": f"sam2 {package_version('sam2')} SAM2Base stages",
        "config": args.config, "config_file": config_file(args.config),
        "image_size": args.image_size, **environment(args.threads),
        "flops": flops, "flops_total": sum(flops.values()),
        "parameters": {name: parameter_count(getattr(model, name)) for name in STAGE_MODULES},
        "notes": [
            FLOPS_NOTE + " One object on one tracked frame.",
            f"image_encoder = forward_image (trunk, neck, conv_s0/s1); memory_attention = the "
            f"module with {MEMORIES} memories and {POINTERS} object pointers "
            f"({POINTERS} x hidden_dim/mem_dim tokens); mask_decoder = _forward_sam_heads with one "
            "click, multimask_output=True (prompt encoder, mask decoder, object pointer); "
            "memory_encoder = _encode_new_memory.",
        ],
    }


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--out", type=Path, required=True, help="the JSON result file")
        p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")

    video = commands.add_parser("video", help="SAM2VideoPredictor on a folder of JPEG frames")
    video.add_argument("--config", required=True, help="e.g. sam2.1_hiera_tiny")
    video.add_argument("--image-size", type=int, default=1024)
    video.add_argument("--weights", type=Path, required=True, help="torch.save({'model': sd})")
    video.add_argument("--frames-dir", type=Path, required=True)
    video.add_argument("--prompts", type=Path, required=True)
    video.add_argument("--frames", type=int, default=None, help="frames to track, prompted one "
                       "included (default: to the end of the folder)")
    common(video)

    sam = commands.add_parser("sam-image", help="SAM 1 image mode (set_image + one click)")
    sam.add_argument("--model", required=True, choices=sorted(SAM1_MODELS))
    sam.add_argument("--image-size", type=int, default=1024)
    sam.add_argument("--repeats", type=int, default=10)
    sam.add_argument("--warmup", type=int, default=1)
    common(sam)

    sam2 = commands.add_parser("sam2-image", help="SAM 2 image mode (set_image + one click)")
    sam2.add_argument("--config", required=True)
    sam2.add_argument("--image-size", type=int, default=1024)
    sam2.add_argument("--weights", type=Path, default=None, help="default: default init")
    sam2.add_argument("--repeats", type=int, default=10)
    sam2.add_argument("--warmup", type=int, default=1)
    common(sam2)

    flops = commands.add_parser("flops", help="FLOPs of the official stages of a tracked frame")
    flops.add_argument("--config", required=True)
    flops.add_argument("--image-size", type=int, default=1024)
    common(flops)
    args = parser.parse_args(argv)
    if getattr(args, "frames", None) is not None and args.frames < 1:
        parser.error(f"--frames | received {args.frames}; expected at least 1")
    if args.threads < 1:
        parser.error(f"--threads | received {args.threads}; expected at least 1")
    return args


COMMANDS = {"video": run_video, "sam-image": run_sam_image, "sam2-image": run_sam2_image,
            "flops": run_flops}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        result = COMMANDS[args.command](args)
    except OfficialSideError as err:
        print(f"official_side: {err}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"official_side {args.command}: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
