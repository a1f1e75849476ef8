"""Stage-by-stage comparison of our graphs with the official golden fixtures in this folder.

Shared by tests/test_golden_parity.py (which asserts the bars) and by the report:

    python tests/golden/parity.py            # writes benchmarks/results/golden_parity.md

Each golden case becomes our graph's contract inputs plus the official outputs to compare with.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from streamsam.contracts import LABEL_PADDING, NO_OBJECT_LOGIT, graph_contracts
from streamsam.export.config import get_config
from streamsam.export.modeling.sam2_model import Sam2Model
from streamsam.export.onnx_export import GRAPH_WRAPPERS, ExportOptions, export_model, model_dims
from streamsam.export.random_weights import seeded_state_dict

GOLDEN = Path(__file__).resolve().parent
MAX_PROMPTED_FRAMES = 2
OBJECTS = 2  # every golden case holds two objects
# fixture folder -> (our config, image size)
CONFIGS = {"reduced": ("reduced", None), "reduced_sam2": ("reduced_sam2", None), "tiny": ("sam2.1_hiera_tiny", 256)}


@dataclass(frozen=True)
class Expected:
    ours: str  # our output name
    official: np.ndarray
    is_mask: bool = False
    channels: int | None = None  # compare only the first channels of ours (single-mask rows)
    gate: bool = False  # apply the official no-object gating (by our object score) before comparing


@dataclass(frozen=True)
class Case:
    stage: str
    name: str
    inputs: dict[str, np.ndarray]
    expected: tuple[Expected, ...]


@lru_cache(maxsize=None)
def golden_model(name: str) -> Sam2Model:
    config_name, size = CONFIGS[name]
    model = Sam2Model(get_config(config_name, size))
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    return model.eval()


def load(name: str, stage: str):
    path = GOLDEN / name / f"{stage}.npz"
    return np.load(path) if path.exists() else None


def _case_names(z) -> list[str]:
    return sorted({k.split("/")[0] for k in z.files if "/out/" in k})


def image_encoder_cases(name: str) -> list[Case]:
    z = load(name, "image_encoder")
    if z is None:
        return []
    pairs = (("high_res_feats_0", "backbone_fpn_0"), ("high_res_feats_1", "backbone_fpn_1"), ("image_embed", "backbone_fpn_2"))
    return [Case("image_encoder", "main", {"image": z["main/in/image"]}, tuple(Expected(o, z[f"main/out/{f}"]) for o, f in pairs))]


def _memory_attention_inputs(z, case: str, model: Sam2Model) -> dict[str, np.ndarray]:
    """Fixed-capacity slots holding what the official code selected. Valid slots are written in
    reverse order and empty slots hold noise: neither may change the result."""
    config = model.config
    g, d = config.feat_size, config.d_model
    slots = MAX_PROMPTED_FRAMES + config.num_maskmem - 1
    pointer_slots = MAX_PROMPTED_FRAMES + config.max_obj_ptrs_in_encoder - 1
    rng = np.random.default_rng(3)
    inputs = {
        "image_embed": z["shared/vision_feats"],
        "row_frame": np.zeros((OBJECTS,), np.int32),  # one frame: every row reads it
        "memory": rng.normal(size=(OBJECTS, slots, config.mem_dim, g, g)).astype(np.float32),
        "memory_tpos": np.zeros((OBJECTS, slots), np.int32),
        "memory_valid": np.zeros((OBJECTS, slots), bool),
        "obj_ptrs": rng.normal(size=(OBJECTS, pointer_slots, d)).astype(np.float32),
        "obj_ptr_tpos": np.zeros((OBJECTS, pointer_slots), np.float32),
        "obj_ptr_valid": np.zeros((OBJECTS, pointer_slots), bool),
    }
    if f"{case}/selected/memory_frames" not in z.files:  # an initial prompted frame: no memory
        return inputs
    frames, tpos_index = z[f"{case}/selected/memory_frames"], z[f"{case}/selected/memory_tpos_index"]
    for slot, (frame, index) in enumerate(zip(frames[::-1], tpos_index[::-1])):
        inputs["memory"][:, slot] = z[f"{case}/in/frame_{frame}/maskmem_features"]
        # the official maskmem_tpos_enc index: num_maskmem - 1 for prompted frames, distance - 1 else
        inputs["memory_tpos"][:, slot] = 0 if index == config.num_maskmem - 1 else index + 1
        inputs["memory_valid"][:, slot] = True
    ptr_frames = z[f"{case}/selected/ptr_frames"]
    key = f"{case}/selected/ptr_tpos_normalized"
    normalized = z[key] if key in z.files else np.zeros(len(ptr_frames), np.float32)
    for slot, (frame, tpos) in enumerate(zip(ptr_frames[::-1], normalized[::-1])):
        inputs["obj_ptrs"][:, slot] = z[f"{case}/in/frame_{frame}/obj_ptr"]
        inputs["obj_ptr_tpos"][:, slot] = tpos
        inputs["obj_ptr_valid"][:, slot] = True
    return inputs


def memory_attention_cases(name: str) -> list[Case]:
    z = load(name, "memory_attention")
    if z is None:
        return []
    model = golden_model(name)
    return [
        Case(
            "memory_attention",
            case,
            _memory_attention_inputs(z, case, model),
            (Expected("conditioned_embed", z[f"{case}/out/pix_feat_with_mem"]),),
        )
        for case in _case_names(z)
    ]


def _decoder_inputs(z, model: Sam2Model, coords, labels, mask, multimask: bool) -> dict[str, np.ndarray]:
    lr = model.config.low_res_mask_size
    if coords is None:  # no points: one padding point at (0, 0), as the official code
        coords, labels = np.zeros((OBJECTS, 1, 2), np.float32), np.full((OBJECTS, 1), LABEL_PADDING, np.int32)
    has_mask = np.full((OBJECTS, 1), 0.0 if mask is None else 1.0, np.float32)
    return {
        "conditioned_embed": z["shared/backbone_features"],
        "high_res_feats_0": z["shared/high_res_feat_s0"],
        "row_frame": np.zeros((OBJECTS,), np.int32),
        "high_res_feats_1": z["shared/high_res_feat_s1"],
        "point_coords": coords,
        "point_labels": labels.astype(np.int32),
        "mask_input": np.zeros((OBJECTS, 1, lr, lr), np.float32) if mask is None else mask,
        "has_mask_input": has_mask,
        "multimask_output": np.full((OBJECTS,), multimask),
    }


def mask_decoder_cases(name: str) -> list[Case]:
    """`_forward_sam_heads` cases. (`mask_as_output` is the runtime's mask-prompt rule, and its
    decoder part is checked by test_golden_parity on its own.)"""
    z = load(name, "mask_decoder")
    if z is None:
        return []
    model = golden_model(name)
    cases = []
    for case in _case_names(z):
        if case == "mask_as_output":
            continue
        get = lambda k: z[f"{case}/in/{k}"] if f"{case}/in/{k}" in z.files else None  # noqa: E731
        multimask = bool(z[f"{case}/in/multimask_output"])
        inputs = _decoder_inputs(z, model, get("point_coords"), get("point_labels"), get("mask_inputs"), multimask)
        m = 3 if multimask else 1
        out = lambda k: z[f"{case}/out/{k}"]  # noqa: E731
        expected = [
            # ours are ungated (image-predictor semantics); the official video path gates them
            Expected("low_res_multimasks", out("low_res_multimasks"), True, m, gate=True),
            Expected("multimask_ious", out("ious"), False, m),
            Expected("low_res_masks", out("low_res_masks"), True),
            Expected("obj_ptr", out("obj_ptr")),
            Expected("object_score_logits", out("object_score_logits")),
        ]
        if f"{case}/out/high_res_masks" in z.files:
            expected.append(Expected("high_res_masks", out("high_res_masks"), True))
        cases.append(Case("mask_decoder", case, inputs, tuple(expected)))
    return cases


def memory_encoder_cases(name: str) -> list[Case]:
    z = load(name, "memory_encoder")
    if z is None:
        return []
    cases = []
    for case in _case_names(z):
        inputs = {
            "image_embed": z["shared/vision_feats"],
            "row_frame": np.zeros((OBJECTS,), np.int32),  # one frame: every row reads it
            "high_res_masks": z[f"{case}/in/pred_masks_high_res"],
            "object_score_logits": z[f"{case}/in/object_score_logits"],
            "is_mask_from_pts": np.full((OBJECTS,), bool(z[f"{case}/in/is_mask_from_pts"])),
        }
        cases.append(Case("memory_encoder", case, inputs, (Expected("maskmem_features", z[f"{case}/out/maskmem_features"]),)))
    return cases


STAGE_CASES = {
    "image_encoder": image_encoder_cases,
    "memory_attention": memory_attention_cases,
    "mask_decoder": mask_decoder_cases,
    "memory_encoder": memory_encoder_cases,
}


def run_torch(name: str, case: Case) -> dict[str, np.ndarray]:
    model = golden_model(name)
    contract = graph_contracts(model_dims(model.config, MAX_PROMPTED_FRAMES))[case.stage]
    with torch.no_grad():
        outs = GRAPH_WRAPPERS[case.stage](model)(*(torch.from_numpy(case.inputs[n]) for n in contract.input_names))
    outs = outs if isinstance(outs, tuple) else (outs,)
    return {spec.name: out.numpy() for spec, out in zip(contract.outputs, outs)}


@lru_cache(maxsize=None)
def onnx_sessions(name: str, out_dir: str):
    import onnxruntime as ort

    manifest = export_model(golden_model(name), Path(out_dir) / name, ExportOptions(max_prompted_frames=MAX_PROMPTED_FRAMES), progress=None)
    return {g: ort.InferenceSession(str(Path(out_dir) / name / f.file), providers=["CPUExecutionProvider"]) for g, f in manifest.graphs.items()}


def run_onnx(name: str, case: Case, out_dir: str) -> dict[str, np.ndarray]:
    session = onnx_sessions(name, out_dir)[case.stage]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, case.inputs)))


def compare(got: dict[str, np.ndarray], expected: Expected, sign_margin: float | None = None) -> tuple[float, int]:
    """(max abs error, mask logits of the wrong sign beyond `sign_margin` of zero)."""
    have = got[expected.ours]
    if expected.channels is not None:
        have = have[:, : expected.channels]
    if expected.gate:
        present = got["object_score_logits"][:, :, None, None] > 0
        have = np.where(present, have, NO_OBJECT_LOGIT)
    if have.shape != expected.official.shape:
        raise AssertionError(f"{expected.ours}: shape {have.shape} vs official {expected.official.shape}")
    err = float(np.abs(have - expected.official).max())
    flipped = 0
    if expected.is_mask and sign_margin is not None:
        decided = np.abs(expected.official) > sign_margin
        flipped = int((np.sign(have[decided]) != np.sign(expected.official[decided])).sum())
    return err, flipped


def report(out_path: Path) -> str:
    rows = ["| fixture | stage | case | output | PyTorch max abs err | ONNX Runtime max abs err | ORT mask signs flipped (>1e-3 from 0) |", "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            for stage, make in STAGE_CASES.items():
                for case in make(name):
                    got_t, got_o = run_torch(name, case), run_onnx(name, case, tmp)
                    for e in case.expected:
                        et, _ = compare(got_t, e)
                        eo, flipped = compare(got_o, e, sign_margin=1e-3)
                        rows.append(f"| {name} | {stage} | {case.name} | {e.ours} | {et:.2e} | {eo:.2e} | {flipped if e.is_mask else '-'} |")
    text = (
        "# Golden parity: our graphs against the official sam2 1.1.0, stage by stage\n\n"
        "Command: `python tests/golden/parity.py` (CPU, FP32; fixtures and weights: tests/golden/README.md).\n"
        f"torch {torch.__version__}. Bars: PyTorch <= 1e-4; ONNX Runtime features <= 1e-3, mask logits equal in sign "
        "except within 1e-3 of zero.\n\n" + "\n".join(rows) + "\n"
    )
    out_path.write_text(text)
    return text


if __name__ == "__main__":
    target = GOLDEN.parents[1] / "benchmarks" / "results" / "golden_parity.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    print(report(target))
    sys.exit(0)
