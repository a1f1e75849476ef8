"""streamsam's SAM 2 node on rclpy: a thin transport over streamsam.ros2's core and codec."""
