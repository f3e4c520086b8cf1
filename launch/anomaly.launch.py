"""Launch meta_ood_perception's anomaly_node (road-hazard / out-of-distribution detection with a brake hint).

    ros2 launch meta_ood_perception anomaly.launch.py
    ros2 launch meta_ood_perception anomaly.launch.py image_topics:=/cam/front/image_raw,/cam/rear/image_raw \
        bundle:=/opt/bundles/wrn38 backend:=tensorrt namespace:=perception

Every setting lives in the parameter file (default: the package's config/anomaly_node.param.yaml); the launch
arguments bundle, backend and image_topics override it only when given.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "meta_ood_perception"


def _node(context, *args, **kwargs):
    """Build the node with the parameter file plus the overrides that were given on the command line."""
    overrides = {}
    for name in ("bundle", "backend"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    topics = LaunchConfiguration("image_topics").perform(context)
    if topics:
        overrides["image_topics"] = [t.strip() for t in topics.split(",") if t.strip()]
    parameters = [LaunchConfiguration("params_file").perform(context)]
    if overrides:
        parameters.append(overrides)
    return [
        Node(
            package=PACKAGE,
            executable="anomaly_node",
            name="anomaly_node",
            namespace=LaunchConfiguration("namespace"),
            parameters=parameters,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "anomaly_node.param.yaml"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="ROS 2 parameter YAML of anomaly_node (format: config/anomaly_node.param.yaml)",
            ),
            DeclareLaunchArgument(
                "bundle",
                default_value="",
                description="model bundle directory or 'default' (empty: the parameter file's value)",
            ),
            DeclareLaunchArgument(
                "backend",
                default_value="",
                description="inference backend onnxruntime, torch or tensorrt (empty: the parameter file's value)",
            ),
            DeclareLaunchArgument(
                "image_topics",
                default_value="",
                description="comma-separated camera image topics, one per camera; a topic ending in /compressed "
                "is read as CompressedImage (empty: the parameter file's value)",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="ROS namespace of the node (its ~/ debug topics)"
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="node log level: debug, info, warn, error, fatal"
            ),
            OpaqueFunction(function=_node),
        ]
    )
