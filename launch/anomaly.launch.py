"""Launch meta_ood_perception's anomaly node (road-hazard / out-of-distribution detection with a brake hint).

    ros2 launch meta_ood_perception anomaly.launch.py
    ros2 launch meta_ood_perception anomaly.launch.py image_topics:=/cam/front/image_raw,/cam/rear/image_raw \
        bundle:=/opt/bundles/wrn38 backend:=tensorrt namespace:=perception respawn:=true
    ros2 launch meta_ood_perception anomaly.launch.py lifecycle:=true            # configure + activate at start
    ros2 launch meta_ood_perception anomaly.launch.py lifecycle:=true autostart:=false   # a manager drives it

One node serves every camera in ``image_topics`` (one model in memory, one worker taking the cameras in turn); for
one process per camera see ``multi_camera.launch.py``. Every node setting lives in the parameter file (default: the
package's ``config/anomaly_node.param.yaml``, keyed ``/**`` so it applies under any name and namespace); the
arguments ``bundle``, ``backend`` and ``image_topics`` override it only when given. ``use_sim_time`` is always
passed (default false) and wins over the file. ``respawn`` restarts the process ``respawn_delay`` seconds after it
exits (with ``lifecycle:=true autostart:=true`` the restarted node is configured and activated again).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import evaluate_condition_expression
from launch.event_handlers import OnProcessStart
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

from meta_ood_perception.errors import ConfigError

PACKAGE = "meta_ood_perception"
LIFECYCLE_EXECUTABLE = "anomaly_lifecycle_node"


def _flag(context, name):
    """A boolean launch argument (true / false / 1 / 0, any case), read the way launch conditions read it."""
    return evaluate_condition_expression(context, [LaunchConfiguration(name)])


def _seconds(context, name):
    """A non-negative number of seconds given as a launch argument."""
    text = LaunchConfiguration(name).perform(context)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"launch argument {name}: expected seconds, got {text!r}") from None
    if not value >= 0.0:  # also refuses nan
        raise ConfigError(f"launch argument {name}: expected seconds >= 0, got {text!r}")
    return value


def _parameters(context):
    """The parameter file, then the overrides given on the command line (``use_sim_time`` always)."""
    overrides = {"use_sim_time": _flag(context, "use_sim_time")}
    for name in ("bundle", "backend"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    topics = LaunchConfiguration("image_topics").perform(context)
    if topics.strip():
        overrides["image_topics"] = [t.strip() for t in topics.split(",") if t.strip()]
    return [LaunchConfiguration("params_file").perform(context), overrides]


def _autostart(node):
    """Configure the lifecycle node each time its process starts (respawns included), activate it once configured.

    Only the configure transition (configuring → inactive) triggers the activation, so a node deactivated by hand
    (``ros2 lifecycle set <node> deactivate``) stays inactive.
    """
    configure = ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_CONFIGURE)
    activate = ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=Transition.TRANSITION_ACTIVATE)
    return [
        RegisterEventHandler(OnProcessStart(target_action=node, on_start=[EmitEvent(event=configure)])),
        RegisterEventHandler(
            OnStateTransition(
                target_lifecycle_node=node,
                start_state="configuring",
                goal_state="inactive",
                entities=[EmitEvent(event=activate)],
            )
        ),
    ]


def _node(context, *args, **kwargs):
    """The node action (plain or lifecycle-managed) with the parameter file plus the given overrides."""
    settings = {
        "name": LaunchConfiguration("node_name").perform(context),
        "namespace": LaunchConfiguration("namespace").perform(context),
        "parameters": _parameters(context),
        "arguments": ["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
        "respawn": _flag(context, "respawn"),
        "respawn_delay": _seconds(context, "respawn_delay"),
        "output": "screen",
        "emulate_tty": True,
    }
    if not _flag(context, "lifecycle"):
        return [Node(package=PACKAGE, executable="anomaly_node", **settings)]
    node = LifecycleNode(package=PACKAGE, executable=LIFECYCLE_EXECUTABLE, **settings)
    # the handlers are registered before the node starts, so its first start is seen
    return [*_autostart(node), node] if _flag(context, "autostart") else [node]


def generate_launch_description():
    """Arguments (see ``ros2 launch meta_ood_perception anomaly.launch.py --show-args``) and the node."""
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "anomaly_node.param.yaml"])
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=default_params,
                description="ROS 2 parameter YAML of the node (format: config/anomaly_node.param.yaml, keyed /**)",
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
                description="comma-separated camera image topics served by this one node; a topic ending in "
                "/compressed is read as CompressedImage (empty: the parameter file's value)",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="ROS namespace of the node (its ~/ debug topics)"
            ),
            DeclareLaunchArgument(
                "node_name",
                default_value="anomaly_node",
                description="name of the node (one per process; the parameter file applies under any name)",
            ),
            DeclareLaunchArgument(
                "log_level", default_value="info", description="node log level: debug, info, warn, error, fatal"
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="true: the node's clock follows /clock (rosbag play --clock, a simulator)",
            ),
            DeclareLaunchArgument(
                "respawn",
                default_value="false",
                description="true: restart the node process whenever it exits (a crash, a failed start)",
            ),
            DeclareLaunchArgument(
                "respawn_delay",
                default_value="2.0",
                description="seconds to wait before a respawn (with respawn:=true)",
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                description="true: run anomaly_lifecycle_node, the lifecycle-managed variant (configure loads the "
                "bundle, activate warms the pipeline up and starts processing)",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="with lifecycle:=true: configure and then activate the node when it starts "
                "(false: leave it unconfigured for a lifecycle manager or ros2 lifecycle set)",
            ),
            OpaqueFunction(function=_node),
        ]
    )
