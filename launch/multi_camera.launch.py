"""Launch one anomaly node process per camera (meta_ood_perception).

    ros2 launch meta_ood_perception multi_camera.launch.py \
        cameras:=/cam/front/image_raw,/cam/rear/image_raw/compressed [respawn:=true] [lifecycle:=true] ...

Each camera in ``cameras`` gets its own node, named ``anomaly_<camera namespace with / → _>``
(``/cam/front/image_raw`` → ``anomaly_cam_front``), serving only that camera (``image_topics:=[camera]``) and
publishing under the camera's namespace as usual (``/cam/front/anomaly_mask``, …). Every other argument of
``anomaly.launch.py`` (params_file, bundle, backend, namespace, log_level, use_sim_time, respawn, respawn_delay,
lifecycle, autostart) is shared by all of them: this file includes ``anomaly.launch.py`` once per camera.

One process per camera isolates the cameras (a stalled or crashed camera does not delay the others, and with
``respawn:=true`` comes back alone) at the cost of one model in memory per camera; ``anomaly.launch.py
image_topics:=a,b`` runs one node for all cameras (one model, one worker serving the cameras in turn). Cameras whose
output namespaces would coincide (``/cam/rgb`` and ``/cam/bgr`` both publish under ``/cam``) cannot run in separate
processes and are refused; one node for both puts their outputs under their own topics instead.
"""

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import (
    PythonLaunchDescriptionSource,
    get_launch_description_from_python_launch_file,
)
from launch.substitutions import LaunchConfiguration

from meta_ood_perception.errors import ConfigError
from meta_ood_perception.ros.params import camera_topics

SINGLE = str(Path(__file__).with_name("anomaly.launch.py"))
PER_CAMERA = ("image_topics", "node_name")  # set by this file for each camera, not shared
NAME_PREFIX = "anomaly_"


def instance_names(cameras):
    """Name the node of each camera; refuse a camera listed twice or two cameras publishing in one namespace.

    Args:
        cameras: camera image topics (absolute ROS topic names, ``…/compressed`` for CompressedImage).

    Returns:
        ``{image topic: node name}`` in the given order.
    """
    names = {}
    owners = {}  # output namespace → the camera publishing there
    for topic in cameras:
        camera = camera_topics(topic)
        namespace = camera.outputs["emergency_brake"].rsplit("/", 1)[0] or "/"
        if namespace in owners:
            raise ConfigError(
                f"cameras {owners[namespace]} and {topic} would both publish under {namespace}: list a camera "
                "once, and run cameras that share a namespace in one node (anomaly.launch.py image_topics:=…)"
            )
        owners[namespace] = topic
        names[topic] = NAME_PREFIX + camera.name.replace("/", "_")
    return names


def _instances(context, *args, **kwargs):
    """One scoped include of anomaly.launch.py per camera (the shared arguments are forwarded into each scope)."""
    text = LaunchConfiguration("cameras").perform(context)
    cameras = [t.strip() for t in text.split(",") if t.strip()]
    if not cameras:
        raise ConfigError(f"launch argument cameras: expected comma-separated image topics, got {text!r}")
    return [
        GroupAction(
            [
                IncludeLaunchDescription(
                    PythonLaunchDescriptionSource(SINGLE),
                    launch_arguments={"image_topics": topic, "node_name": name}.items(),
                )
            ],
            scoped=True,
        )
        for topic, name in instance_names(cameras).items()
    ]


def generate_launch_description():
    """``cameras`` plus the shared arguments of anomaly.launch.py (same names, defaults and descriptions)."""
    single = get_launch_description_from_python_launch_file(SINGLE)
    shared = [argument for argument in single.get_launch_arguments() if argument.name not in PER_CAMERA]
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "cameras",
                default_value="/camera/front/image_raw",
                description="comma-separated camera image topics, one node process each (named anomaly_<camera "
                "namespace>); a topic ending in /compressed is read as CompressedImage",
            ),
            *shared,
            OpaqueFunction(function=_instances),
        ]
    )
