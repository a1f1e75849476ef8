"""A folder of exported graphs as the engine builder reads it: manifest.json (written by `streamsam
export`, or copied with each graph's new sha256 by streamsam.engines.fp16.convert_folder) and, for
converted graphs, precision.json beside it (read with streamsam.engines.fp16.read_precision). Without
precision.json the graphs are the FP32 export.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamsam.contracts import GRAPH_NAMES
from streamsam.manifest import MANIFEST_NAME, Manifest, file_sha256, read_manifest

from .errors import EngineError

GRAPH_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class GraphsFolder:
    path: Path
    manifest: Manifest
    precision: str  # "fp32" (the export) or "fp16" (converted; precision.json says so)
    files: dict[str, str]  # graph -> ONNX file name in `path`
    sha256: dict[str, str]  # graph -> the sha256 manifest.json records for that file

    @property
    def model(self) -> str:
        """The export's config name (e.g. sam2.1_hiera_tiny): part of every engine's name."""
        name = self.manifest.config.get("name")
        if not isinstance(name, str) or not name:
            raise EngineError(
                f"{self.path / MANIFEST_NAME} | received config name {name!r}; expected the config's name, "
                "as `streamsam export` writes it. Re-export the graphs."
            )
        return name

    def onnx_path(self, graph: str) -> Path:
        return self.path / self.files[graph]


def read_graphs_folder(onnx_dir: str | Path) -> GraphsFolder:
    from .fp16 import PRECISION_NAME, read_precision

    path = Path(onnx_dir)
    manifest = read_manifest(path)
    record = read_precision(path)
    precision = "fp32" if record is None else record.precision
    if precision not in GRAPH_PRECISIONS:
        raise EngineError(f"{path / PRECISION_NAME} | received precision {precision!r}; expected one of {list(GRAPH_PRECISIONS)}")
    files = {g: manifest.graphs[g].file for g in GRAPH_NAMES}
    sha256 = {g: manifest.graphs[g].sha256 for g in GRAPH_NAMES}
    return GraphsFolder(path, manifest, precision, files, sha256)




def verify_graph_file(folder: GraphsFolder, graph: str) -> str:
    """The ONNX file's sha256, checked against the folder's record; an engine's sidecar records it."""
    path = folder.onnx_path(graph)
    if not path.is_file():
        raise EngineError(f"{path} | received no file; expected the {graph} graph the folder's records name")
    digest = file_sha256(path)
    if digest != folder.sha256[graph]:
        raise EngineError(
            f"{path} | received a file with sha256 {digest[:16]}; expected {folder.sha256[graph][:16]} as "
            f"{MANIFEST_NAME} records (the file changed after it was written). Export (or convert) the graphs again."
        )
    return digest
