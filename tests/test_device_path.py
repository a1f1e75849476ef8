"""The device path (runtime/arena.py, cuda_memory.py, device_backends.py; the pipeline over DeviceArrays).

On a CPU (CI): row views by pointer offset against numpy's own strides, the rounding kernel's formula
against the CPU rounding, the memory bank through its array namespace, the clear errors before and
at the first CUDA call, and the whole device path on a host arena (DeviceArrays over host memory,
ONNX Runtime's I/O binding by pointer) through the golden videos and a stream. Marked `gpu` (skipped without nvidia-smi; they have never run, as no GPU
has been lent): the golden videos through ONNX Runtime CUDA against the CPU backend, the kernel
against the CPU rounding bit for bit, flat device memory over a long stream, TensorRT engines.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

from conftest import GOLDEN, moving_square_video
from streamsam.contracts import DEFAULT_DIMS, GRAPH_NAMES
from streamsam.arena import contiguous_index
from streamsam.cuda_memory import BFLOAT16_ROUNDING, ROUNDING_KERNEL
from streamsam.errors import MissingDependencyError, StreamSamError
from streamsam.memory_bank import MemoryBank, NumpyArrays, round_to_bfloat16

HAS_GPU = shutil.which("nvidia-smi") is not None


# -- CPU


@pytest.mark.parametrize(
    "shape, key",
    [
        ((4, 8, 3, 5, 5), (2, 7)),  # a ring slot: memory[row, slot]
        ((4, 8, 3, 5, 5), slice(1, 3)),  # rows of a graph call
        ((4, 8, 3, 5, 5), 3),
        ((4, 8, 3, 5, 5), -1),
        ((4, 17, 6), (0, slice(2, 9))),
        ((4, 1, 6, 6), (1, 0)),  # out["low_res_masks"][row, 0]
        ((4, 3), (2, 0)),  # a scalar: out["ious"][row, 0]
        ((4, 3), slice(2, None)),
        ((4, 3), slice(3, 1)),  # empty, as numpy
    ],
)
def test_row_views_are_numpy_offsets(shape, key):
    host = np.zeros(shape, np.float32)
    offset, view_shape = contiguous_index(shape, host.itemsize, key)
    expected = host[(key if isinstance(key, tuple) else (key,)) + (...,)]  # a view even for one element
    assert view_shape == expected.shape and expected.flags.c_contiguous
    if expected.size:
        assert offset == expected.ctypes.data - host.ctypes.data


@pytest.mark.parametrize("key", [(slice(0, 2), 1), slice(0, 4, 2), (0, 0, 0, 0, 0, 0), 9, (1, -9)])
def test_non_contiguous_or_outside_views_are_refused(key):
    with pytest.raises(StreamSamError, match=r"DeviceArray"):
        contiguous_index((4, 8, 3), 4, key)


def test_rounding_kernel_is_the_cpu_rounding():
    """The kernel's expression, evaluated on numpy uint32 (C's unsigned arithmetic wraps the same
    way), equals memory_bank.round_to_bfloat16 on values that exercise every branch."""
    assert BFLOAT16_ROUNDING in ROUNDING_KERNEL
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.standard_normal(4096, np.float32) * 10,
        np.array([0.0, -0.0, 1.0 + 2**-8, 1.0 + 3 * 2**-8, np.inf, -np.inf, np.nan, 3.4e38, -3.4e38, 1e-45], np.float32),
    ])  # fmt: skip
    b = values.view(np.uint32)
    kernel = eval(BFLOAT16_ROUNDING.replace("u", ""), {"b": b})  # noqa: S307 - our own constant
    np.testing.assert_array_equal(kernel.astype(np.uint32), round_to_bfloat16(values).view(np.uint32))


class CountingArrays(NumpyArrays):
    """A second implementation of the bank's array namespace (numpy, counting calls): the bank must
    reach its memories only through it, as the device path's DeviceArena does."""

    zeros_calls = 0
    rounded = 0

    @classmethod
    def zeros(cls, shape, dtype):
        cls.zeros_calls += 1
        return np.zeros(shape, dtype)

    @classmethod
    def store_bfloat16(cls, dst, src):
        cls.rounded += 1
        round_to_bfloat16(src, out=dst)


