"""`python -m streamsam.ros2`: the node on the rmw_zenoh wire, for a machine without ROS (a camera
box): it joins the ROS 2 graph through a Zenoh router (rmw_zenohd) or straight to peers.

    python -m streamsam.ros2 --connect tcp/192.168.1.10:7447 --model-dir graphs/tiny --image-topic /camera/image_raw
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import threading

from ..errors import StreamSamError
from .rmw_zenoh import ZenohEndpoint
from .settings import NodeSettings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m streamsam.ros2", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    zenoh = parser.add_argument_group("zenoh (rmw_zenoh's defaults: a peer connecting to the router on localhost)")
    zenoh.add_argument("--mode", default="peer", choices=["peer", "client"])
    zenoh.add_argument("--connect", action="append", metavar="ENDPOINT", help="e.g. tcp/192.168.1.10:7447 (repeatable; default tcp/localhost:7447)")
    zenoh.add_argument("--listen", action="append", metavar="ENDPOINT", help="e.g. tcp/0.0.0.0:7450, for peers to connect to this node")
    zenoh.add_argument("--multicast-scouting", action="store_true", help="also find peers by UDP multicast (off in rmw_zenoh)")
    zenoh.add_argument("--domain-id", type=int, default=0, help="ROS_DOMAIN_ID")
    parser.add_argument("--node-name", default="streamsam")
    parser.add_argument("--namespace", default="")
    node = parser.add_argument_group("node (the same settings as the rclpy node's parameters)")
    for field in dataclasses.fields(NodeSettings):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            node.add_argument(flag, action="store_true")
        else:
            node.add_argument(flag, type=type(field.default), default=field.default)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .zenoh_node import Topics, ZenohNode

    args = build_parser().parse_args(argv)
    try:
        settings = NodeSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(NodeSettings)})
        endpoint = ZenohEndpoint(args.mode, tuple(args.connect or ZenohEndpoint.connect), tuple(args.listen or ()),
                                 args.multicast_scouting, args.domain_id)
        topics = Topics(image=settings.image_topic, camera_info=settings.camera_info_topic)
        node = ZenohNode(settings.open_tracker(), endpoint, topics, args.node_name, args.namespace, settings.core_config())
    except StreamSamError as exc:
        print(f"error: {exc}")
        return 1
    print(f"streamsam node {args.node_name!r} on the rmw_zenoh wire ({args.mode}, connect {list(endpoint.connect)}, "
          f"listen {list(endpoint.listen)}, domain {endpoint.domain_id}); images from {settings.image_topic}. Ctrl-C stops it.")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    node.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
