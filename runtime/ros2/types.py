"""ROS 2 message types, pinned to Jazzy: rosbags' Jazzy typestore plus the vendored definitions in
interfaces/ (vision_msgs, ours), their CDR (de)serialisation and RIHS01 type hashes.

Services are registered as ROS registers them (rosidl): `pkg/srv/Name_Request`, `_Response`,
`_Event`, and `pkg/srv/Name` with the three as fields, which is what the service's type hash covers.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import InputError, require

INTERFACES = Path(__file__).parent / "interfaces"
STORE = "ROS2_JAZZY"  # rosbags.typesys.Stores member: the message definitions and hashes we speak

# The types the node reads, writes and serves.
ADD_OBJECTS = "streamsam_msgs/srv/AddObjects"
REMOVE_OBJECT = "streamsam_msgs/srv/RemoveObject"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
SEGMENTATION = "streamsam_msgs/msg/Segmentation"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"


def _srv_names(value):
    """rosbags' msg parser files every type under `/msg/`; a service's parts live under `/srv/`."""
    if isinstance(value, str):
        return value.replace("/srv/msg/", "/srv/")
    if isinstance(value, (tuple, list)):
        return type(value)(_srv_names(v) for v in value)
    if isinstance(value, dict):
        return {_srv_names(k): _srv_names(v) for k, v in value.items()}
    return value


def _service_types(name: str, text: str, typesys) -> dict:
    request, response = text.split("\n---\n")
    types = {}
    types.update(typesys.get_types_from_msg(request, f"{name}_Request"))
    types.update(typesys.get_types_from_msg(response, f"{name}_Response"))
    pkg, _, short = name.split("/")
    event = f"service_msgs/ServiceEventInfo info\n{pkg}/srv/{short}_Request[<=1] request\n{pkg}/srv/{short}_Response[<=1] response\n"
    types.update(typesys.get_types_from_msg(event, f"{name}_Event"))
    service = f"{pkg}/srv/{short}_Request request_message\n{pkg}/srv/{short}_Response response_message\n{pkg}/srv/{short}_Event event_message\n"
    types.update(typesys.get_types_from_msg(service, name))
    return _srv_names(types)


@lru_cache(maxsize=None)
def typestore():
    """rosbags' Jazzy typestore with the vendored messages and services registered."""
    typesys = require("rosbags.typesys", "ros2")
    store = typesys.get_typestore(getattr(typesys.Stores, STORE))
    types = {}
    for path in sorted(INTERFACES.glob("*/msg/*.msg")):
        types.update(typesys.get_types_from_msg(path.read_text(), f"{path.parts[-3]}/msg/{path.stem}"))
    store.register(types)  # messages first: the services refer to them
    types = {}
    for path in sorted(INTERFACES.glob("*/srv/*.srv")):
        types.update(_service_types(f"{path.parts[-3]}/srv/{path.stem}", path.read_text(), typesys))
    store.register(types)
    return store


@lru_cache(maxsize=None)
def type_hash(name: str) -> str:
    """The RIHS01 hash ROS 2 (Iron and later) puts in key expressions and bags."""
    return typestore().hash_rihs01(name)


def dds_name(name: str) -> str:
    """`sensor_msgs/msg/Image` -> `sensor_msgs::msg::dds_::Image_`, as rmw_zenoh's key expressions."""
    pkg, kind, short = name.split("/")
    return f"{pkg}::{kind}::dds_::{short}_"


def message(name: str):
    """The message class, for building messages: message(IMAGE)(header=..., ...)."""
    return typestore().types[name]


def serialize(msg, name: str) -> bytes:
    return bytes(typestore().serialize_cdr(msg, name))


def deserialize(data: bytes | memoryview, name: str):
    """CDR bytes -> message; bytes that are not one raise InputError (the caller reports it and
    carries on)."""
    try:
        return typestore().deserialize_cdr(bytes(data), name)
    except Exception as exc:  # rosbags raises struct errors, IndexError, its own errors...: all mean bad bytes
        raise InputError(
            f"{name} | received {len(bytes(data))} bytes that do not deserialise ({type(exc).__name__}: {exc}); "
            f"expected a CDR-serialised {name}. Check the sender's message type."
        ) from None


def time_msg(stamp_ns: int):
    """builtin_interfaces/Time from nanoseconds (exact: sec * 1e9 + nanosec)."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return message("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def stamp_ns(time) -> int:
    return int(time.sec) * 1_000_000_000 + int(time.nanosec)