def test_memory_bank_reaches_its_memories_through_its_array_namespace():
    default, counted = MemoryBank(DEFAULT_DIMS, 2), MemoryBank(DEFAULT_DIMS, 2, arrays=CountingArrays)
    assert CountingArrays.zeros_calls == 2  # memories and pointers: the device path's two big arrays
    for bank in (default, counted):
        local = np.random.default_rng(1)
        for frame in range(9):
            memory, pointer = local.standard_normal((2, 64, 64, 64), np.float32), local.standard_normal((2, 256), np.float32)
            write = bank.write_prompted if frame in (0, 4) else bank.write_recent
            for row in range(2):
                write(row, frame, memory[row], pointer[row])
        bank.move_row(1, 0)
    assert CountingArrays.rounded == 18
    np.testing.assert_array_equal(default.memory, counted.memory)
    np.testing.assert_array_equal(default.obj_ptrs, counted.obj_ptrs)
    assert (default.memory.view(np.uint32) & 0xFFFF == 0).all()  # stored in bfloat16


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")
def test_onnxruntime_without_the_cuda_provider_names_the_extra(reduced_graphs):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    from streamsam.device_backends import OnnxRuntimeCudaBackend

    with pytest.raises(StreamSamError, match=r"expected CUDAExecutionProvider.*pip install 'streamsam\[ort-gpu\]'"):
        OnnxRuntimeCudaBackend(reduced_graphs)


@pytest.mark.skipif(HAS_GPU, reason="checks the error on a machine without a GPU driver")
@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="needs cuda-python (the [ort-gpu] extra)")
def test_first_cuda_call_without_a_driver_says_which_call_failed():
    from streamsam.arena import DeviceArena

    with pytest.raises(StreamSamError, match=r"cudaSetDevice \| received .*driver.*; expected .*an NVIDIA GPU with a working driver"):
        DeviceArena(0)


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="needs cuda-python (the [ort-gpu] extra)")
def test_failing_cuda_status_names_the_call_and_the_code():
    from cuda.bindings import runtime

    from streamsam.cuda_memory import cuda_call, import_cuda

    def out_of_memory(nbytes):
        return (runtime.cudaError_t.cudaErrorMemoryAllocation, 0)

    with pytest.raises(StreamSamError, match=r"cudaMalloc\(1 bytes\) \| received cudaErrorMemoryAllocation \(out of memory\)"):
        cuda_call(import_cuda(), "cudaMalloc(1 bytes)", out_of_memory, 1)
    assert cuda_call(import_cuda(), "cudaMalloc", lambda n: (runtime.cudaError_t.cudaSuccess, 1234), 1) == 1234


def _engines_folder(tmp_path, graphs, gpu="Orin", cc=(8, 7), trt="10.7.0.23"):
    """An engines folder as `streamsam build` leaves it (index and sidecars; no engine bytes are
    read before the sidecars pass)."""
    from streamsam.engines.graphs_folder import read_graphs_folder
    from streamsam.engines.sidecar import Sidecar, write_sidecar

    folder = read_graphs_folder(graphs)
    out = tmp_path / "engines"
    out.mkdir()
    command = f"streamsam build --onnx-dir {graphs} --out {out}"
    names = {}
    for graph in GRAPH_NAMES:
        names[graph] = f"{graph}.test.engine"
        (out / names[graph]).write_bytes(b"")
        write_sidecar(
            Sidecar(names[graph], graph, "reduced", folder.manifest.dims.image_size, "fp16-strongly-typed", 4, 16, [],
                    folder.files[graph], folder.sha256[graph], trt, gpu, cc, "0.1.0", "2026-01-01T00:00:00+00:00", command),
            out / names[graph],
        )  # fmt: skip
    (out / "engines.json").write_text(json.dumps({"format_version": 1, "onnx_dir": str(graphs), "engines": names, "build_command": command}))
    return out


