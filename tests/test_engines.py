"""streamsam.engines on a CPU: profiles and the buffer plan from the contracts, engine names, sidecars
and their checks, precision choices, the graphs-folder checks, the CLI, CMake, and the clear failure
without TensorRT. The builder itself needs TensorRT and a GPU: the `gpu` test at the end runs it
where both exist; nothing here imitates TensorRT."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from streamsam.contracts import DEFAULT_DIMS, GRAPH_NAMES, MASK_DECODER, MEMORY_ATTENTION, OBJECTS, POINTS, graph_contracts
from streamsam.errors import MissingDependencyError, StreamSamError
from streamsam.manifest import read_manifest
from streamsam.engines.build import BuildPrecision, build_command, build_engines, resolve_precision
from streamsam.engines.cli import add_build_command
from streamsam.engines.errors import EngineError, EngineMismatchError
from streamsam.engines.fp16 import Precision
from streamsam.engines.graphs_folder import file_sha256, read_graphs_folder, verify_graph_file
from streamsam.engines.naming import EngineName, parse_engine_name, timing_cache_name
from streamsam.engines.profiles import GraphProfile, graph_profiles
from streamsam.engines.progress import PhaseLog
from streamsam.engines.sidecar import Sidecar, check_sidecar, read_sidecar, sidecar_path, write_sidecar

from conftest import REPO

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(params=["official", "reduced"])
def dims(request):
    """SAM 2.1 at 1024 (the official sizes) and the reduced config's exported folder."""
    if request.param == "official":
        return DEFAULT_DIMS
    return read_manifest(request.getfixturevalue("reduced_graphs")).dims


# --- profiles and the buffer plan ---------------------------------------------------------------


def test_profiles_follow_the_contracts(dims):
    profiles = graph_profiles(dims, max_objects=4, max_points=16)
    contracts = graph_contracts(dims)
    assert list(profiles) == list(GRAPH_NAMES)
    for graph, contract in contracts.items():
        profile = profiles[graph]
        assert profile.graph == graph
        assert list(profile.shapes) == contract.input_names
        for spec in contract.inputs:
            lo, opt, hi = profile.shapes[spec.name]
            assert len(lo) == len(opt) == len(hi) == len(spec.shape)
            for axis, a, b, c in zip(spec.shape, lo, opt, hi):
                assert a <= b <= c
                if axis == OBJECTS:
                    assert (a, b, c) == (1, 2, 4), spec.name
                elif axis == POINTS:
                    assert (a, b, c) == (1, 1, 16), spec.name
                elif axis == "frames":  # one stream by default: max_streams 1
                    assert (a, b, c) == (1, 1, 1), spec.name
                elif axis in dims.slot_capacity:  # static at capacity: the device path passes whole rings
                    assert a == b == c == dims.slot_capacity[axis], spec.name
                else:
                    assert a == b == c == axis, spec.name
    # Static shapes where TensorRT needs them (docs/design.md, "Engines"): the image encoder entirely at one stream, memory attention's slots.
    assert all(lo == hi for lo, _, hi in profiles["image_encoder"].shapes.values())
    attention = profiles[MEMORY_ATTENTION].shapes
    assert attention["memory"][0][1:] == attention["memory"][2][1:] == (dims.memory_slots, dims.mem_dim, dims.feat_size, dims.feat_size)
    assert attention["obj_ptrs"][0][1:] == attention["obj_ptrs"][2][1:] == (dims.pointer_slots, dims.d_model)
    for name in ("memory_tpos", "memory_valid"):
        assert {r[1] for r in attention[name]} == {dims.memory_slots}
    for name in ("obj_ptr_tpos", "obj_ptr_valid"):
        assert {r[1] for r in attention[name]} == {dims.pointer_slots}


def test_profile_opt_objects_never_exceeds_max():
    profile = graph_profiles(DEFAULT_DIMS, max_objects=1, max_points=1)[MASK_DECODER]
    assert profile.shapes["point_coords"] == ((1, 1, 2), (1, 1, 2), (1, 1, 2))
    assert graph_profiles(DEFAULT_DIMS, max_objects=8, opt_objects=8)[MASK_DECODER].shapes["has_mask_input"][1] == (8, 1)


