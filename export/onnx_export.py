"""Export a SAM 2 model as the four ONNX graphs plus manifest.json, and check each graph before
reporting success: onnx.checker, then ONNX Runtime (CPU) against PyTorch on the same inputs.

Static shapes everywhere except the symbolic axes of `streamsam.contracts` (frames, objects, points, slots):
TensorRT profiles and the runtime's preallocated buffers are derived from the same contracts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from streamsam.contracts import (
    FRAMES,
    IMAGE_ENCODER,
    MASK_DECODER,
    MEMORY_ATTENTION,
    MEMORY_ENCODER,
    MEMORY_SLOTS,
    OBJECTS,
    POINTER_SLOTS,
    POINTS,
    GraphContract,
    ModelDims,
    graph_contracts,
)
from streamsam.errors import ExportError, require
from streamsam.manifest import GraphFile, Manifest, file_sha256
from streamsam.version import __version__

from .checkpoint import load_checkpoint
from .config import Sam2Config
from .graphs.image_encoder import ImageEncoderGraph
from .graphs.mask_decoder import MaskDecoderGraph
from .graphs.memory_attention import MemoryAttentionGraph
from .graphs.memory_encoder import MemoryEncoderGraph
from .modeling.sam2_model import Sam2Model
from .weight_storage import round_parameters_to_float16, store_float16_initializers

GRAPH_WRAPPERS: dict[str, Callable[[Sam2Model], nn.Module]] = {
    IMAGE_ENCODER: ImageEncoderGraph,
    MEMORY_ATTENTION: MemoryAttentionGraph,
    MASK_DECODER: MaskDecoderGraph,
    MEMORY_ENCODER: MemoryEncoderGraph,
}

# Parity bars of an exported graph against PyTorch (FP32, ONNX Runtime CPU).
FEATURE_TOLERANCE = 1e-3  # max abs error of features, scores and pointers
MASK_SIGN_MARGIN = 1e-3  # mask logits must agree in sign except this close to zero


@dataclass(frozen=True)
class ExportOptions:
    opset: int = 17
    # Prompted-frame memories held per object; the memory bank's FIFO capacity. Memory attention
    # takes this many + (num_maskmem - 1) memory slots and this many + 15 pointer slots.
    max_prompted_frames: int = 2
    check: bool = True  # run onnx.checker and ONNX Runtime parity before reporting success
    # Sizes of the symbolic axes for the example inputs (traced, then checked on ONNX Runtime).
    example_frames: int = 2
    example_objects: int = 2
    example_points: int = 3
    # "float16": parameters rounded to float16 and stored so (half the size), computed in float32
    # (export/weight_storage.py); the bundled demo model ships this way.
    weights: str = "float32"

    def __post_init__(self) -> None:
        if self.weights not in ("float32", "float16"):
            raise ValueError(f"ExportOptions | received weights={self.weights!r}; expected 'float32' or 'float16'")
        if self.max_prompted_frames < 1:
            raise ValueError(f"ExportOptions | received max_prompted_frames={self.max_prompted_frames}; expected >= 1")


def model_dims(config: Sam2Config, max_prompted_frames: int) -> ModelDims:
    return ModelDims(
        image_size=config.image_size,
        d_model=config.d_model,
        mem_dim=config.mem_dim,
        num_maskmem=config.num_maskmem,
        memory_slots=max_prompted_frames + config.num_maskmem - 1,
        pointer_slots=max_prompted_frames + config.max_obj_ptrs_in_encoder - 1,
    )


def example_inputs(
    contract: GraphContract, dims: ModelDims, objects: int, points: int, seed: int = 0, slots: dict[str, int] | None = None, frames: int = 2
) -> dict[str, np.ndarray]:
    """Plausible inputs for tracing and checking a graph: every branch of the graph is exercised
    (valid and empty slots, objects present and absent, multimask on and off, with and without a mask,
    rows reading every frame). Memory attention's slots at capacity unless `slots` says how many."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in contract.inputs:
        shape = spec.concrete_shape(**{FRAMES: frames, OBJECTS: objects, POINTS: points}, **(slots or dims.slot_capacity))
        name = spec.name
        if name == "row_frame":
            value = (np.arange(shape[0]) + 1) % frames  # not in order: a row's frame is not its index
        elif name == "point_coords":
            value = rng.uniform(0, dims.image_size, shape)
        elif name == "point_labels":
            value = np.resize(np.array([1, 0, 2, 3, -1]), shape)
        elif name == "memory_tpos":
            value = np.resize(np.arange(dims.memory_slots) % dims.num_maskmem, shape)
        elif name in ("memory_valid", "obj_ptr_valid"):
            value = rng.random(shape) < 0.7
            value[:, 0] = True
        elif name == "obj_ptr_tpos":
            value = rng.uniform(-1, 1, shape)
        elif name in ("multimask_output", "is_mask_from_pts"):
            value = np.arange(shape[0]) % 2 == 0
        elif name == "has_mask_input":
            value = (np.arange(shape[0]) % 2 == 1)[:, None]
        elif name == "object_score_logits":
            value = np.where(np.arange(shape[0]) % 2 == 0, 2.0, -2.0)[:, None]
        elif name in ("high_res_masks", "mask_input"):
            value = rng.normal(0, 4, shape)
        else:
            value = rng.normal(0, 1, shape)
        out[name] = np.ascontiguousarray(value, dtype=spec.dtype)
    return out