def test_engines_for_another_gpu_are_refused_before_deserializing(reduced_graphs, tmp_path):
    from streamsam.device_backends import checked_engine_files
    from streamsam.engines.device import Device
    from streamsam.engines.errors import EngineMismatchError

    engines = _engines_folder(tmp_path, reduced_graphs)
    here = Device(0, "NVIDIA H100 80GB HBM3", (9, 0))
    with pytest.raises(EngineMismatchError, match=r"built for GPU Orin \(sm_87\).*Rebuild it with: streamsam build --onnx-dir"):
        checked_engine_files(engines, None, "10.7.0.23", here)
    _, paths, sidecars = checked_engine_files(engines, None, "10.7.0.23", Device(0, "Orin", (8, 7)))
    assert set(paths) == set(GRAPH_NAMES) and sidecars["mask_decoder"].max_points == 16
    with pytest.raises(StreamSamError, match="without engines.json"):
        checked_engine_files(tmp_path, reduced_graphs, "10.7.0.23", here)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="checks the error without TensorRT")
def test_tensorrt_backend_without_tensorrt_says_where_it_comes_from(reduced_graphs, tmp_path):
    from streamsam.device_backends import TensorRTBackend

    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"):
        TensorRTBackend(_engines_folder(tmp_path, reduced_graphs))


# -- GPU (never run here: no GPU lent, TensorRT not installable)

sys.path.insert(0, str(GOLDEN))


def _replay_results(name: str, graphs):
    """The golden script's calls on a VideoPredictor over `graphs` (a folder or a backend): one
    (call, frame, result) per prompt and per propagated frame."""
    from streamsam.video_predictor import VideoPredictor

    video = GOLDEN / "video"
    meta = json.loads(np.load(video / f"{name}.npz")["meta"].item())
    media = np.load(video / "frames.npz")
    predictor = VideoPredictor(graphs, max_objects=2, fill_hole_area=0, resize="pil_bicubic")
    predictor.init_state(list(media["frames"]))
    for step in meta["script"]:
        call, kwargs = step["call"], dict(step["kwargs"])
        if call == "propagate_in_video":
            for result in predictor.propagate_in_video(**kwargs):
                yield step["name"], result
            continue
        if call == "add_new_mask":
            index = kwargs["mask"].strip("shape_masks[]").split(",")
            kwargs["mask"] = media["shape_masks"][int(index[0]), int(index[1])]
            yield step["name"], predictor.add_new_mask(**kwargs)
        else:
            yield step["name"], predictor.add_new_points_or_box(**kwargs)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["reduced", "tiny"])
def test_golden_videos_on_onnxruntime_cuda_give_the_cpu_masks(name, tmp_path):
    import video_parity  # tests/golden/video_parity.py

    from streamsam.device_backends import OnnxRuntimeCudaBackend

    graphs = video_parity.export_golden_graphs(name, tmp_path / name)
    cpu = list(_replay_results(name, graphs))
    with OnnxRuntimeCudaBackend(graphs) as backend:
        device = list(_replay_results(name, backend))
    assert [(c, r.frame_index, r.object_ids) for c, r in cpu] == [(c, r.frame_index, r.object_ids) for c, r in device]
    checks = []
    for (call, ours), (_, theirs) in zip(device, cpu):
        checks += video_parity._compare(call, ours.frame_index, ours.object_ids, ours.low_res_logits, theirs.low_res_logits,
                                        ours.object_scores, list(theirs.object_scores), theirs.source_size)  # fmt: skip
    assert len(checks) > 300
    worst = min(checks, key=lambda c: c.iou)
    assert worst.iou >= 0.99, worst
    assert all(c.score_sign_equal for c in checks)