@pytest.mark.parametrize("kwargs", [{"max_objects": 0}, {"max_points": 0}, {"max_objects": True}, {"max_objects": 2.0}, {"max_objects": 2, "opt_objects": 3}])
def test_bad_profile_arguments_are_refused(kwargs):
    with pytest.raises(EngineError, match="received"):
        graph_profiles(DEFAULT_DIMS, **kwargs)


def test_profile_json_round_trip_and_polygraphy_profile():
    profile = graph_profiles(DEFAULT_DIMS)[MASK_DECODER]
    assert GraphProfile.from_json(MASK_DECODER, json.loads(json.dumps(profile.to_json()))) == profile
    pytest.importorskip("polygraphy")
    polygraphy_profile = profile.to_polygraphy()
    assert list(polygraphy_profile) == list(profile.shapes)
    for name, (lo, opt, hi) in profile.shapes.items():
        assert tuple(polygraphy_profile[name]) == (lo, opt, hi)


# --- engine names --------------------------------------------------------------------------------


def _name(graph: str, cc=(8, 7), trt="10.7.0.23", precision="fp16", dims=DEFAULT_DIMS) -> EngineName:
    return EngineName.for_graph(graph_contracts(dims)[graph], "sam2.1_hiera_tiny", dims.image_size, precision, 4, 16, cc, trt)


def test_engine_names_say_what_they_are_for_and_parse_back():
    names = {g: _name(g).filename for g in GRAPH_NAMES}
    assert names == {
        "image_encoder": "image_encoder.sam2.1_hiera_tiny-1024.fp16.sm87.trt10.7.engine",
        "memory_attention": "memory_attention.sam2.1_hiera_tiny-1024.fp16.obj4.sm87.trt10.7.engine",
        "mask_decoder": "mask_decoder.sam2.1_hiera_tiny-1024.fp16.obj4.pts16.sm87.trt10.7.engine",
        "memory_encoder": "memory_encoder.sam2.1_hiera_tiny-1024.fp16.obj4.sm87.trt10.7.engine",
    }
    for graph, filename in names.items():
        assert parse_engine_name(filename) == _name(graph)
    blackwell = _name(MASK_DECODER, cc=(12, 1), trt="11.2.0", precision="fp32")
    assert blackwell.filename.endswith(".fp32.obj4.pts16.sm121.trt11.2.engine")
    assert parse_engine_name(blackwell.filename) == blackwell
    assert timing_cache_name((8, 7), "10.7.0.23") == "timing.sm87.trt10.7.0.23.cache"


@pytest.mark.parametrize(
    "filename",
    ["memory_attention.engine", "decoder.sam2.1_hiera_tiny-1024.fp16.sm87.trt10.7.engine", "image_encoder.sam2.1_hiera_tiny-1024.int8.sm87.trt10.7.engine"],
)
def test_foreign_engine_names_are_refused(filename):
    with pytest.raises(EngineError, match="expected"):
        parse_engine_name(filename)


# --- sidecars ------------------------------------------------------------------------------------

COMMAND = build_command("/data/graphs/tiny", "/data/engines/tiny", 4, 16, "fp16")


def _sidecar(**changes) -> Sidecar:
    name = _name(MEMORY_ATTENTION, cc=(8, 6), trt="10.3.0")
    sidecar = Sidecar(
        engine_file=name.filename,
        graph=MEMORY_ATTENTION,
        model="sam2.1_hiera_tiny",
        image_size=1024,
        precision="fp16-strongly-typed",
        max_objects=4,
        max_points=16,
        profiles=[graph_profiles(DEFAULT_DIMS)[MEMORY_ATTENTION].to_json()],
        onnx_file="memory_attention.onnx",
        onnx_sha256="a" * 64,
        tensorrt_version="10.3.0",
        gpu_name="NVIDIA GeForce RTX 3090",
        compute_capability=(8, 6),
        streamsam_version="0.1.0",
        build_date="2026-11-26T10:00:00+00:00",
        build_command=COMMAND,
    )
    return dataclasses.replace(sidecar, **changes)


