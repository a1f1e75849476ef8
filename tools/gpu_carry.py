"""Carry Python wheels to the lent GPU machine in calls of under 64 MiB, and install them there.

The device tool sends the working tree (tracked and untracked-not-ignored files) plus the ignored
paths a call names in `carry`, 64 MiB in all per call. onnxruntime-gpu for CUDA 13 (cp312) alone is
~244 MiB, so it travels in parts, one folder per call, staged between calls in a folder of the device
machine that survives while the machine stays warm (30 s after each call). Standard library only:
the same file runs here (download, pack, plan, rehearse) and on the device machine (stage, install).

    python tools/gpu_carry.py download            # here: wheels into .carry/wheels (pip download / pip wheel)
    python tools/gpu_carry.py pack                # here: bundle (xz), split by the call budget, manifest, .carry/calls/NN
    python tools/gpu_carry.py plan                # here: the exact device `run` calls, in order
    python tools/gpu_carry.py rehearse            # here: reassemble, verify, pip install --target a temp folder
    python3 tools/gpu_carry.py stage .carry/calls/01          # device: copy a call's part into /tmp/stage, verify
    python3 tools/gpu_carry.py install            # device: reassemble, verify, pip install --target /tmp/site

Everything carried lives under /.carry/ (git-ignored): wheels/, bundle/, calls/NN/.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".carry"
WHEELS, BUNDLE, CALLS = CARRY / "wheels", CARRY / "bundle", CARRY / "calls"
MANIFEST = "manifest.json"
STAGE, SITE = Path("/tmp/stage"), Path("/tmp/site")
MIB = 1 << 20
CALL_LIMIT = 64 * MIB  # the device tool's working tree + carried paths, per call
MARGIN = 2 * MIB  # files that change between pack and the calls, the call folder's manifest

# What the GPU image lacks (KINDS.md lists what it has). onnxruntime-gpu 1.31.1 is built for CUDA 13.0
# (its build_and_package_info.py); its needs (flatbuffers, numpy, packaging, protobuf, the nvidia-*
# CUDA 13 libraries) are on the image. sam2 1.1.0 is an sdist: built here as a pure wheel without its
# CUDA extension (SAM2_BUILD_CUDA=0, as tests/golden/README.md installs it). sam2 needs hydra-core,
# omegaconf (+ antlr4-python3-runtime 4.9.x), iopath; tqdm, pillow, portalocker, pyyaml, torch and
# torchvision are on the image. Versions as in the official venv the CPU benchmarks use.
BINARY_WHEELS = ["onnxruntime-gpu==1.31.1"]
PURE_WHEELS = ["hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3", "iopath==0.1.10"]
SDIST_WHEELS = ["sam2==1.1.0"]  # SAM2_BUILD_CUDA=0, --no-build-isolation (needs torch here)
PIP_PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_27_x86_64",
                "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
                "--platform", "manylinux1_x86_64"]  # fmt: skip
INSTALL = ["-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade"]


class CarryError(Exception):
    """Printed as one line, exit code 1."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    return h.hexdigest()


def wheel_dist(filename: str) -> tuple[str, str]:
    """(normalized distribution name, version) from a wheel file name (PEP 427 / 503)."""
    parts = filename[: -len(".whl")].split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        raise CarryError(f"{filename} | received a file that is not a wheel; expected NAME-VERSION-...-PLATFORM.whl")
    return re.sub(r"[-_.]+", "-", parts[0]).lower(), parts[1]


def check_wheels(names: list[str]) -> dict[str, str]:
    """{dist: version}; two versions (or two files) of one distribution stop pip, so refuse them."""
    seen: dict[str, str] = {}
    for name in names:
        dist, version = wheel_dist(name)
        if dist in seen:
            raise CarryError(f"{name} | received a second wheel of {dist} (also {seen[dist]}); expected one version of each")
        seen[dist] = version
    return seen


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what every call sends: tracked and untracked-not-ignored files (as git sees them)."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard", "-z"],
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(p)).stat().st_size for p in listed if p and (repo / os.fsdecode(p)).is_file())


