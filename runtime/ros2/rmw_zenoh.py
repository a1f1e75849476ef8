"""The rmw_zenoh wire protocol as ROS 2 Jazzy speaks it (ros2/rmw_zenoh, docs/design.md and
liveliness_utils.cpp), on eclipse-zenoh, so a process without ROS joins a ROS 2 graph:

- data key expressions `<domain>/<name without leading slash>/<pkg>::msg::dds_::<Type>_/<RIHS01 hash>`
  (services: `::srv::`, served as queryables, requests and replies CDR);
- an attachment on every sample, request and reply: int64 sequence number, int64 source timestamp
  (ns), the 16-byte GID with its length byte, 33 bytes in zenoh-ext's serialisation;
- liveliness tokens `@ros2_lv/<domain>/<zid>/<nid>/<id>/<NN|MP|MS|SS|SC>/<enclave>/<ns>/<node>
  [/<name>/<type>/<hash>/<qos>]` with `/` in names written `%`, which `ros2 topic list` reads.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass

from ..errors import InputError, require
from . import types

ADMIN_SPACE = "@ros2_lv"
# rmw's QoS enums (rmw/types.h) and the profile rmw_zenoh writes as empty fields (rmw_qos_profile_default).
RELIABLE, BEST_EFFORT = 1, 2
DEFAULT_RELIABILITY, DEFAULT_DEPTH = RELIABLE, 10


@dataclass(frozen=True)
class ZenohEndpoint:
    """Where the Zenoh session connects. rmw_zenoh's default: a peer that connects to the router at
    tcp/localhost:7447 (`ros2 run rmw_zenoh_cpp rmw_zenohd`), multicast scouting off."""

    mode: str = "peer"  # peer | client
    connect: tuple[str, ...] = ("tcp/localhost:7447",)
    listen: tuple[str, ...] = ()
    multicast_scouting: bool = False
    domain_id: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("peer", "client"):
            raise InputError(f"zenoh mode | received {self.mode!r}; expected 'peer' or 'client' (a ROS 2 node is a peer of the router)")
        if not 0 <= self.domain_id <= 232:
            raise InputError(f"ROS domain id | received {self.domain_id}; expected 0..232 (ROS_DOMAIN_ID)")

    def open(self):
        """A zenoh.Session with this configuration."""
        zenoh = require("zenoh", "ros2")
        config = zenoh.Config()
        config.insert_json5("mode", f'"{self.mode}"')
        config.insert_json5("connect/endpoints", _json_list(self.connect))
        config.insert_json5("listen/endpoints", _json_list(self.listen))
        config.insert_json5("scouting/multicast/enabled", "true" if self.multicast_scouting else "false")
        return zenoh.open(config)


def _json_list(items) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def mangle(name: str) -> str:
    """A name as liveliness tokens carry it: `/` -> `%` (an empty namespace is `%`)."""
    return name.replace("/", "%") or "%"


def data_key(domain_id: int, name: str, type_name: str) -> str:
    return f"{domain_id}/{name.strip('/')}/{types.dds_name(type_name)}/{types.type_hash(type_name)}"


def qos_key(reliability: int = DEFAULT_RELIABILITY, depth: int = DEFAULT_DEPTH) -> str:
    """rmw_zenoh's QoS field: reliability:durability:history,depth:deadline:lifespan:liveliness,
    each left empty when it is the default (volatile, keep-last, no deadline/lifespan, automatic)."""
    rel = "" if reliability == DEFAULT_RELIABILITY else str(reliability)
    dep = "" if depth == DEFAULT_DEPTH else str(depth)
    return f"{rel}::,{dep}:,:,:,,"


def encode_attachment(sequence: int, timestamp_ns: int, gid: bytes) -> bytes:
    ext = require("zenoh.ext", "ros2")
    return ext.z_serialize((ext.Int64(sequence), ext.Int64(timestamp_ns), bytes(gid))).to_bytes()


def decode_attachment(data) -> tuple[int, int, bytes]:
    """(sequence number, source timestamp ns, gid) of an rmw_zenoh attachment."""
    zenoh, ext = require("zenoh", "ros2"), require("zenoh.ext", "ros2")
    raw = b"" if data is None else (data.to_bytes() if hasattr(data, "to_bytes") else bytes(data))
    try:
        seq, stamp, gid = ext.z_deserialize(tuple[ext.Int64, ext.Int64, bytes], zenoh.ZBytes(raw))
        if len(gid) != 16:
            raise ValueError(f"a {len(gid)}-byte gid")
    except Exception as exc:
        raise InputError(f"rmw_zenoh attachment | received {len(raw)} bytes ({exc}); expected 33: int64 sequence, int64 timestamp, 16-byte gid") from None
    return int(seq), int(stamp), bytes(gid)


class Graph:
    """One ROS node's presence on the graph: its liveliness tokens, and its entities' GIDs."""

    def __init__(self, session, endpoint: ZenohEndpoint, node_name: str, namespace: str = "") -> None:
        self.session, self.domain_id = session, endpoint.domain_id
        self.node_name, self.namespace = node_name, "/" + namespace.strip("/") if namespace.strip("/") else ""
        self._ids = itertools.count(1)
        self._clients: dict[tuple[str, str], bytes] = {}  # one client token per service, however many calls
        self._node_prefix = f"{ADMIN_SPACE}/{self.domain_id}/{session.zid()}/0"
        self._node_tail = f"{mangle('/')}/{mangle(self.namespace)}/{mangle(node_name)}"
        self.tokens = [session.liveliness().declare_token(f"{self._node_prefix}/0/NN/{self._node_tail}")]

    def resolve(self, name: str) -> str:
        """`~/x` -> `/<ns>/<node>/x`; a relative name goes under the namespace; absolute stays."""
        if name.startswith("~/"):
            return f"{self.namespace}/{self.node_name}/{name[2:]}"
        return name if name.startswith("/") else f"{self.namespace}/{name}"

    def announce(self, kind: str, name: str, type_name: str, qos: str) -> bytes:
        """Declare an entity's liveliness token; returns its GID (16 bytes from its token, as rmw_zenoh
        derives it; rmw_zenoh hashes with XXH3-128, we with BLAKE2b: only uniqueness matters)."""
        key = (f"{self._node_prefix}/{next(self._ids)}/{kind}/{self._node_tail}/{mangle(name)}/"
               f"{types.dds_name(type_name)}/{types.type_hash(type_name)}/{qos}")
        self.tokens.append(self.session.liveliness().declare_token(key))
        return hashlib.blake2b(key.encode(), digest_size=16).digest()

    def close(self) -> None:
        for token in self.tokens:
            token.undeclare()
        self.tokens.clear()


class Publisher:
    """A ROS publisher: CDR bytes out on the topic's key with the attachment rmw_zenoh expects."""

    def __init__(self, graph: Graph, name: str, type_name: str, reliability: int = RELIABLE, depth: int = 1) -> None:
        zenoh = require("zenoh", "ros2")
        name = graph.resolve(name)
        self.key = data_key(graph.domain_id, name, type_name)
        self.gid = graph.announce("MP", name, type_name, qos_key(reliability, depth))
        # As rmw_zenoh: best effort drops under congestion; our reliable outputs wait rather than lose a frame's result.
        congestion = zenoh.CongestionControl.DROP if reliability == BEST_EFFORT else zenoh.CongestionControl.BLOCK
        self._publisher = graph.session.declare_publisher(self.key, congestion_control=congestion)
        self._sequence = itertools.count(1)

    def put(self, payload: bytes) -> None:
        self._publisher.put(payload, attachment=encode_attachment(next(self._sequence), time.time_ns(), self.gid))

    def close(self) -> None:
        self._publisher.undeclare()


