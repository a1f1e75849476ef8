"""One exception family, so callers (and the CLI) can tell streamsam's own errors from bugs.

Messages follow one form: "<subject> | received X; expected Y[. <what to do>]".

Every error is a StreamSamError, and also the builtin a caller would catch without knowing
streamsam: bad input is a ValueError (InputError), a graph that failed is a RuntimeError
(GraphError), a missing optional package an ImportError (MissingDependencyError).
"""

from __future__ import annotations


class StreamSamError(Exception):
    """Base of every error streamsam raises on purpose."""


class InputError(StreamSamError, ValueError):
    """Bad input to a public call (a frame, a prompt, an id, an option), raised before any state
    changes: the session is as it was, and the call can be retried with corrected input."""


class GraphError(StreamSamError, RuntimeError):
    """A graph failed while running (a backend error, a CUDA error, out of memory). A session's frame
    or prompt that raises it leaves the session as it was before the call."""


class DeviceLostError(GraphError):
    """A failure that leaves the device unusable (a sticky CUDA error): the session is closed, and a
    new one must be opened (after the process restarts, for most sticky errors)."""


class WorkerError(StreamSamError, RuntimeError):
    """A scale-out worker (streamsam.serve) that could not start, or was lost with no worker left to
    take its streams. The message names the worker and the cause."""


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
