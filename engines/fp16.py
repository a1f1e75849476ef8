"""FP16 ONNX graphs for strongly typed TensorRT engines.

TensorRT 10.12+ deprecates the weakly typed FP16 builder flag: a strongly typed network computes
each layer in the type its ONNX tensors carry. So the precision is chosen here, in the graph: the
exported FP32 graph becomes an FP16 graph in which the sensitive parts stay FP32, and the graph's
inputs and outputs stay FP32, so `streamsam.contracts`, the runtime's buffers and the manifest are
unchanged. The same file runs on ONNX Runtime, which is how its accuracy is measured here
(`python -m benchmarks.fp16_accuracy`; ONNX Runtime's CPU provider runs most FP16 ops in FP32, so
that benchmark also runs the graphs on onnx's reference evaluator, which computes them in FP16).

The conversion is onnxruntime's own `onnxruntime.transformers` FP16 converter (`OnnxModel.
convert_float_to_float16`, the one onnxruntime uses for its SAM 2 graphs), given per-graph block
lists. onnxconverter-common 1.16 was tried first and writes invalid graphs for ours: it leaves
`Cast(to=float)` nodes as they are while typing their outputs FP16 (its open issue #320), and
every graph but memory attention has such casts. onnxruntime's converter retypes them, keeps
Resize's scales FP32, and its cascaded-cast clean-up joins neighbouring FP32 nodes directly (no
FP16 round trip between two kept nodes). That clean-up would also merge a narrowing cast chain
of the source graph (float -> int -> float), so such chains are refused (ours hold only
int64 -> int64 pairs).

What stays FP32, and why (`KEEP_FP32`):

- normalisation, every graph: `LayerNormalization` nodes (Hiera blocks, memory attention and
  the two-way transformer), and every node of a module scope holding a `ReduceMean` (the written-out
  LayerNorm2d of the prompt encoder's mask_downscaling, the decoder's output_upscaling.1 and the
  memory encoder's mask downsampler and fuser). Mean and variance over 64..256 channels lose
  digits in FP16, and squared deviations above 256 overflow it (65504).
- Softmax, every graph with attention: exp and a sum over up to 4096 query x 28,736 key scores
  (tiny at 1024 with 7 memories). Memory attention's key bias for empty slots is -1e4, which FP16
  holds exactly, so the scores feeding the softmax stay finite.
- the mask and score heads, mask decoder: the output hypernetwork MLPs, the IoU head, the
  object-score head and every node fed by them, up to the outputs. That is the final mask product
  (hypernetwork tokens x upscaled embedding), the stability score (a count of up to 65,536 pixels
  at 1024: infinite in FP16, and inexact above 2048), the best-IoU selection, the NO_OBJECT_LOGIT
  (-1024) fill, the object pointer projection and the high-res mask upsampling. So mask logits are
  never rounded to FP16 after the product, and their sign near zero (what IoU is made of) is the
  FP32 graph's.
- the graph inputs and outputs (the converter's keep_io_types): contracts unchanged.

Everything else (convolutions, matrix products, GELU, RoPE, position encodings) is FP16. The
rules name op types and module scopes of the exporter's node names; a rule that matches no node
fails the conversion, so a renamed module cannot silently drop a block.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from streamsam.contracts import DEFAULT_DIMS, GRAPH_NAMES, IMAGE_ENCODER, MASK_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER, graph_contracts
from streamsam.errors import require
from streamsam.manifest import Manifest, file_sha256, read_manifest

from .errors import EngineError

PRECISION_NAME = "precision.json"
PRECISION_FORMAT = 1
FLOAT16 = 10  # onnx.TensorProto.FLOAT16


@dataclass(frozen=True)
class KeepFP32:
    """One reason to keep part of a graph in FP32, and the nodes it covers.

    op_types: nodes of these op types. scopes_of: every node in the module scope (its name up to
    the last '/') of a node of these op types. scopes: nodes whose names start with these module
    paths. downstream: also every node fed, directly or not, by a matched node.
    """

    reason: str
    op_types: tuple[str, ...] = ()
    scopes_of: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    downstream: bool = False


NORMALISATION = KeepFP32("normalisation", op_types=("LayerNormalization",), scopes_of=("ReduceMean",))
SOFTMAX = KeepFP32("softmax", op_types=("Softmax",))
MASK_AND_SCORE_HEADS = KeepFP32(
    "mask and score heads",
    scopes=("/output_hypernetworks_mlps.", "/iou_prediction_head/", "/pred_obj_score_head/"),
    downstream=True,
)

KEEP_FP32: dict[str, tuple[KeepFP32, ...]] = {
    IMAGE_ENCODER: (NORMALISATION, SOFTMAX),
    MEMORY_ATTENTION: (NORMALISATION, SOFTMAX),
    MASK_DECODER: (NORMALISATION, SOFTMAX, MASK_AND_SCORE_HEADS),
    MEMORY_ENCODER: (NORMALISATION,),
}


@dataclass(frozen=True)
class FP16Report:
    """What one conversion did: sizes, and how many nodes each reason kept in FP32."""

    graph: str
    file: str
    fp32_bytes: int
    fp16_bytes: int
    nodes: int  # of the source graph, Constant nodes not counted
    kept_fp32: dict[str, int]  # reason -> nodes (Constant nodes not counted)
    seconds: float


def _scope(node_name: str) -> str:
    return node_name.rsplit("/", 1)[0] + "/"


def _fed_by(nodes, seeds: set[str]) -> set[str]:
    """Names of the nodes fed, directly or not, by the nodes named in `seeds`."""
    consumers = defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    by_name = {node.name: node for node in nodes}
    found, todo = set(), list(seeds)
    while todo:
        for output in by_name[todo.pop()].output:
            for node in consumers[output]:
                if node.name not in found:
                    found.add(node.name)
                    todo.append(node.name)
    return found


def _rule_nodes(nodes, rule: KeepFP32) -> set[str]:
    # The graph's root scope is no module: a root-level ReduceMean keeps only itself.
    scopes = {_scope(n.name) for n in nodes if n.op_type in rule.scopes_of} - {"/"}
    matched = {
        n.name
        for n in nodes
        if n.op_type in rule.op_types + rule.scopes_of or _scope(n.name) in scopes or n.name.startswith(rule.scopes)
    }
    return matched | _fed_by(nodes, matched) if rule.downstream else matched


def fp32_nodes(model, graph: str) -> dict[str, set[str]]:
    """reason -> names of the nodes `KEEP_FP32[graph]` keeps in FP32 in this (source) model."""
    nodes = list(model.graph.node)
    names = [n.name for n in nodes]
    if "" in names or len(set(names)) != len(names):
        raise EngineError(
            f"{graph} | received {names.count('')} unnamed and {len(names) - len(set(names))} repeated node names; "
            "expected the exporter's unique node names (the FP32 blocks are chosen by name)"
        )
    kept = {}
    for rule in KEEP_FP32[graph]:
        kept[rule.reason] = _rule_nodes(nodes, rule)
        if not kept[rule.reason]:
            raise EngineError(
                f"{graph} FP32 block '{rule.reason}' | received a graph with no node matching it (op types "
                f"{rule.op_types + rule.scopes_of}, scopes {rule.scopes}); expected some. The exporter's node "
                "names changed: update KEEP_FP32 in engines/fp16.py"
            )
    return kept


def _check_source(model, graph: str, path: Path) -> None:
    """The source must be one of our exported FP32 graphs: contract names and dtypes, no FP16 yet,
    and no narrowing Cast chain (the converter's clean-up would merge it)."""
    if graph not in GRAPH_NAMES:
        raise EngineError(f"FP16 conversion | received graph name {graph!r}; expected one of {list(GRAPH_NAMES)}")
    onnx = require("onnx", "export")
    contract = graph_contracts(DEFAULT_DIMS)[graph]  # names and dtypes do not depend on the sizes
    to_np = onnx.helper.tensor_dtype_to_np_dtype
    have = [(v.name, str(to_np(v.type.tensor_type.elem_type))) for v in list(model.graph.input) + list(model.graph.output)]
    want = [(s.name, s.dtype) for s in contract.inputs + contract.outputs]
    if have != want:
        raise EngineError(
            f"{path} | received a graph with inputs and outputs {have}; expected the exported {graph} graph's "
            f"{want} (streamsam.contracts). Convert the output of `streamsam export`."
        )
    if any(i.data_type == FLOAT16 for i in model.graph.initializer):
        raise EngineError(f"{path} | received a graph with FP16 weights; expected the FP32 graph of `streamsam export`")
    producers = {out: n for n in model.graph.node for out in n.output}
    for node in model.graph.node:
        parent = producers.get(node.input[0]) if node.op_type == "Cast" and node.input else None
        if parent is not None and parent.op_type == "Cast" and _cast_to(parent) != _cast_to(node):
            raise EngineError(
                f"{path} | received a Cast chain {parent.name} -> {node.name} that changes type twice; expected none "
                "(the FP16 converter's cascaded-cast clean-up would merge it and change its values)"
            )


def _cast_to(node) -> int:
    return next(a.i for a in node.attribute if a.name == "to")


def _dims(value) -> list[int | str]:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value for d in value.type.tensor_type.shape.dim]


