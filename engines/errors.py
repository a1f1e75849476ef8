"""The engine layer's errors: members of streamsam's one exception family, so `streamsam build`
prints them cleanly (no traceback, exit code 1)."""

from __future__ import annotations

from streamsam.errors import StreamSamError


class EngineError(StreamSamError):
    """An engine that cannot be built or loaded: bad arguments, a graphs folder that changed since
    export, a TensorRT without the feature a precision needs, a build that TensorRT refused."""


class EngineMismatchError(EngineError):
    """An engine built for another GPU, compute capability, TensorRT version or ONNX graph. The
    message ends with the exact command that rebuilds it (recorded in its sidecar)."""
