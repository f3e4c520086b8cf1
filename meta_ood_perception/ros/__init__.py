"""ROS 2 shell: message conversions (ROS-free), the rclpy node, rosbag replay."""