def _check_converted(source, converted, path: Path) -> None:
    """Inputs and outputs as the source's (names, dtypes; shapes equal or made concrete where the
    source had an exporter-named symbolic axis), and ONNX Runtime can load the graph."""
    ort = require("onnxruntime", "ort")
    io = lambda m: list(m.graph.input) + list(m.graph.output)  # noqa: E731
    if [v.name for v in io(converted)] != [v.name for v in io(source)]:
        raise EngineError(f"{path} | received FP16 graph tensors {[v.name for v in io(converted)]}; expected {[v.name for v in io(source)]}")
    for old, new in zip(io(source), io(converted)):
        same_type = old.type.tensor_type.elem_type == new.type.tensor_type.elem_type
        shape = len(_dims(old)) == len(_dims(new)) and all(a == b or isinstance(a, str) for a, b in zip(_dims(old), _dims(new)))
        if not (same_type and shape):
            raise EngineError(
                f"{path} | received FP16 graph tensor {new.name} {new.type.tensor_type.elem_type} {_dims(new)}; "
                f"expected the FP32 graph's {old.name} {old.type.tensor_type.elem_type} {_dims(old)}"
            )
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not its notes on FP16 ops it cannot constant-fold
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def convert_to_fp16(onnx_in: str | Path, onnx_out: str | Path, graph: str) -> FP16Report:
    """Write the FP16 form of one exported graph (`graph`: its name in streamsam.contracts) to
    `onnx_out`: FP16 weights and compute, FP32 where KEEP_FP32 says, FP32 inputs and outputs."""
    onnx = require("onnx", "export")
    onnx_model = require("onnxruntime.transformers.onnx_model", "ort")
    start = time.perf_counter()
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    try:
        source = onnx.load(str(onnx_in))
    except Exception as exc:  # onnx raises DecodeError, OSError, ... for what is not an ONNX file
        raise EngineError(f"{onnx_in} | received a file ONNX cannot read ({type(exc).__name__}: {exc}); expected an exported graph") from exc
    _check_source(source, graph, onnx_in)
    kept = fp32_nodes(source, graph)
    model = onnx_model.OnnxModel(onnx.load(str(onnx_in)))
    model.convert_float_to_float16(
        use_symbolic_shape_infer=False,
        keep_io_types=True,
        op_block_list=[],
        node_block_list=sorted(set().union(*kept.values())),
    )
    model.topological_sort()
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model.model, str(onnx_out))
    _check_converted(source, model.model, onnx_out)
    constants = {n.name for n in source.graph.node if n.op_type == "Constant"}
    return FP16Report(
        graph=graph,
        file=onnx_out.name,
        fp32_bytes=onnx_in.stat().st_size,
        fp16_bytes=onnx_out.stat().st_size,
        nodes=len(source.graph.node) - len(constants),
        kept_fp32={reason: len(names - constants) for reason, names in kept.items()},
        seconds=time.perf_counter() - start,
    )