def test_sidecar_round_trip(tmp_path):
    sidecar = _sidecar()
    engine = tmp_path / sidecar.engine_file
    path = write_sidecar(sidecar, engine)
    assert path == sidecar_path(engine) == tmp_path / (sidecar.engine_file + ".json")
    assert read_sidecar(engine) == sidecar
    data = json.loads(path.read_text())
    assert data["compute_capability"] == "8.6"
    assert data["profiles"][0]["memory"] == [[1, 8, 64, 64, 64], [2, 8, 64, 64, 64], [4, 8, 64, 64, 64]]
    for key in ("tensorrt_version", "gpu_name", "onnx_sha256", "precision", "streamsam_version", "build_date", "build_command"):
        assert data[key] == getattr(sidecar, key)


def test_missing_or_foreign_sidecars_are_refused(tmp_path):
    with pytest.raises(EngineError, match="without its sidecar"):
        read_sidecar(tmp_path / "x.engine")
    data = json.loads(_sidecar().to_json())
    del data["gpu_name"]
    sidecar_path(tmp_path / "y.engine").write_text(json.dumps(data))
    with pytest.raises(EngineError, match="missing \\['gpu_name'\\]"):
        read_sidecar(tmp_path / "y.engine")
    with pytest.raises(EngineError, match="precision"):
        _sidecar(precision="int8")


def test_matching_sidecar_passes():
    check_sidecar(_sidecar(), "10.3.0", "NVIDIA GeForce RTX 3090", (8, 6), "a" * 64)


def test_engine_for_another_gpu_and_tensorrt_names_both_and_the_rebuild_command():
    sidecar = _sidecar(gpu_name="Orin", compute_capability=(8, 7))
    with pytest.raises(EngineMismatchError) as error:
        check_sidecar(sidecar, "10.7.0", "NVIDIA GeForce RTX 3090", (8, 6), "a" * 64)
    assert str(error.value) == (
        f"{sidecar.engine_file} | received an engine built for GPU Orin (sm_87) with TensorRT 10.3.0; "
        "expected this machine's GPU NVIDIA GeForce RTX 3090 (sm_86) and TensorRT 10.7.0. "
        "Rebuild it with: streamsam build --onnx-dir /data/graphs/tiny --out /data/engines/tiny "
        "--max-objects 4 --max-points 16 --precision fp16"
    )


@pytest.mark.parametrize(
    "running, expected",
    [
        (("10.3.0", "NVIDIA GeForce RTX 4090", (8, 6)), "GPU NVIDIA GeForce RTX 3090 (sm_86)"),  # GPU
        (("10.3.0", "NVIDIA GeForce RTX 3090", (8, 9)), "expected this machine's GPU NVIDIA GeForce RTX 3090 (sm_89)"),  # compute capability
        (("10.3.1", "NVIDIA GeForce RTX 3090", (8, 6)), "TensorRT 10.3.0; expected"),  # TensorRT version
    ],
)
def test_each_device_mismatch_raises_with_the_rebuild_command(running, expected):
    with pytest.raises(EngineMismatchError) as error:
        check_sidecar(_sidecar(), *running, "a" * 64)
    message = str(error.value)
    assert expected in message
    assert message.endswith(f"Rebuild it with: {COMMAND}")
    assert isinstance(error.value, StreamSamError)


def test_engine_from_another_onnx_raises_with_the_rebuild_command():
    with pytest.raises(EngineMismatchError) as error:
        check_sidecar(_sidecar(), "10.3.0", "NVIDIA GeForce RTX 3090", (8, 6), "b" * 64)
    message = str(error.value)
    assert "received an engine built from memory_attention.onnx sha256 aaaaaaaaaaaaaaaa" in message
    assert "expected memory_attention.onnx sha256 bbbbbbbbbbbbbbbb (the graph changed since the build)" in message
    assert message.endswith(f"Rebuild it with: {COMMAND}")


