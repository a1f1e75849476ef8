"""TensorRT optimization profiles, derived from `streamsam.contracts`.

The contracts give every graph input a shape of fixed sizes and symbolic axes; a profile gives each
symbolic axis a (min, opt, max) and keeps every fixed size as it is:

- `frames` (the image encoder's input, the features the other graphs read): 1 / 1 / max_streams.
  One stream passes one frame; a MultiStreamTracker passes one per stream in its step (then the
  objects profile bounds all its streams' objects together).
- `objects` (all graphs but the image encoder): 1 / min(2, max_objects) / max_objects. A session
  runs each graph once per frame over the rows of its active objects, so any count from 1 to the
  session's `max_objects` must run; two is the common case we optimise for.
- `points` (mask decoder): 1 / 1 / max_points. The runtime passes exactly the prompt's points and
  never pads: padding points (label -1) still join the decoder's attention as tokens and change the
  masks, so the count is a true dynamic axis. Every tracked frame runs the decoder with one padding
  point, as the official model does; prompted frames, the only ones with more, are rare, so opt is 1.
  The default max, 16, is a box (2 corner points) and 14 clicks on one object on one frame: more
  than interactive refinement needs, and raising it costs only the range TensorRT tunes for and
  12 bytes per point per object of input buffers.

- `memory_slots`, `pointer_slots` (memory attention): capacity / capacity / capacity. The contract
  lets a graph take any count up to the memory bank's capacity (ONNX Runtime on the CPU gets only the
  filled slots), but an engine keeps them static: docs/design.md's known-good recipe. The pipeline passes TensorRT
  whole rings (its "capacity" slot policy), with validity flags, so TensorRT sees one shape per object count.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamsam.contracts import FRAMES, OBJECTS, POINTS, GraphContract, ModelDims, TensorSpec, graph_contracts

from .errors import EngineError

DEFAULT_MAX_OBJECTS = 4
DEFAULT_MAX_POINTS = 16
DEFAULT_MAX_STREAMS = 1  # frames per call: one stream (StreamTracker, VideoPredictor, ImagePredictor)
OPT_FRAMES = 1
TYPICAL_OBJECTS = 2  # the objects count engines are tuned for (capped at max_objects)
OPT_POINTS = 1  # one padding point: every tracked frame

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]  # (min, opt, max)


@dataclass(frozen=True)
class GraphProfile:
    """One optimization profile of one graph: input name -> (min, opt, max) shapes, in the contract's
    input order. Inputs without symbolic axes are listed too, with min == opt == max."""

    graph: str
    shapes: dict[str, ShapeRange]

    def to_json(self) -> dict[str, list[list[int]]]:
        return {name: [list(s) for s in shape_range] for name, shape_range in self.shapes.items()}

    @classmethod
    def from_json(cls, graph: str, data: dict[str, list[list[int]]]) -> "GraphProfile":
        return cls(graph, {name: tuple(tuple(int(d) for d in s) for s in r) for name, r in data.items()})

    def to_polygraphy(self):
        """The same profile as Polygraphy's `Profile().add(name, min, opt, max)` (polygraphy/backend/trt/
        profile.py); CreateConfig(profiles=[...]) turns it into a trt.IOptimizationProfile."""
        from streamsam.errors import require

        polygraphy_trt = require("polygraphy.backend.trt", "trt")
        profile = polygraphy_trt.Profile()
        for name, (lo, opt, hi) in self.shapes.items():
            profile.add(name, min=lo, opt=opt, max=hi)
        return profile


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise EngineError(f"{name} | received {value!r}; expected an integer >= 1")


def axis_ranges(max_objects: int, max_points: int, opt_objects: int | None = None, max_streams: int = DEFAULT_MAX_STREAMS) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of each symbolic axis of the contracts."""
    _check_positive("max_objects", max_objects)
    _check_positive("max_points", max_points)
    _check_positive("max_streams", max_streams)
    opt_objects = min(TYPICAL_OBJECTS, max_objects) if opt_objects is None else opt_objects
    _check_positive("opt_objects", opt_objects)
    if opt_objects > max_objects:
        raise EngineError(f"opt_objects | received {opt_objects}; expected at most max_objects ({max_objects})")
    return {OBJECTS: (1, opt_objects, max_objects), POINTS: (1, min(OPT_POINTS, max_points), max_points),
            FRAMES: (1, OPT_FRAMES, max_streams)}  # fmt: skip


def _shape_range(spec: TensorSpec, axes: dict[str, tuple[int, int, int]]) -> ShapeRange:
    lo, opt, hi = ({a: r[i] for a, r in axes.items()} for i in range(3))
    return spec.concrete_shape(**lo), spec.concrete_shape(**opt), spec.concrete_shape(**hi)


def graph_profile(contract: GraphContract, axes: dict[str, tuple[int, int, int]]) -> GraphProfile:
    return GraphProfile(contract.name, {spec.name: _shape_range(spec, axes) for spec in contract.inputs})


def graph_profiles(
    dims: ModelDims,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_points: int = DEFAULT_MAX_POINTS,
    opt_objects: int | None = None,
    max_streams: int = DEFAULT_MAX_STREAMS,
) -> dict[str, GraphProfile]:
    """One profile per graph, in the contracts' graph order."""
    axes = axis_ranges(max_objects, max_points, opt_objects, max_streams)
    axes.update({axis: (n, n, n) for axis, n in dims.slot_capacity.items()})
    return {name: graph_profile(contract, axes) for name, contract in graph_contracts(dims).items()}