@dataclass(frozen=True)
class Precision:
    """precision.json beside an FP16 folder's manifest (the manifest's schema is unchanged)."""

    precision: str
    io_dtype: str
    converter: str
    source_sha256: dict[str, str]
    graphs: dict[str, dict] = field(default_factory=dict)  # graph -> FP16Report as plain data
    format_version: int = PRECISION_FORMAT

    def write(self, directory: Path) -> Path:
        path = directory / PRECISION_NAME
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def read_precision(directory: str | Path) -> Precision | None:
    """The folder's precision.json, or None for a folder `streamsam export` wrote (FP32)."""
    path = Path(directory) / PRECISION_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format_version") != PRECISION_FORMAT:
        raise EngineError(f"{path} | received format_version {data.get('format_version')}; expected {PRECISION_FORMAT}")
    return Precision(**data)


def convert_folder(src_dir: str | Path, out_dir: str | Path, progress: Callable[[str], None] | None = print) -> dict[str, FP16Report]:
    """Convert the four graphs of an exported folder into `out_dir`, with a copy of manifest.json
    (each graph's sha256 and size updated; max_abs_error left empty: FP16 accuracy is measured by
    benchmarks/fp16_accuracy.py) and precision.json. `out_dir` then loads like any exported folder."""
    onnxruntime = require("onnxruntime", "ort")

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if src_dir.resolve() == out_dir.resolve():
        raise EngineError(f"FP16 conversion | received out_dir {out_dir} equal to the source folder; expected another folder")
    manifest: Manifest = read_manifest(src_dir)
    if read_precision(src_dir) is not None:
        raise EngineError(f"{src_dir} | received a folder with {PRECISION_NAME} (already converted); expected the FP32 export")
    reports, graphs = {}, {}
    for name in GRAPH_NAMES:
        entry = manifest.graphs[name]
        report = convert_to_fp16(src_dir / entry.file, out_dir / entry.file, name)
        reports[name] = report
        path = out_dir / entry.file
        graphs[name] = replace(entry, sha256=file_sha256(path), size_bytes=path.stat().st_size, max_abs_error={})
        if progress is not None:
            kept = sum(report.kept_fp32.values())
            progress(
                f"{name}: {report.fp32_bytes / 1e6:.1f} MB -> {report.fp16_bytes / 1e6:.1f} MB, "
                f"{kept} of {report.nodes} nodes kept FP32, {report.seconds:.1f} s"
            )
    replace(manifest, graphs=graphs).write(out_dir)
    Precision(
        precision="fp16",
        io_dtype="float32",
        converter=f"onnxruntime.transformers float16 (onnxruntime {onnxruntime.__version__})",
        source_sha256={name: entry.sha256 for name, entry in manifest.graphs.items()},
        graphs={name: asdict(r) for name, r in reports.items()},
    ).write(out_dir)
    return reports
