"""`import streamsam` is the lean runtime: it must not pull torch, onnx or tensorrt."""

import subprocess
import sys


def test_import_streamsam_loads_no_heavy_framework():
    code = (
        "import sys, streamsam, streamsam.contracts, streamsam.manifest, streamsam.cli, streamsam.stream_tracker, streamsam.multi_stream, streamsam.sources, streamsam.overlay, streamsam.writers, streamsam.track_command, streamsam.video_predictor\n"
        "print(' '.join(m for m in ('torch', 'onnx', 'tensorrt', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import streamsam loaded: {out.stdout.strip()}"


def test_cli_help_works_without_torch_import():
    code = (
        "import sys, streamsam.cli\n"
        "try:\n    streamsam.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "export" in out.stdout
    assert out.stdout.strip().endswith("False")


def test_serve_loads_ray_only_when_a_cluster_starts():
    code = (
        "import sys, streamsam.cli, streamsam.serve\n"
        "streamsam.cli.build_parser()\n"
        "print(' '.join(m for m in ('ray', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"streamsam.serve loaded: {out.stdout.strip()}"