# -- here: download, pack, plan


def download(out: Path = WHEELS, python: str = sys.executable) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pip = [python, "-m", "pip"]
    for spec in BINARY_WHEELS:
        subprocess.run([*pip, "download", "--no-deps", *PIP_PLATFORM, "-d", str(out), spec], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(out), *PURE_WHEELS], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), *SDIST_WHEELS], check=True,
                   env=dict(os.environ, SAM2_BUILD_CUDA="0"))
    check_wheels([p.name for p in out.glob("*.whl")])
    for p in sorted(out.glob("*.whl")):
        print(f"{p.stat().st_size / MIB:9.2f} MiB  {p.name}")


def stored_wheel(path: Path) -> bytes:
    """The wheel re-zipped without compression (same entries, same bytes: RECORD's hashes hold), so
    that xz sees the raw files instead of deflate's output."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            stored = zipfile.ZipInfo(info.filename, info.date_time)
            stored.external_attr, stored.compress_type = info.external_attr, zipfile.ZIP_STORED
            dst.writestr(stored, data)
    return out.getvalue()


def build_bundle(wheels: list[Path], out: Path, compress: str) -> Path:
    """One tar of the wheels (fixed order and mtimes), optionally xz-compressed with stored wheels."""
    out.mkdir(parents=True, exist_ok=True)
    tar_path = out / "bundle.tar"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(wheels, key=lambda p: p.name):
            data = stored_wheel(wheel) if compress == "xz" else wheel.read_bytes()
            info = tarfile.TarInfo(f"wheels/{wheel.name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    if compress == "none":
        return tar_path
    xz = shutil.which("xz")
    target = out / "bundle.tar.xz"
    if xz:  # multithreaded where the binary exists; the device decompresses with Python's lzma
        with open(target, "wb") as f:
            subprocess.run([xz, "-T0", "-6", "-c", str(tar_path)], stdout=f, check=True)
    else:
        with open(tar_path, "rb") as src, lzma.open(target, "wb", preset=6) as dst:
            shutil.copyfileobj(src, dst, MIB)
    tar_path.unlink()
    return target


def split(path: Path, part_bytes: int, calls: Path) -> list[dict]:
    """`path` in parts of at most `part_bytes`, part k in calls/NN/ (one folder per device call)."""
    parts = []
    with open(path, "rb") as f:
        for k in range(1, 10**4):
            data = f.read(part_bytes)
            if not data:
                break
            folder = calls / f"{k:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{path.name}.part{k:02d}"
            (folder / name).write_bytes(data)
            parts.append({"name": name, "call": k, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    return parts


def pack(wheels_dir: Path = WHEELS, compress: str = "none", limit: int = CALL_LIMIT, margin: int = MARGIN,
         repo: Path = REPO, carry: Path = CARRY, tree: int | None = None) -> dict:
    wheels = sorted(wheels_dir.glob("*.whl"))
    if not wheels:
        raise CarryError(f"{wheels_dir} | received no wheels; expected them there. Run: python tools/gpu_carry.py download")
    dists = check_wheels([w.name for w in wheels])
    tree = tree_bytes(repo) if tree is None else tree
    part_bytes = limit - tree - margin
    if part_bytes < 64 * 1024:
        raise CarryError(f"working tree | received {tree / MIB:.1f} MiB; expected well under {limit / MIB:.0f} MiB to leave room for parts")
    for old in (carry / "bundle", carry / "calls"):
        shutil.rmtree(old, ignore_errors=True)
    started = time.perf_counter()
    bundle = build_bundle(wheels, carry / "bundle", compress)
    parts = split(bundle, part_bytes, carry / "calls")
    manifest = {
        "format": 1, "bundle": bundle.name, "compress": compress, "bundle_bytes": bundle.stat().st_size,
        "bundle_sha256": sha256(bundle), "tree_bytes": tree, "part_bytes": part_bytes, "limit_bytes": limit,
        "pack_s": round(time.perf_counter() - started, 1), "parts": parts,
        "wheels": [{"file": w.name, "dist": wheel_dist(w.name)[0], "version": dists[wheel_dist(w.name)[0]],
                    "bytes": w.stat().st_size, "sha256": sha256(w)} for w in wheels],
    }
    text = json.dumps(manifest, indent=1) + "\n"
    (carry / "bundle" / MANIFEST).write_text(text)
    for part in parts:
        (carry / "calls" / f"{part['call']:02d}" / MANIFEST).write_text(text)
    bundle.unlink()  # the parts are the bundle now
    return manifest


def read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise CarryError(f"{path} | received no manifest; expected one. Run: python tools/gpu_carry.py pack")
    return json.loads(path.read_text())


def call_bytes(manifest: dict, call: int) -> int:
    return manifest["tree_bytes"] + sum(p["bytes"] for p in manifest["parts"] if p["call"] == call)


PART_1 = "PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --part 1 --out $OUT/part1"
PART_2 = "PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --part 2 --out $OUT/part2"
PREP = "PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --part prep --budget-s {budget} --out $OUT/prep"


def plan(manifest: dict, prep_budget_s: int = 25) -> list[dict]:
    """The device `run` calls in order: one per part (staging, plus preparation work that needs no
    onnxruntime-gpu while the parts arrive), the last one installs and runs part 1; then part 2.
    Each must start within the machine's 30-second warm window after the previous one returns."""
    calls = sorted({p["call"] for p in manifest["parts"]})
    site = "export PYTHONPATH=/tmp/site"
    runs = []
    for call in calls:
        folder = f".carry/calls/{call:02d}"
        stage = f"python3 tools/gpu_carry.py stage {folder}"
        if call != calls[-1]:
            command = f"{stage} && {PREP.format(budget=prep_budget_s)}"
            runs.append({"carry": [folder], "command": command, "timeout_s": 150, "bytes": call_bytes(manifest, call)})
        else:
            command = f"{stage} && python3 tools/gpu_carry.py install && {site} && {PART_1}"
            runs.append({"carry": [folder], "command": command, "timeout_s": 240, "bytes": call_bytes(manifest, call)})
    runs.append({"carry": [], "command": f"{site} && {PART_2}", "timeout_s": 200, "bytes": manifest["tree_bytes"]})
    return runs


