"""The GPU check's plumbing, on a CPU: benchmarks/gpu_check.py's rehearsal (HostArena, the CPU
provider, the reduced config, few frames), its clear refusal without a GPU, and tools/gpu_carry.py's
split / stage / reassemble / install round trip and wheel-set checks (docs/gpu_check.md)."""

from __future__ import annotations

import random
import importlib.util
import json
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import gpu_carry  # noqa: E402  (tools/ is scripts, not a package)

from benchmarks import gpu_check  # noqa: E402

needs_ort = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnxruntime")


@needs_ort
def test_rehearsal_runs_both_parts_on_the_cpu(reduced_graphs, tmp_path):
    common = ["--rehearse", "--work", str(tmp_path / "work"), "--reduced-graphs", str(reduced_graphs)]
    assert gpu_check.main(["--part", "1", "--out", str(tmp_path / "p1"), "--no-pytest", "--golden-limit", "6", "--flat-frames", "5", *common]) == 0
    one = json.loads((tmp_path / "p1" / "gpu_check_part1.json").read_text())
    variants = {r["variant"] for r in one["golden"]}
    assert variants == {"cpu", "ort_cuda", "device_filled", "device_capacity"}
    assert all(r["pass"] and r["masks_equal_vs_cpu"] for r in one["golden"] if r["variant"] != "cpu")
    assert one["flat_memory"]["pass"] and one["flat_memory"]["free_bytes_drift_after_warmup"] == 0
    assert gpu_check.main(["--part", "2", "--out", str(tmp_path / "p2"), "--objects", "1", "--frames", "4", "--ref-frames", "2", *common]) in (0, 1)
    two = json.loads((tmp_path / "p2" / "gpu_check_part2.json").read_text())
    assert [(r["precision"], r["objects"]) for r in two["ours"]] == [("fp32", 1), ("fp16", 1)]
    fp32 = two["ours"][0]
    assert fp32["pass"] and fp32["min_iou_vs_cpu"] == 1.0 and set(fp32["graphs_ms_p50"]) == {
        "image_encoder", "memory_attention", "mask_decoder", "memory_encoder"}
    assert "error" not in two["ours"][1] and two["ours"][1]["signs_equal_vs_cpu"]
    assert two["official"] == []  # no --official-python when rehearsing (and no official reduced config)
    text = (tmp_path / "p2" / "gpu_check_part2.md").read_text()
    assert "REHEARSAL" in text and "| 256 | 1 | fp16 |" in text


@needs_ort
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="checks the refusal where there is no GPU")
def test_a_gpu_part_without_a_gpu_says_what_is_missing(tmp_path, capsys):
    assert gpu_check.main(["--part", "2", "--out", str(tmp_path), "--work", str(tmp_path / "w")]) == 2
    assert "gpu_check: missing: no NVIDIA GPU here (nvidia-smi not found)" in capsys.readouterr().err
    assert json.loads((tmp_path / "gpu_check_part2.json").read_text())["pass"] is False


def _wheel(path: Path, name: str, version: str, payload: bytes) -> Path:
    """A minimal valid pure wheel holding `payload` as a data file of the package."""
    wheel = path / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"VALUE = 42\n", f"{name}/blob.bin": payload,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in files.items():
            z.writestr(n, data)
        z.writestr(f"{info}/RECORD", record)
    return wheel


@pytest.mark.parametrize("compress", ["none", "xz"])
def test_split_stage_reassemble_install_round_trip(tmp_path, compress):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    payload = random.Random(0).randbytes(3 * 2**20)  # 3 MiB that neither deflate nor xz shrinks: several parts
    _wheel(wheels, "fakepkg", "1.0", payload)
    _wheel(wheels, "otherpkg", "2.0", b"x" * 1000)
    carry = tmp_path / "carry"
    mib = gpu_carry.MIB
    manifest = gpu_carry.pack(wheels, compress, limit=2 * mib, margin=0, carry=carry, tree=mib + mib // 2)  # parts of 0.5 MiB
    assert manifest["part_bytes"] == mib // 2
    assert sum(p["bytes"] for p in manifest["parts"]) == manifest["bundle_bytes"]
    assert all(gpu_carry.call_bytes(manifest, p["call"]) <= 2 * mib for p in manifest["parts"])
    calls = sorted((carry / "calls").iterdir())
    assert len(calls) == len(manifest["parts"]) >= 2 and not (carry / "bundle" / manifest["bundle"]).exists()
    runs = gpu_carry.plan(manifest)
    assert [r["carry"] for r in runs[:-1]] == [[f".carry/calls/{k:02d}"] for k in range(1, len(calls) + 1)]
    assert "install" in runs[-2]["command"] and "--part 1" in runs[-2]["command"] and "--part 2" in runs[-1]["command"]
    assert all(len(r["command"]) <= 2000 and r["timeout_s"] <= 600 for r in runs)

    stage = tmp_path / "stage"
    first = gpu_carry.stage([calls[0]], stage)
    assert first["have"] == [1] and first["missing"] == list(range(2, len(calls) + 1))
    with pytest.raises(gpu_carry.CarryError, match="received no parts of calls"):
        gpu_carry.install(stage, tmp_path / "site")
    for folder in calls[1:]:
        gpu_carry.stage([folder], stage)
    target = tmp_path / "site"
    gpu_carry.install(stage, target)
    assert (target / "fakepkg" / "blob.bin").read_bytes() == payload
    assert (target / "otherpkg" / "__init__.py").is_file()
    gpu_carry.install(stage, target)  # idempotent: the marker names this bundle

    for folder in calls:  # a part altered in transit is refused by its hash
        gpu_carry.stage([folder], stage)
    part = stage / manifest["parts"][0]["name"]
    part.write_bytes(b"\0" + part.read_bytes()[1:])
    with pytest.raises(gpu_carry.CarryError, match="received sha256"):
        gpu_carry.reassemble(stage)


def test_wheel_set_has_one_version_of_each_distribution(tmp_path):
    assert gpu_carry.wheel_dist("onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl") == ("onnxruntime-gpu", "1.31.1")
    with pytest.raises(gpu_carry.CarryError, match="second wheel of hydra-core"):
        gpu_carry.check_wheels(["hydra_core-1.3.2-py3-none-any.whl", "Hydra_Core-1.3.8-py3-none-any.whl"])
    declared = [spec.split("==")[0] for spec in gpu_carry.BINARY_WHEELS + gpu_carry.PURE_WHEELS + gpu_carry.SDIST_WHEELS]
    normalized = [gpu_carry.re.sub(r"[-_.]+", "-", d).lower() for d in declared]
    assert len(set(normalized)) == len(normalized)
    assert all("==" in spec for spec in gpu_carry.BINARY_WHEELS + gpu_carry.PURE_WHEELS + gpu_carry.SDIST_WHEELS)
    manifest_path = gpu_carry.CARRY / "bundle" / gpu_carry.MANIFEST
    if manifest_path.is_file():  # where the wheels were packed (never in CI: /.carry/ is ignored)
        manifest = json.loads(manifest_path.read_text())
        dists = [w["dist"] for w in manifest["wheels"]]
        assert len(set(dists)) == len(dists) and set(dists) == set(normalized)
        assert sum(p["bytes"] for p in manifest["parts"]) == manifest["bundle_bytes"]
        assert max(gpu_carry.call_bytes(manifest, p["call"]) for p in manifest["parts"]) <= manifest["limit_bytes"]
