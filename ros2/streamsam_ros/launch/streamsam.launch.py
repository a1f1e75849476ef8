"""ros2 launch streamsam_ros streamsam.launch.py [params_file:=my.yaml] [namespace:=robot1]"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("streamsam_ros"), "config", "streamsam.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=default_params, description="the node's parameters (YAML)"),
        DeclareLaunchArgument("namespace", default_value="", description="the node's namespace"),
        Node(
            package="streamsam_ros",
            executable="streamsam_node",
            name="streamsam",
            namespace=LaunchConfiguration("namespace"),
            parameters=[LaunchConfiguration("params_file")],
            output="screen",
        ),
    ])