def test_build_command_is_what_the_build_subcommand_parses(tmp_path):
    import argparse

    command = build_command(tmp_path / "graphs", "engines", 3, 8, "fp32", workspace_gb=2.5, timing_cache=tmp_path / "t.cache")
    words = shlex.split(command)
    assert words[:2] == ["streamsam", "build"]
    parser = argparse.ArgumentParser(prog="streamsam")
    add_build_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(words[1:])
    assert (args.onnx_dir, args.out) == (str(tmp_path / "graphs"), str(Path("engines").resolve()))
    assert (args.max_objects, args.max_points, args.precision, args.workspace_gb) == (3, 8, "fp32", 2.5)
    assert args.timing_cache == str(tmp_path / "t.cache")
    defaults = parser.parse_args(["build", "--onnx-dir", "g", "--out", "e"])
    assert (defaults.max_objects, defaults.max_points, defaults.precision) == (4, 16, "fp16")


# --- precision -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, graphs, features, expected",
    [
        # TensorRT 10.x: both flags. FP16 graphs strongly typed, FP32 graphs with the builder flag.
        ("fp16", "fp16", (True, True), BuildPrecision("fp16-strongly-typed", True, False)),
        ("fp16", "fp32", (True, True), BuildPrecision("fp16", False, True)),
        ("fp32", "fp32", (True, True), BuildPrecision("fp32", True, False)),
        # TensorRT 11.x: no BuilderFlag.FP16; strongly typed always, with or without the creation flag.
        ("fp16", "fp16", (True, False), BuildPrecision("fp16-strongly-typed", True, False)),
        ("fp16", "fp16", (False, False), BuildPrecision("fp16-strongly-typed", False, False)),
        ("fp32", "fp32", (False, False), BuildPrecision("fp32", False, False)),
    ],
)
def test_precision_follows_the_graphs_and_the_running_tensorrt(requested, graphs, features, expected):
    assert resolve_precision(requested, graphs, "10.x", *features) == expected


@pytest.mark.parametrize(
    "requested, graphs, features, message",
    [
        ("fp16", "fp32", (True, False), "Convert them with streamsam.engines.fp16"),  # TensorRT 11, FP32 graphs
        ("fp32", "fp16", (True, True), "expected the FP32 export folder"),
        ("int8", "fp32", (True, True), "expected one of"),
    ],
)
def test_precisions_that_cannot_be_built_are_refused(requested, graphs, features, message):
    with pytest.raises(EngineError, match=message):
        resolve_precision(requested, graphs, "11.0.0", *features)


# --- progress ------------------------------------------------------------------------------------


def test_phase_log_prints_one_line_per_outer_phase():
    lines, now = [], iter(range(100))
    log = PhaseLog("[2/4] memory_attention: ", write=lines.append, max_depth=1, clock=lambda: float(next(now)))
    log.start("Building engine", None, 3)
    log.start("Tactic selection", "Building engine", 2)
    log.start("Layer 7", "Tactic selection", 5)  # depth 2: not printed
    assert log.step("Layer 7", 4)
    log.finish("Layer 7")
    assert log.step("Tactic selection", 0) and log.step("Tactic selection", 1)
    log.finish("Tactic selection")
    log.finish("Building engine")
    assert lines == [
        "[2/4] memory_attention:   Tactic selection: 2/2 steps, 2.0 s",
        "[2/4] memory_attention: Building engine: 0/3 steps, 4.0 s",
    ]
    log.cancel()
    log.start("Next", None, 1)
    assert log.step("Next", 0) is False


# --- the graphs folder and build_engines without TensorRT --------------------------------------


def test_graphs_folder_records_and_precision_json(reduced_graphs, tmp_path):
    folder = read_graphs_folder(reduced_graphs)
    assert folder.precision == "fp32" and folder.model == "reduced"
    for graph in GRAPH_NAMES:
        assert verify_graph_file(folder, graph) == folder.sha256[graph] == file_sha256(folder.onnx_path(graph))
    copy = tmp_path / "fp16"
    shutil.copytree(reduced_graphs, copy)
    record = Precision(precision="fp16", io_dtype="float32", converter="test", source_sha256=folder.sha256)
    record.write(copy)
    assert read_graphs_folder(copy).precision == "fp16"
    dataclasses.replace(record, precision="half").write(copy)
    with pytest.raises(EngineError, match="expected one of \\['fp32', 'fp16'\\]"):
        read_graphs_folder(copy)