def _dynamic_axes(contract: GraphContract) -> dict[str, dict[int, str]]:
    axes = {}
    for spec in contract.inputs + contract.outputs:
        symbolic = {i: a for i, a in enumerate(spec.shape) if isinstance(a, str)}
        if symbolic:
            axes[spec.name] = symbolic
    return axes




def export_graph(wrapper: nn.Module, contract: GraphContract, inputs: dict[str, np.ndarray], path: Path, opset: int) -> None:
    args = tuple(torch.from_numpy(inputs[name]) for name in contract.input_names)
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of torch.export, but it is the one that
        # gives static, TensorRT-friendly graphs for these models today (docs/design.md, "Engines").
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=contract.input_names,
            output_names=contract.output_names,
            dynamic_axes=_dynamic_axes(contract),
            opset_version=opset,
            dynamo=False,
            do_constant_folding=True,
        )


def fewer_slots(dims: ModelDims) -> dict[str, int]:
    """A slot count below capacity, for checking that an exported graph kept its slot axes symbolic
    (the runtime passes only the filled slots on the CPU)."""
    return {MEMORY_SLOTS: min(2, dims.memory_slots), POINTER_SLOTS: min(3, dims.pointer_slots)}


def check_graph(path: Path, wrapper: nn.Module, contract: GraphContract, cases: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """onnx.checker, then ONNX Runtime CPU against PyTorch on each case of inputs; returns the max abs
    error per output over the cases."""
    onnx = require("onnx", "export")
    ort = require("onnxruntime", "export")
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{contract.name} | onnx.checker rejected {path}: {exc}") from exc
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    io = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
    if io != (contract.input_names, contract.output_names):
        raise ExportError(
            f"{contract.name} | received a graph with inputs {io[0]} and outputs {io[1]}; expected "
            f"{contract.input_names} and {contract.output_names} (streamsam.contracts)"
        )
    errors = {spec.name: 0.0 for spec in contract.outputs}
    for inputs in cases:
        for name, error in _compare(session, wrapper, contract, inputs).items():
            errors[name] = max(errors[name], error)
    return errors


def _compare(session, wrapper: nn.Module, contract: GraphContract, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    got = dict(zip(contract.output_names, session.run(contract.output_names, inputs)))
    with torch.no_grad():
        expected = wrapper(*(torch.from_numpy(inputs[n]) for n in contract.input_names))
    expected = expected if isinstance(expected, tuple) else (expected,)
    errors = {}
    for spec, want in zip(contract.outputs, expected):
        want = want.numpy()
        have = got[spec.name]
        if have.shape != want.shape:
            raise ExportError(f"{contract.name}.{spec.name} | received shape {have.shape} from ONNX Runtime; expected {want.shape}")
        errors[spec.name] = float(np.abs(have - want).max()) if want.size else 0.0
        if "masks" in spec.name:
            flipped = (np.sign(have) != np.sign(want)) & (np.abs(want) > MASK_SIGN_MARGIN)
            if flipped.any():
                raise ExportError(
                    f"{contract.name}.{spec.name} | received {int(flipped.sum())} mask logits whose sign differs "
                    f"from PyTorch beyond {MASK_SIGN_MARGIN} of zero; expected none"
                )
        elif errors[spec.name] > FEATURE_TOLERANCE:
            raise ExportError(
                f"{contract.name}.{spec.name} | received max abs error {errors[spec.name]:.3g} between ONNX Runtime "
                f"and PyTorch; expected <= {FEATURE_TOLERANCE}"
            )
    return errors


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"streamsam": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def export_model(
    model: Sam2Model,
    out_dir: str | Path,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[str], None] | None = print,
) -> Manifest:
    """Write the four graphs and manifest.json for `model` into `out_dir`."""
    require("onnx", "export")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    if options.weights == "float16":
        model = round_parameters_to_float16(copy.deepcopy(model))
    config = model.config
    dims = model_dims(config, options.max_prompted_frames)
    graphs: dict[str, GraphFile] = {}
    for index, (name, contract) in enumerate(graph_contracts(dims).items(), start=1):
        start = time.perf_counter()
        wrapper = GRAPH_WRAPPERS[name](model).eval()
        inputs = example_inputs(contract, dims, options.example_objects, options.example_points, frames=options.example_frames)
        path = out / f"{name}.onnx"
        export_graph(wrapper, contract, inputs, path, options.opset)
        if options.weights == "float16":
            store_float16_initializers(path)
        exported = time.perf_counter() - start
        errors = {}
        if options.check:
            cases = [inputs]
            if MEMORY_SLOTS in contract.axes:
                cases.append(example_inputs(contract, dims, options.example_objects, options.example_points, seed=1, slots=fewer_slots(dims),
                                            frames=options.example_frames))  # fmt: skip
            # One frame: what a single stream passes (the frames axis stayed symbolic).
            cases.append(example_inputs(contract, dims, options.example_objects, options.example_points, seed=2, frames=1))
            errors = check_graph(path, wrapper, contract, cases)
        graphs[name] = GraphFile(file=path.name, sha256=file_sha256(path), size_bytes=path.stat().st_size, max_abs_error=errors)
        if progress is not None:
            checked = f", ONNX Runtime max abs error {max(errors.values()):.2g}" if errors else ", not checked"
            progress(
                f"[{index}/4] {name}: {path.stat().st_size / 1e6:.1f} MB, exported in {exported:.1f} s"
                f"{checked} ({time.perf_counter() - start:.1f} s in all)"
            )
    # Through JSON once, so the manifest in memory equals the one read back (tuples become lists).
    config_data = json.loads(json.dumps(dataclasses.asdict(config)))
    config_data["max_prompted_frames"] = options.max_prompted_frames
    config_data["stored_weights"] = options.weights
    manifest = Manifest(
        config=config_data,
        dims=dims,
        graphs=graphs,
        opset=options.opset,
        versions=_versions(),
        constants={
            "mask_downsample": {
                "weight": model.mask_downsample.weight.detach().reshape(4, 4).tolist(),
                "bias": float(model.mask_downsample.bias.detach()[0]),
            },
            # the pointer of an absent object; a mask prompt with an empty mask gets it
            "no_obj_ptr": model.no_obj_ptr.detach().reshape(-1).tolist(),
            # what memory attention adds to a frame with no memory (image mode, first prompts)
            "no_mem_embed": model.no_mem_embed.detach().reshape(-1).tolist(),
        },
    )
    manifest.write(out)
    return manifest


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    config: str | None = None,
    image_size: int = 1024,
    options: ExportOptions = ExportOptions(),
    progress: Callable[[str], None] | None = print,
) -> Manifest:
    """`streamsam export`: load an official checkpoint and write its graphs and manifest."""
    model = load_checkpoint(checkpoint, config=config, image_size=image_size)
    if progress is not None:
        progress(f"loaded {checkpoint} as {model.config.name} at {image_size}x{image_size}")
    return export_model(model, out_dir, options, progress)
