from glob import glob

from setuptools import setup

package_name = "streamsam_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="streamsam",
    maintainer_email="streamsam@example.com",
    description="SAM 2 video segmentation as a ROS 2 node (rclpy)",
    license="Apache-2.0",
    entry_points={"console_scripts": ["streamsam_node = streamsam_ros.node:main"]},
)
