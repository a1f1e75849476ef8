"""The pinned wire format: Jazzy type hashes, rmw_zenoh key expressions, attachments and liveliness
tokens; the vendored interfaces and the ament package's copies in step; the node's settings and
its parameters YAML in step; `import streamsam.ros2` stays free of zenoh and rosbags; and
`python -m streamsam.ros2` joins a graph and leaves it on Ctrl-C."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("zenoh")
pytest.importorskip("rosbags")

from conftest import REPO  # noqa: E402
from ros2_helpers import DEMO_MODEL, free_port, node_endpoint, wait_for_token  # noqa: E402

from streamsam.errors import InputError  # noqa: E402
from streamsam.ros2 import rmw_zenoh, types  # noqa: E402
from streamsam.ros2.settings import NodeSettings  # noqa: E402


def test_jazzy_hashes_and_keys():
    # sensor_msgs/Image's RIHS01 in ROS 2 Jazzy; a rosbags that changed its store would break the wire.
    assert types.type_hash(types.IMAGE) == "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47"
    assert rmw_zenoh.data_key(0, "/camera/image_raw", types.IMAGE) == (
        "0/camera/image_raw/sensor_msgs::msg::dds_::Image_/RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47")
    assert rmw_zenoh.data_key(3, "/streamsam/add_objects", types.ADD_OBJECTS).startswith("3/streamsam/add_objects/streamsam_msgs::srv::dds_::AddObjects_/RIHS01_")
    # Each service hash covers request, response and event: changing the response changes it.
    assert types.type_hash(types.ADD_OBJECTS) not in (types.type_hash(types.ADD_OBJECTS + "_Request"), types.type_hash(types.REMOVE_OBJECT))
    assert rmw_zenoh.qos_key(rmw_zenoh.BEST_EFFORT, 1) == "2::,1:,:,:,,"
    assert rmw_zenoh.qos_key() == "::,:,:,:,,"
    assert rmw_zenoh.mangle("/camera/image_raw") == "%camera%image_raw" and rmw_zenoh.mangle("") == "%"


def test_attachment_is_33_bytes_and_checked():
    data = rmw_zenoh.encode_attachment(7, 1_700_000_000_123_456_789, bytes(range(16)))
    assert len(data) == 33 and data[:8] == (7).to_bytes(8, "little") and data[16] == 16
    assert rmw_zenoh.decode_attachment(data) == (7, 1_700_000_000_123_456_789, bytes(range(16)))
    for bad in (b"", data[:20], data[:16] + b"\x03abc"):
        with pytest.raises(InputError, match="expected 33"):
            rmw_zenoh.decode_attachment(bad)


def test_vendored_interfaces_match_the_ament_package():
    vendored = REPO / "runtime" / "ros2" / "interfaces" / "streamsam_msgs"
    package = REPO / "ros2" / "streamsam_msgs"
    files = sorted(p.relative_to(vendored) for p in vendored.rglob("*.*"))
    assert files == sorted(p.relative_to(package) for p in package.glob("*/*.*") if p.suffix in (".msg", ".srv"))
    for rel in files:
        assert (vendored / rel).read_text() == (package / rel).read_text(), rel
    cmake = (package / "CMakeLists.txt").read_text()
    assert all(f'"{rel}"' in cmake for rel in files)


def test_settings_match_the_parameters_yaml():
    from ruamel.yaml import YAML  # rosbags' YAML library

    params = YAML(typ="safe").load((REPO / "ros2" / "streamsam_ros" / "config" / "streamsam.yaml").read_text())["streamsam"]["ros__parameters"]
    assert params == NodeSettings.names()
    with pytest.raises(InputError, match="backend"):
        NodeSettings(backend="fp16")
    with pytest.raises(InputError, match="engine_dir"):
        NodeSettings(backend="tensorrt")
    assert [f.name for f in dataclasses.fields(NodeSettings)] == list(params)


def test_import_stays_lean():
    code = "import sys, streamsam, streamsam.ros2; print(sorted(m for m in sys.modules if m.split('.')[0] in ('zenoh', 'rosbags', 'cv2', 'onnxruntime')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_module_entry_joins_the_graph_and_stops(tmp_path):
    port, node_port = free_port(), free_port()
    session = node_endpoint(port).open()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamsam.ros2", "--connect", f"tcp/127.0.0.1:{port}", "--listen", f"tcp/127.0.0.1:{node_port}",
         "--model-dir", str(DEMO_MODEL), "--threads", "1", "--node-name", "cam_sam", "--namespace", "robot1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        keys = wait_for_token(session, "@ros2_lv/0/*/*/*/SS/%/%robot1/cam_sam/**", timeout_s=60)
        assert any("/%robot1%cam_sam%add_objects/" in k for k in keys)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "on the rmw_zenoh wire" in out
        deadline = time.monotonic() + 10
        while [r for r in session.liveliness().get("@ros2_lv/0/*/*/*/*/%/%robot1/cam_sam/**", timeout=1.0) if r.ok is not None]:
            assert time.monotonic() < deadline, "the node's tokens outlived it"
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        session.close()
