"""manifest.json: what a folder of exported graphs holds, written by export and read by the engine
builder and the runtime. The graph contracts are recorded in full, so a runtime can check that the
files it loads are the ones it was written for."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .contracts import GRAPH_NAMES, GraphContract, ModelDims, graph_contracts
from .errors import StreamSamError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 2  # 2: the frames axis and row_frame (multi-stream batching)


@dataclass(frozen=True)
class GraphFile:
    file: str
    sha256: str
    size_bytes: int
    max_abs_error: dict[str, float]  # per output, ONNX Runtime CPU against PyTorch at export time


@dataclass(frozen=True)
class Manifest:
    config: dict[str, Any]  # the model config (name, version, image_size, ...) as plain data
    dims: ModelDims
    graphs: dict[str, GraphFile]
    opset: int
    versions: dict[str, str]
    # Model constants the runtime applies itself (e.g. mask_downsample for mask prompts).
    constants: dict[str, Any] = field(default_factory=dict)
    # Optional INT8 variants written by `streamsam quantize` beside the FP32 graphs (runtime/quantize.py);
    # max_abs_error here is against the FP32 graph on ONNX Runtime.
    int8_graphs: dict[str, GraphFile] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def contracts(self) -> dict[str, GraphContract]:
        return graph_contracts(self.dims)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["contracts"] = {name: dataclasses.asdict(c) for name, c in self.contracts.items()}
        return json.dumps(data, indent=2)

    def write(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(self.to_json() + "\n")
        return path


def file_sha256(path: str | Path) -> str:
    """The sha256 a manifest records for a graph file (read in 1 MiB blocks: graphs reach 900 MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: str | Path) -> Manifest:
    """Read and check `directory/manifest.json`."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise StreamSamError(
            f"graphs folder {directory} | received no {MANIFEST_NAME}; expected the output of "
            "`streamsam export --checkpoint CKPT --out DIR`"
        )
    data = json.loads(path.read_text())
    if data.get("format_version") != FORMAT_VERSION:
        raise StreamSamError(
            f"{path} | received format_version {data.get('format_version')}; expected {FORMAT_VERSION}. "
            "Re-export the graphs with this version of streamsam."
        )
    manifest = Manifest(
        config=data["config"],
        dims=ModelDims(**data["dims"]),
        graphs={name: GraphFile(**g) for name, g in data["graphs"].items()},
        opset=data["opset"],
        versions=data["versions"],
        constants=data.get("constants", {}),
        int8_graphs={name: GraphFile(**g) for name, g in data.get("int8_graphs", {}).items()},
    )
    missing = [g for g in GRAPH_NAMES if g not in manifest.graphs]
    if missing:
        raise StreamSamError(f"{path} | received graphs {sorted(manifest.graphs)}; expected also {missing}")
    recorded = data.get("contracts", {})
    current = {name: dataclasses.asdict(c) for name, c in manifest.contracts.items()}
    if json.loads(json.dumps(current)) != recorded:
        raise StreamSamError(
            f"{path} | received graph contracts that differ from this streamsam's; "
            "re-export the graphs with this version of streamsam"
        )
    return manifest
