"""One exception family, so callers (and the CLI) can tell streamsam's own errors from bugs.

Messages follow one form: "<subject> | received X; expected Y[. <what to do>]".
"""

from __future__ import annotations


class StreamSamError(Exception):
    """Base of every error streamsam raises on purpose."""


class CheckpointError(StreamSamError):
    """A checkpoint that cannot be read, or that does not fit the model config."""


class ExportError(StreamSamError):
    """An exported graph that fails its checks (onnx.checker, or parity with PyTorch)."""


class MissingDependencyError(StreamSamError, ImportError):
    """An optional dependency that the requested feature needs is not installed."""


def require(module: str, extra: str):
    """Import an optional dependency, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} | received ImportError ({exc}); expected it installed. "
            f"Install it with: pip install 'streamsam[{extra}]'"
        ) from exc
