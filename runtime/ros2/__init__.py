"""ROS 2 support: a node core that knows nothing of ROS (core.py), the messages it reads and writes
as CDR bytes (codec.py, types.py: ROS 2 Jazzy, via rosbags), and two transports over it: the
rmw_zenoh wire protocol on eclipse-zenoh (zenoh_node.py, no ROS install needed) and rclpy (the
ament package in ros2/streamsam_ros). rosbag2 files are a source and an output (bags.py).

Nothing here imports zenoh or rosbags until it is used (`pip install 'streamsam[ros2]'`).
"""

from .core import CoreConfig, NodeCore, ObjectPrompt, Reply, Status
from .outputs import FrameOutput

__all__ = ["CoreConfig", "FrameOutput", "NodeCore", "ObjectPrompt", "Reply", "Status"]