def subscribe(graph: Graph, name: str, type_name: str, callback, reliability: int = BEST_EFFORT, depth: int = 1):
    """A ROS subscription: `callback(payload bytes, attachment)` on Zenoh's thread."""
    name = graph.resolve(name)
    graph.announce("MS", name, type_name, qos_key(reliability, depth))
    return graph.session.declare_subscriber(
        data_key(graph.domain_id, name, type_name),
        lambda sample: callback(sample.payload.to_bytes(), sample.attachment),
    )


def serve(graph: Graph, name: str, service_type: str, callback):
    """A ROS service server: a queryable on the service's key; `callback(query)` on Zenoh's thread."""
    name = graph.resolve(name)
    graph.announce("SS", name, service_type, qos_key())
    return graph.session.declare_queryable(data_key(graph.domain_id, name, service_type), callback, complete=True)


def reply(query, payload: bytes, sequence: int, gid: bytes) -> None:
    """Answer a service request as rmw_zenoh does: the request's sequence number and client GID
    (from decode_attachment(query.attachment)) in the reply's attachment, with the reply's own timestamp."""
    query.reply(query.key_expr, payload, attachment=encode_attachment(sequence, time.time_ns(), gid))


def call(graph: Graph, name: str, service_type: str, request: bytes, timeout_s: float = 30.0, sequence: int = 1) -> bytes:
    """A ROS service client call: the request with its attachment, the first reply's CDR bytes."""
    name = graph.resolve(name)
    if (name, service_type) not in graph._clients:
        graph._clients[name, service_type] = graph.announce("SC", name, service_type, qos_key())
    gid = graph._clients[name, service_type]
    replies = graph.session.get(
        data_key(graph.domain_id, name, service_type), payload=request,
        attachment=encode_attachment(sequence, time.time_ns(), gid), timeout=timeout_s,
    )
    for answer in replies:
        if answer.ok is None:
            raise InputError(f"service {name} | received an error reply: {answer.err.payload.to_string()}; expected a response")
        return answer.ok.payload.to_bytes()
    raise InputError(f"service {name} | received no reply within {timeout_s} s; expected a streamsam node serving it. Check the Zenoh endpoints and domain id.")