@pytest.mark.gpu
def test_device_rounding_kernel_and_copies_match_the_cpu_bit_for_bit():
    from streamsam.arena import DeviceArena

    rng = np.random.default_rng(2)
    values = rng.standard_normal((3, 5, 64), np.float32) * 100
    values.reshape(-1)[:4] = [np.inf, -np.inf, np.nan, 1.0 + 2**-8]
    with DeviceArena(0) as arena:
        source, ring = arena.zeros(values.shape, np.float32), arena.zeros((2, 3, 5, 64), np.float32)
        source.copy_from(values)
        arena.store_bfloat16(ring[1], source)  # device to device, then the kernel
        np.testing.assert_array_equal(np.asarray(ring[1]).view(np.uint32), round_to_bfloat16(values).view(np.uint32))
        np.testing.assert_array_equal(np.asarray(ring[0]), 0)  # the other slot untouched
        np.testing.assert_array_equal(np.asarray(source[2, 1:4]), values[2, 1:4])


@pytest.mark.gpu
def test_stream_tracker_on_the_device_matches_the_cpu_and_its_memory_stays_flat(reduced_graphs):
    from streamsam.arena import DeviceArray
    from streamsam.device_backends import OnnxRuntimeCudaBackend
    from streamsam.stream_tracker import StreamTracker

    frames = list(moving_square_video(300))
    cpu = StreamTracker(reduced_graphs, max_objects=2)
    with OnnxRuntimeCudaBackend(reduced_graphs) as backend:
        device = StreamTracker(backend, max_objects=2)
        assert isinstance(device.bank.memory, DeviceArray)
        for tracker in (cpu, device):
            tracker.track(frames[0])
            tracker.add_points(1, [(40, 50)])
            tracker.add_box(2, (100, 100, 200, 170))
        for frame in frames[1:12]:  # warm-up: ONNX Runtime's arena grows on its first runs
            a, b = cpu.track(frame), device.track(frame)
            np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-3)
            assert (np.sign(b.object_scores) == np.sign(a.object_scores)).all()
        free_before, _ = backend.arena.mem_get_info()
        pointers = (device.bank.memory.ptr, device.bank.obj_ptrs.ptr)
        for frame in frames[12:]:
            device.track(frame)
        free_after, _ = backend.arena.mem_get_info()
        assert abs(free_before - free_after) < 2**20, (free_before, free_after)
        assert (device.bank.memory.ptr, device.bank.obj_ptrs.ptr) == pointers


@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT (not installable on our machines)")
def test_golden_video_on_tensorrt_fp16_engines_stays_close_to_the_cpu(tmp_path):
    import video_parity

    from streamsam.device_backends import TensorRTBackend
    from streamsam.engines.build import build_engines

    graphs = video_parity.export_golden_graphs("reduced", tmp_path / "graphs")
    build_engines(graphs, tmp_path / "engines", max_objects=2)
    cpu = list(_replay_results("reduced", graphs))
    with TensorRTBackend(tmp_path / "engines") as backend:
        device = list(_replay_results("reduced", backend))
    checks = []
    for (call, ours), (_, theirs) in zip(device, cpu):
        checks += video_parity._compare(call, ours.frame_index, ours.object_ids, ours.low_res_logits, theirs.low_res_logits,
                                        ours.object_scores, list(theirs.object_scores), theirs.source_size)  # fmt: skip
    assert min(c.iou for c in checks) >= 0.97  # FP16 engines: the bar for FP16 against FP32


# -- the device path on a host arena (CI): everything but the CUDA calls and TensorRT


def _host_arena_backend(graphs, slot_policy="filled"):
    from streamsam.arena import HostArena
    from streamsam.device_backends import OnnxRuntimeArenaBackend

    return OnnxRuntimeArenaBackend(graphs, HostArena(), slot_policy=slot_policy)


