"""Recover a packaged demo model's state dict from its ONNX graphs (the training checkpoint is not in
the repository), so the demo can be re-exported when the graph contract changes.

    python -m training.recover_demo_state --graphs runtime/demo_model --out demo_model.pt
    python -m training.package_demo --checkpoint demo_model.pt --out DIR   # the usual export path

The ONNX initializers keep the PyTorch parameter names, except where the exporter transformed them.
A seeded model of the same config, exported by this exporter (the same contract as the graphs),
names every initializer the same way, and its values say which parameter each one is: a parameter
as it is, transposed (a Linear's weight folded into a MatMul), a run inside a folded constant (the
decoder's tokens, concatenated), or deduplicated (an Identity of an equal parameter). The graphs'
values at the same places are the demo's parameters. `no_obj_ptr`, `no_mem_embed` and
`mask_downsample` come from the manifest's constants; `no_mem_pos_enc`, read by no graph, is zero.
Run it on graphs written by this exporter's contract: the matching relies on identical tracing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

GRAPHS = ("image_encoder", "memory_attention", "mask_decoder", "memory_encoder")
UNREAD = ("no_mem_pos_enc",)  # parameters no exported graph reads


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    out = {}
    for init in onnx.load(str(path)).graph.initializer:
        value = numpy_helper.to_array(init)
        out[init.name.removesuffix("__float16")] = value.astype(np.float32) if value.dtype == np.float16 else value
    return out


def recover_state_dict(graphs: Path, work: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The parameters of the model in `graphs` and, for each, where it was found."""
    import onnx
    import torch

    from streamsam.export.config import get_config
    from streamsam.export.modeling.sam2_model import Sam2Model
    from streamsam.export.onnx_export import ExportOptions, export_model
    from streamsam.export.random_weights import seeded_state_dict
    from streamsam.export.weight_storage import round_parameters_to_float16

    manifest = json.loads((graphs / "manifest.json").read_text())
    model = Sam2Model(get_config(manifest["config"]["name"]))
    model.load_state_dict(seeded_state_dict(model.state_dict()))
    round_parameters_to_float16(model)
    options = ExportOptions(weights=manifest["config"].get("stored_weights", "float32"),
                            max_prompted_frames=manifest["config"]["max_prompted_frames"], check=False)  # fmt: skip
    export_model(model.eval(), work, options, progress=None)
    seeded_params = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    found: dict[str, np.ndarray] = {}
    how: dict[str, str] = {}
    for graph in GRAPHS:
        seeded, shipped = _initializers(work / f"{graph}.onnx"), _initializers(graphs / f"{graph}.onnx")
        for name, value in seeded.items():
            if name not in shipped:
                continue
            for key, p in seeded_params.items():
                for form, t in (("as stored", p), ("transposed", p.T if p.ndim == 2 else None)):
                    if t is None or t.size != value.size or t.size < 2 or not np.array_equal(t.reshape(value.shape), value):
                        continue
                    got = shipped[name].reshape(t.shape)
                    found[key] = (got.T if form == "transposed" else got).reshape(p.shape).copy()
                    how[key] = f"{graph}: {name} ({form})"
    missing = [k for k in seeded_params if k not in found]
    for graph in GRAPHS:  # runs inside folded constants
        seeded, shipped = _initializers(work / f"{graph}.onnx"), _initializers(graphs / f"{graph}.onnx")
        for key in list(missing):
            p = seeded_params[key].ravel()
            for name, value in seeded.items():
                flat = value.ravel()
                if name not in shipped or flat.size < p.size or value.dtype != np.float32 or (p.size < 2 and name != key):
                    continue  # one value alone could match anywhere
                start = next((i for i in np.flatnonzero(flat == p[0]) if i + p.size <= flat.size and np.array_equal(flat[i : i + p.size], p)), None)
                if start is not None:
                    found[key] = shipped[name].ravel()[start : start + p.size].reshape(seeded_params[key].shape).copy()
                    how[key] = f"{graph}: {name}[{start}:{start + p.size}]"
                    missing.remove(key)
                    break
    for graph in GRAPHS:  # deduplicated: an Identity of an equal initializer
        shipped = _initializers(graphs / f"{graph}.onnx")
        for node in onnx.load(str(graphs / f"{graph}.onnx")).graph.node:
            key = node.output[0]
            if node.op_type == "Identity" and key in missing:
                source = node.input[0].removesuffix("__float16")
                found[key] = shipped[source].reshape(seeded_params[key].shape).copy()
                how[key] = f"{graph}: equal to {source} (deduplicated)"
                missing.remove(key)
    constants = manifest["constants"]
    from_manifest = {
        "no_obj_ptr": constants["no_obj_ptr"],
        "no_mem_embed": constants["no_mem_embed"],
        "mask_downsample.weight": constants["mask_downsample"]["weight"],
        "mask_downsample.bias": [constants["mask_downsample"]["bias"]],
    }
    for key, value in from_manifest.items():
        if key in missing:
            found[key] = np.asarray(value, np.float32).reshape(seeded_params[key].shape)
            how[key] = "manifest constants"
            missing.remove(key)
    for key in UNREAD:
        if key in missing:
            found[key] = np.zeros_like(seeded_params[key])
            how[key] = "read by no graph: zeros"
            missing.remove(key)
    if missing:
        raise SystemExit(f"recover_demo_state | received graphs where {missing} could not be found; expected every parameter")
    del torch
    return found, how


def main(argv: list[str] | None = None) -> None:
    import torch

    p = argparse.ArgumentParser(prog="python -m training.recover_demo_state", description=__doc__.split("\n\n")[0])
    p.add_argument("--graphs", type=Path, required=True, help="a packaged model folder (runtime/demo_model)")
    p.add_argument("--out", type=Path, required=True, help="the checkpoint to write ({'model': state dict})")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state, how = recover_state_dict(args.graphs, Path(tmp))
    torch.save({"model": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}}, args.out)
    special = {k: v for k, v in how.items() if "as stored" not in v}
    print(f"wrote {args.out}: {len(state)} parameters; not stored as themselves: " + "; ".join(f"{k} <- {v}" for k, v in special.items() if "transposed" not in v))


if __name__ == "__main__":
    main()
