"""A frame or prompt whose graph fails leaves the session exactly as it was: faults injected into
the real ONNX Runtime backend (ONNX Runtime's own exception, after scribbling on the outputs), and
the session compared bit for bit with a twin that never saw the failed call."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moving_square_video
from streamsam import OnnxRuntimeBackend
from streamsam.contracts import GRAPH_NAMES, IMAGE_ENCODER, MASK_DECODER
from streamsam.errors import DeviceLostError, GraphError
from streamsam.stream_tracker import StreamTracker

FRAMES = list(moving_square_video(12))


class FaultyBackend:
    """The real backend. When armed, the next call of `graph` scribbles NaN over its outputs and then
    fails inside ONNX Runtime (ONNX Runtime's own exception), as a kernel that
    dies half way would."""

    def __init__(self, graphs) -> None:
        self.inner = OnnxRuntimeBackend(graphs, threads=1)
        self.manifest = self.inner.manifest
        self.armed: str | None = None
        self.error: type | None = None

    def run(self, graph, inputs, outputs) -> None:
        if graph == self.armed:
            self.armed = None
            for out in outputs.values():
                out[...] = np.nan if out.dtype.kind == "f" else 0
            session = self.inner._sessions[graph]  # a feed of the wrong rank: ONNX Runtime's own InvalidArgument
            session.run(None, {i.name: np.zeros(1, inputs[i.name].dtype) for i in session.get_inputs()})
        self.inner.run(graph, inputs, outputs)

    def close(self) -> None:
        self.inner.close()


def _opened(backend):
    tracker = StreamTracker(backend, max_objects=3)
    tracker.track(FRAMES[0])
    tracker.add_points(1, [(40, 50)])
    tracker.add_box(2, (100, 100, 200, 170))
    for frame in FRAMES[1:4]:
        tracker.track(frame)
    return tracker


def _same(a, b) -> None:
    assert a.object_ids == b.object_ids and a.frame_index == b.frame_index
    np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
    np.testing.assert_array_equal(a.object_scores, b.object_scores)
    np.testing.assert_array_equal(a.ious, b.ious)


@pytest.mark.parametrize("graph", GRAPH_NAMES)
def test_a_frame_whose_graph_fails_leaves_the_tracker_as_if_it_never_came(reduced_graphs, graph):
    faulty_backend = FaultyBackend(reduced_graphs)
    faulty, twin = _opened(faulty_backend), _opened(OnnxRuntimeBackend(reduced_graphs, threads=1))
    faulty_backend.armed = graph
    with pytest.raises(GraphError, match=rf"^{graph} \| received .*; expected the graph to run") as failure:
        faulty.track(FRAMES[4])  # the twin never sees frame 4
    assert isinstance(failure.value, RuntimeError) and type(failure.value.__cause__).__module__.startswith("onnxruntime")
    assert faulty.frame_index == twin.frame_index == 3
    # A click on the current frame (frame 3) reads that frame's features, memories and logits.
    _same(faulty.add_points(1, [(45, 52), (60, 60)], [1, 0]), twin.add_points(1, [(45, 52), (60, 60)], [1, 0]))
    for frame in FRAMES[5:8]:
        _same(faulty.track(frame), twin.track(frame))


@pytest.mark.parametrize("graph", [g for g in GRAPH_NAMES if g != IMAGE_ENCODER])
def test_a_prompt_whose_graph_fails_changes_nothing(reduced_graphs, graph):
    faulty_backend = FaultyBackend(reduced_graphs)
    faulty, twin = _opened(faulty_backend), _opened(OnnxRuntimeBackend(reduced_graphs, threads=1))
    prompts = [
        lambda t: t.add_points(1, [(45, 52)], clear_old_points=False),  # a correction: reads memories
        lambda t: t.add_box(3, (20, 20, 90, 90)),  # a new object on this frame
        lambda t: t.add_mask(2, np.pad(np.ones((40, 40), bool), ((100, 40), (100, 100)))),
    ]
    for prompt in prompts:
        if graph == "memory_attention" and prompt is not prompts[0]:
            continue  # a new object's prompt and a mask read no memory: memory attention does not run
        faulty_backend.armed = graph
        with pytest.raises(GraphError, match=rf"^{graph} \|"):
            prompt(faulty)
        assert faulty.object_ids == twin.object_ids
        _same(prompt(faulty), prompt(twin))
    for frame in FRAMES[4:7]:
        _same(faulty.track(frame), twin.track(frame))


def test_a_lost_device_closes_the_tracker_and_says_so(reduced_graphs):
    class LosingBackend(FaultyBackend):
        def run(self, graph, inputs, outputs):
            if graph == self.armed:
                raise DeviceLostError(f"{graph} | received cudaErrorIllegalAddress, a sticky CUDA error; expected success")
            self.inner.run(graph, inputs, outputs)

    backend = LosingBackend(reduced_graphs)
    tracker = _opened(backend)
    backend.armed = MASK_DECODER
    with pytest.raises(DeviceLostError):
        tracker.track(FRAMES[4])
    for call in (lambda: tracker.track(FRAMES[5]), lambda: tracker.add_points(1, [(10, 10)])):
        with pytest.raises(DeviceLostError, match=r"received a call after the device was lost .*open a new StreamTracker"):
            call()