def test_golden_video_on_the_host_arena_gives_the_cpu_pipelines_masks(tmp_path):
    """The device pipeline (DeviceArrays, the bank on the arena, I/O binding by pointer) with the
    CPU's slot policy is the CPU pipeline: same masks, logits within 1e-6. With TensorRT's policy
    (whole rings, empty slots flagged) within 1e-5: only the attention's summation order differs.
    The reduced golden video (tiny's takes minutes on CI's two cores and runs the same code)."""
    name = "reduced"
    import video_parity  # tests/golden/video_parity.py

    from streamsam.arena import DeviceArray

    graphs = video_parity.export_golden_graphs(name, tmp_path / name)
    cpu = list(_replay_results(name, graphs))
    for policy, tolerance in (("filled", 1e-6), ("capacity", 1e-5)):
        with _host_arena_backend(graphs, policy) as backend:
            seen = []
            run = backend.run
            backend.run = lambda graph, inputs, outputs: (seen.append(type(outputs[next(iter(outputs))])), run(graph, inputs, outputs))
            device = list(_replay_results(name, backend))
        assert set(seen) == {DeviceArray}
        assert [(c, r.frame_index, r.object_ids) for c, r in cpu] == [(c, r.frame_index, r.object_ids) for c, r in device]
        for (_, theirs), (_, ours) in zip(cpu, device):
            np.testing.assert_allclose(ours.low_res_logits, theirs.low_res_logits, atol=tolerance, rtol=0)
            np.testing.assert_array_equal(ours.masks, theirs.masks)
            np.testing.assert_array_equal(np.sign(ours.object_scores), np.sign(theirs.object_scores))


def test_stream_tracker_on_the_host_arena_matches_the_cpu_and_holds_its_memory(reduced_graphs):
    from streamsam.arena import DeviceArray
    from streamsam.stream_tracker import StreamTracker

    frames = list(moving_square_video(40))
    cpu = StreamTracker(reduced_graphs, max_objects=3)
    backend = _host_arena_backend(reduced_graphs)
    before_open = backend.arena.mem_get_info()
    device = StreamTracker(backend, max_objects=3)
    assert isinstance(device.bank.memory, DeviceArray)
    held = backend.arena.mem_get_info()
    for tracker in (cpu, device):
        tracker.track(frames[0])
        tracker.add_points(1, [(40, 50)])
        tracker.add_box(2, (100, 100, 200, 170))
        tracker.add_mask(3, np.pad(np.ones((30, 30), bool), ((100, 50), (20, 190))))
    for index, frame in enumerate(frames[1:], start=1):
        if index == 20:
            for tracker in (cpu, device):
                tracker.add_points(2, [(150, 120), (120, 110)], [1, 0])  # a correction mid-stream
                tracker.remove_object(1)
        a, b = cpu.track(frame), device.track(frame)
        np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-6, rtol=0)
        np.testing.assert_array_equal(b.masks, a.masks)
    assert backend.arena.mem_get_info() == held  # nothing allocated after open
    device.close()
    assert backend.arena.mem_get_info() == before_open  # every buffer of the tracker went back to the arena
    backend.close()


def test_device_arrays_copy_view_and_read_as_numpy():
    from streamsam.arena import HostArena

    with HostArena() as arena:
        ring = arena.zeros((3, 4, 5), np.float32)
        values = np.arange(20, dtype=np.float32).reshape(4, 5)
        ring[1] = values  # upload
        ring[2] = ring[1]  # device to device
        ring[0, 1:3] = np.float32(7)  # broadcast
        host = np.asarray(ring)
        np.testing.assert_array_equal(host[1], values)
        np.testing.assert_array_equal(host[2], values)
        assert (host[0, 1:3] == 7).all() and (host[0, 0] == 0).all() and (host[0, 3] == 0).all()
        assert float(ring[1, 2, 3]) == 13.0 and np.asarray(ring[1], np.float64).dtype == np.float64
        np.testing.assert_array_equal(np.asarray(ring.view((2, 5))), host.reshape(-1, 5)[:2])
        arena.store_bfloat16(ring[2], np.full((4, 5), 1.0 + 2**-9, np.float32))
        assert (np.asarray(ring[2]) == 1.0).all()  # rounded to bfloat16, ties to even
        with pytest.raises(StreamSamError, match="expected the same dtype and shape"):
            ring[0].copy_from(ring[1, 0])
        with pytest.raises(TypeError, match="expected one"):
            float(ring[0])
    with pytest.raises(StreamSamError, match="after close"):
        arena.zeros((1,), np.float32)