# -- the device machine: stage, install


def stage(folders: list[Path], stage_dir: Path = STAGE) -> dict:
    """Copy each folder's parts into `stage_dir`, verify every staged part, print what is missing."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    manifest = None
    for folder in folders:
        manifest = read_manifest(folder / MANIFEST)
        for f in folder.iterdir():
            shutil.copyfile(f, stage_dir / f.name)
    manifest = manifest or read_manifest(stage_dir / MANIFEST)
    have, missing = [], []
    for part in manifest["parts"]:
        path = stage_dir / part["name"]
        if path.is_file() and path.stat().st_size == part["bytes"] and sha256(path) == part["sha256"]:
            have.append(part["call"])
        else:
            missing.append(part["call"])
    print(f"gpu_carry stage: {stage_dir} holds calls {have} of {len(manifest['parts'])}, verified"
          + (f"; still to come: {missing}" if missing else "; complete"), flush=True)
    if not folders and missing:
        raise CarryError(f"{stage_dir} | missing parts of calls {missing}")
    return {"have": have, "missing": missing}


def reassemble(stage_dir: Path = STAGE) -> tuple[dict, list[Path]]:
    """The bundle from the staged parts (each part's hash, then the whole bundle's), unpacked into
    stage_dir/wheels; returns (manifest, wheels). Anything missing or altered raises CarryError."""
    manifest = read_manifest(stage_dir / MANIFEST)
    missing = [p["call"] for p in manifest["parts"] if not (stage_dir / p["name"]).is_file()]
    if missing:
        raise CarryError(f"{stage_dir} | received no parts of calls {missing}; expected all {len(manifest['parts'])}: "
                         "the machine was fresh (the warm window passed?). Stage every call again from call 1")
    bundle = stage_dir / manifest["bundle"]
    h = hashlib.sha256()
    with open(bundle, "wb") as out:
        for part in manifest["parts"]:
            data = (stage_dir / part["name"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise CarryError(f"{stage_dir / part['name']} | received sha256 {hashlib.sha256(data).hexdigest()}; expected {part['sha256']}")
            h.update(data)
            out.write(data)
    if h.hexdigest() != manifest["bundle_sha256"]:
        raise CarryError(f"{bundle} | received sha256 {h.hexdigest()}; expected {manifest['bundle_sha256']}")
    wheels_dir = stage_dir / "wheels"
    shutil.rmtree(wheels_dir, ignore_errors=True)
    opener = lzma.open if manifest["compress"] == "xz" else open
    with opener(bundle, "rb") as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            if not member.isfile() or not re.fullmatch(r"wheels/[A-Za-z0-9_.+-]+\.whl", member.name):
                raise CarryError(f"{bundle} | received member {member.name!r}; expected wheels/NAME.whl only")
            wheels_dir.mkdir(exist_ok=True)
            (wheels_dir / Path(member.name).name).write_bytes(tar.extractfile(member).read())
    bundle.unlink()
    wheels = sorted(wheels_dir.glob("*.whl"))
    check_wheels([w.name for w in wheels])
    if sorted(w.name for w in wheels) != sorted(w["file"] for w in manifest["wheels"]):
        raise CarryError(f"{wheels_dir} | received {[w.name for w in wheels]}; expected {[w['file'] for w in manifest['wheels']]}")
    if manifest["compress"] == "none":  # xz bundles hold stored re-zips: their bytes differ from the originals by design
        expected = {w["file"]: w["sha256"] for w in manifest["wheels"]}
        for w in wheels:
            if sha256(w) != expected[w.name]:
                raise CarryError(f"{w} | received sha256 {sha256(w)}; expected {expected[w.name]}")
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            bad = z.testzip()  # every member's CRC: what a stored re-zip must still pass
        if bad is not None:
            raise CarryError(f"{w} | received a bad CRC for {bad}; expected an intact wheel")
    return manifest, wheels


def install(stage_dir: Path = STAGE, target: Path = SITE, python: str = sys.executable) -> dict:
    """Reassemble and verify the bundle, then pip install --no-index --no-deps --target."""
    manifest = read_manifest(stage_dir / MANIFEST)
    marker = target / ".gpu_carry.json"
    if marker.is_file() and json.loads(marker.read_text()).get("bundle_sha256") == manifest["bundle_sha256"]:
        print(f"gpu_carry install: {target} already holds this bundle", flush=True)
        return manifest
    started = time.perf_counter()
    manifest, wheels = reassemble(stage_dir)
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([python, *INSTALL, "--target", str(target), *map(str, wheels)])
    if done.returncode != 0:
        raise CarryError(f"pip install --target {target} | received exit {done.returncode} (pip's message above); expected the wheels installed")
    marker.write_text(json.dumps({"bundle_sha256": manifest["bundle_sha256"], "wheels": [w.name for w in wheels]}))
    print(f"gpu_carry install: {len(wheels)} wheels into {target} in {time.perf_counter() - started:.1f} s", flush=True)
    return manifest


# -- here: the whole round trip


def rehearse(python_for_import: str | None = None) -> dict:
    """What the calls do, here: stage every call folder into a temp stage, install into a temp
    target with that Python, then import onnxruntime from it with PYTHONPATH (the wheel is cp312: give
    a Python 3.12, and its numpy, flatbuffers, packaging and protobuf in REHEARSE_EXTRA_PATH)."""
    manifest = read_manifest(CARRY / "bundle" / MANIFEST)
    report = {"calls": len(manifest["parts"]) + 1, "bundle_bytes": manifest["bundle_bytes"],
              "largest_call_bytes": max(call_bytes(manifest, p["call"]) for p in manifest["parts"])}
    with tempfile.TemporaryDirectory() as tmp:
        stage_dir, target = Path(tmp) / "stage", Path(tmp) / "site"
        for call in sorted({p["call"] for p in manifest["parts"]}):
            stage([CALLS / f"{call:02d}"], stage_dir)
        install(stage_dir, target, python_for_import or sys.executable)
        report["installed"] = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
        if python_for_import:
            probe = "import onnxruntime as o; print(o.__version__, o.get_available_providers())"
            done = subprocess.run([python_for_import, "-c", probe], capture_output=True, text=True,
                                  env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("REHEARSE_EXTRA_PATH", "")])))
            report["import"] = (done.stdout or done.stderr).strip().splitlines()[-1] if (done.stdout or done.stderr) else ""
            report["import_ok"] = done.returncode == 0
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/gpu_carry.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("download")
    pk = sub.add_parser("pack")
    pk.add_argument("--compress", choices=("none", "xz"), default="xz", help="xz: 195 MiB in 6 parts instead of 244 MiB in 7 (about 6 min here)")
    pk.add_argument("--limit-mib", type=float, default=CALL_LIMIT / MIB)
    pk.add_argument("--margin-mib", type=float, default=MARGIN / MIB)
    pl = sub.add_parser("plan")
    pl.add_argument("--json", action="store_true")
    pl.add_argument("--prep-budget-s", type=int, default=25)
    st = sub.add_parser("stage")
    st.add_argument("folders", nargs="*", type=Path)
    st.add_argument("--stage", type=Path, default=STAGE)
    ins = sub.add_parser("install")
    ins.add_argument("--stage", type=Path, default=STAGE)
    ins.add_argument("--target", type=Path, default=SITE)
    rh = sub.add_parser("rehearse")
    rh.add_argument("--python", default=None, help="a Python 3.12 to import onnxruntime with from the target")
    args = p.parse_args(argv)
    try:
        if args.command == "download":
            download()
        elif args.command == "pack":
            m = pack(compress=args.compress, limit=int(args.limit_mib * MIB), margin=int(args.margin_mib * MIB))
            print(f"bundle {m['bundle']} {m['bundle_bytes'] / MIB:.1f} MiB ({m['compress']}, {m['pack_s']} s) in "
                  f"{len(m['parts'])} parts of <= {m['part_bytes'] / MIB:.1f} MiB (tree {m['tree_bytes'] / MIB:.1f} MiB)")
        elif args.command == "plan":
            manifest = read_manifest(CARRY / "bundle" / MANIFEST)
            now = tree_bytes()
            if now != manifest["tree_bytes"]:  # the tree changed since pack: the calls carry what it is now
                print(f"# working tree now {now / MIB:.2f} MiB (packed with {manifest['tree_bytes'] / MIB:.2f} MiB)")
                manifest["tree_bytes"] = now
            runs = plan(manifest, args.prep_budget_s)
            over = [k for k, r in enumerate(runs, 1) if r["bytes"] > manifest["limit_bytes"]]
            if over:
                raise CarryError(f"calls {over} | received more than {manifest['limit_bytes'] / MIB:.0f} MiB with today's tree; "
                                 "expected each under the limit. Run: python tools/gpu_carry.py pack --compress xz")
            if args.json:
                print(json.dumps(runs, indent=1))
            else:
                for k, r in enumerate(runs, 1):
                    print(f"# call {k} of {len(runs)}: {r['bytes'] / MIB:.1f} MiB sent")
                    print(json.dumps({"command": r["command"], "carry": r["carry"], "timeout_s": r["timeout_s"]}))
        elif args.command == "stage":
            stage(args.folders, args.stage)
        elif args.command == "install":
            install(args.stage, args.target)
        elif args.command == "rehearse":
            print(json.dumps(rehearse(args.python), indent=1))
    except CarryError as err:
        print(f"gpu_carry: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