def test_build_refuses_a_graph_changed_since_export(reduced_graphs, tmp_path):
    copy = tmp_path / "graphs"
    shutil.copytree(reduced_graphs, copy)
    with (copy / "mask_decoder.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(EngineError, match="mask_decoder.onnx \\| received a file with sha256 .* as manifest.json records"):
        build_engines(copy, tmp_path / "engines")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_without_tensorrt_says_where_tensorrt_comes_from(reduced_graphs, tmp_path):
    with pytest.raises(MissingDependencyError) as error:
        build_engines(reduced_graphs, tmp_path / "engines")
    message = str(error.value)
    for words in ("TensorRT is not installed", "JetPack", "python3-libnvinfer", "NVIDIA's package index", "CI cannot run"):
        assert words in message
    assert isinstance(error.value, ImportError)
    assert not (tmp_path / "engines").exists()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_subcommand_fails_cleanly_without_tensorrt(reduced_graphs, tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="streamsam")
    add_build_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["build", "--onnx-dir", str(reduced_graphs), "--out", str(tmp_path / "e")])
    with pytest.raises(StreamSamError, match="JetPack"):  # the CLI prints StreamSamError without a traceback
        args.run(args)


def test_engine_modules_import_no_heavy_framework():
    code = (
        "import sys, streamsam.engines.build, streamsam.engines.cli, streamsam.engines.sidecar, streamsam.engines.profiles\n"
        "print(' '.join(m for m in ('torch', 'onnx', 'tensorrt', 'polygraphy', 'cuda') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --- CMake ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_configures_and_reports_a_missing_checkpoint_with_our_error(tmp_path):
    build = tmp_path / "cmake"
    configure = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), "-DSTREAMSAM_CHECKPOINT=/nonexistent.pt", f"-DSTREAMSAM_PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
    )
    assert configure.returncode == 0, configure.stderr
    onnx = subprocess.run(["cmake", "--build", str(build), "--target", "streamsam_onnx"], capture_output=True, text=True)
    assert onnx.returncode != 0
    assert "checkpoint /nonexistent.pt | received a path that is not a file" in onnx.stdout + onnx.stderr
    assert not (build / "graphs" / "manifest.json").exists()


# --- on a GPU with TensorRT ----------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT (JetPack, or NVIDIA's package index)")
def test_build_real_engines_for_the_reduced_graphs(reduced_graphs, tmp_path):
    from streamsam.engines.device import import_tensorrt, running_device

    out = tmp_path / "engines"
    engines = build_engines(reduced_graphs, out, max_objects=2, max_points=4, precision="fp16")
    trt, device = import_tensorrt(), running_device()
    folder = read_graphs_folder(reduced_graphs)
    assert list(engines) == list(GRAPH_NAMES)
    index = json.loads((out / "engines.json").read_text())
    assert index["engines"] == {g: p.name for g, p in engines.items()}
    for graph, path in engines.items():
        assert path.stat().st_size > 0
        name = parse_engine_name(path.name)
        assert (name.graph, name.model, name.compute_capability) == (graph, "reduced", device.compute_capability)
        sidecar = read_sidecar(path)
        check_sidecar(sidecar, trt.__version__, device.name, device.compute_capability, folder.sha256[graph])
        assert sidecar.profiles == [graph_profiles(folder.manifest.dims, 2, 4)[graph].to_json()]
    assert (out / timing_cache_name(device.compute_capability, trt.__version__)).is_file()


def test_the_frames_profile_runs_from_one_stream_to_max_streams():
    from streamsam.contracts import IMAGE_ENCODER

    profile = graph_profiles(DEFAULT_DIMS, max_objects=8, max_streams=4)
    assert profile[IMAGE_ENCODER].shapes["image"] == ((1, 3, 1024, 1024), (1, 3, 1024, 1024), (4, 3, 1024, 1024))
    assert profile[MEMORY_ATTENTION].shapes["image_embed"][2][0] == 4 and profile[MEMORY_ATTENTION].shapes["row_frame"][2] == (8,)
    assert graph_profiles(DEFAULT_DIMS)[IMAGE_ENCODER].shapes["image"][2][0] == 1  # one stream by default
