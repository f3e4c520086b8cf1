"""The launch files, the rviz2 config and the Foxglove layout.

No ``launch`` / ``launch_ros`` wheels exist for Jazzy, so most checks read the launch files with ``ast``: declared
arguments and defaults, how they reach the node actions, the lifecycle autostart events, the per-camera naming rule
of ``multi_camera.launch.py`` (its function run on its own). The visualization configs are parsed and must name the
topics the node publishes and the keys its brake message carries. With ROS 2's launch installed, the launch files
are also evaluated for real and listed by ``ros2 launch --show-args``.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from meta_ood_perception.brake import BrakeHint
from meta_ood_perception.errors import ConfigError
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics

ROOT = Path(__file__).resolve().parents[1]
SINGLE = ROOT / "launch" / "anomaly.launch.py"
MULTI = ROOT / "launch" / "multi_camera.launch.py"
RVIZ = ROOT / "config" / "anomaly.rviz"
FOXGLOVE = ROOT / "config" / "foxglove_layout.json"
CAMERA = "/camera/front/image_raw"  # the default camera of the parameter file, shown by both configs
SINGLE_DEFAULTS = {  # argument → default ("" = the parameter file's value unless given)
    "bundle": "",
    "backend": "",
    "image_topics": "",
    "namespace": "",
    "node_name": "anomaly_node",
    "log_level": "info",
    "use_sim_time": "false",
    "respawn": "false",
    "respawn_delay": "2.0",
    "lifecycle": "false",
    "autostart": "true",
}
FLAGS = ("use_sim_time", "respawn", "lifecycle", "autostart")
NODE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def published_topics(image_topic: str = CAMERA) -> set[str]:
    """What the node publishes for one camera: the outputs of its topic table plus the overlay."""
    outputs = camera_topics(image_topic).outputs
    namespace = outputs["anomaly_mask"].rsplit("/", 1)[0]
    return set(outputs.values()) | {f"{namespace}/anomaly_overlay"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and (getattr(n.func, "id", None) == name or getattr(n.func, "attr", None) == name)
    ]


def _keywords(call: ast.Call) -> dict[str | None, ast.expr]:
    return {k.arg: k.value for k in call.keywords}


def _constants(tree: ast.Module) -> dict[str, object]:
    return {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }


def _declared(tree: ast.Module) -> dict[str, ast.expr]:
    """Declared launch argument → its default_value expression."""
    return {c.args[0].value: _keywords(c)["default_value"] for c in _calls(tree, "DeclareLaunchArgument")}


def _read_arguments(tree: ast.Module) -> dict[str, set[str]]:
    """How each argument is read: LaunchConfiguration(name), or the file's _flag / _seconds helpers."""
    reads: dict[str, set[str]] = {}
    for reader in ("LaunchConfiguration", "_flag", "_seconds"):
        for call in _calls(tree, reader):
            name = call.args[-1]
            if isinstance(name, ast.Constant):
                reads.setdefault(name.value, set()).add(reader)
    for loop in (n for n in ast.walk(tree) if isinstance(n, ast.For) and isinstance(n.iter, ast.Tuple)):
        if f"LaunchConfiguration({ast.unparse(loop.target)})" in ast.unparse(loop):  # for name in ("a", "b"): …
            for name in loop.iter.elts:
                reads.setdefault(name.value, set()).add("LaunchConfiguration")
    return reads


def test_single_launch_declares_every_argument_with_its_default():
    tree = _tree(SINGLE)
    declared = _declared(tree)
    assert set(declared) == {"params_file", *SINGLE_DEFAULTS}
    for name, default in SINGLE_DEFAULTS.items():
        assert isinstance(declared[name], ast.Constant) and declared[name].value == default, name
    (default_params,) = [  # the package's shipped parameter file
        ast.unparse(n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) ==
        ast.unparse(declared["params_file"])
    ]  # fmt: skip
    assert default_params == "PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', 'anomaly_node.param.yaml'])"
    assert float(SINGLE_DEFAULTS["respawn_delay"]) > 0
    reads = _read_arguments(tree)
    assert set(reads) == set(declared), "every argument is read, and only declared ones"
    for flag in FLAGS:  # booleans go through the launch condition parser (true / false / 1 / 0)
        assert "_flag" in reads[flag], flag
    assert "_seconds" in reads["respawn_delay"]


def test_single_launch_wires_arguments_into_the_node_actions():
    tree = _tree(SINGLE)
    constants = _constants(tree)
    scripts = configparser.ConfigParser()
    scripts.read(ROOT / "setup.cfg")
    console = {line.split("=")[0].strip() for line in scripts["options.entry_points"]["console_scripts"].splitlines()}
    (node,) = _calls(tree, "Node")
    (lifecycle,) = _calls(tree, "LifecycleNode")
    executables = []
    for call in (node, lifecycle):
        kw = _keywords(call)
        executable = kw["executable"]
        executables.append(constants[executable.id] if isinstance(executable, ast.Name) else executable.value)
        assert isinstance(kw[None], ast.Name) and kw[None].id == "settings"  # both get the same settings
    assert executables == ["anomaly_node", "anomaly_lifecycle_node"]
    assert set(executables) <= console, set(executables) - console
    (settings,) = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "settings"
    ]
    entries = {k.value: ast.unparse(v) for k, v in zip(settings.keys, settings.values, strict=True)}
    assert entries["respawn"] == "_flag(context, 'respawn')"
    assert entries["respawn_delay"] == "_seconds(context, 'respawn_delay')"
    assert entries["name"] == "LaunchConfiguration('node_name').perform(context)"
    assert entries["namespace"] == "LaunchConfiguration('namespace').perform(context)"
    assert entries["parameters"] == "_parameters(context)"
    # use_sim_time is a parameter of the node (rclpy declares it), given with the other overrides
    (parameters,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "_parameters"]
    overrides = [n for n in ast.walk(parameters) if isinstance(n, ast.Dict)]
    assert any(
        ast.unparse(k) == "'use_sim_time'" and ast.unparse(v) == "_flag(context, 'use_sim_time')"
        for d in overrides
        for k, v in zip(d.keys, d.values, strict=True)
    )
    # the lifecycle choice selects the executable; autostart adds the transitions
    (choose,) = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "lifecycle" in ast.unparse(n.test)]
    assert "Node(" in ast.unparse(choose.body) and "LifecycleNode(" not in ast.unparse(choose.body)
    assert any("_flag(context, 'autostart')" in ast.unparse(n) and "_autostart(node)" in ast.unparse(n)
               for n in ast.walk(tree) if isinstance(n, ast.IfExp))  # fmt: skip


def test_lifecycle_autostart_configures_on_every_start_and_activates_after_configure():
    tree = _tree(SINGLE)
    transitions = {ast.unparse(_keywords(c)["transition_id"]) for c in _calls(tree, "ChangeState")}
    assert transitions == {"Transition.TRANSITION_CONFIGURE", "Transition.TRANSITION_ACTIVATE"}
    (on_start,) = _calls(tree, "OnProcessStart")  # a respawned process is configured again
    assert "configure" in ast.unparse(_keywords(on_start)["on_start"])
    (on_state,) = _calls(tree, "OnStateTransition")
    kw = _keywords(on_state)
    # only the end of *configure* activates: a node deactivated by hand is not re-activated
    assert (kw["start_state"].value, kw["goal_state"].value) == ("configuring", "inactive")
    assert "activate" in ast.unparse(kw["entities"]) and "configure" not in ast.unparse(kw["entities"])


def _function(path: Path, name: str, namespace: dict[str, object]) -> types.FunctionType:
    """Run one function of a launch file on its own (the file imports launch, which is not installed here)."""
    tree = _tree(path)
    constants = [n for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)]
    (function,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    scope = dict(namespace)
    exec(compile(ast.Module([*constants, function], type_ignores=[]), str(path), "exec"), scope)
    return scope[name]


@pytest.fixture
def instance_names():
    return _function(MULTI, "instance_names", {"camera_topics": camera_topics, "ConfigError": ConfigError})


def test_multi_camera_names_one_node_per_camera(instance_names):
    cameras = ["/camera/front/image_raw", "/camera/rear/image_raw/compressed", "/image_raw", "/a/b/c/image"]
    names = instance_names(cameras)
    assert list(names) == cameras
    assert list(names.values()) == ["anomaly_camera_front", "anomaly_camera_rear", "anomaly_camera", "anomaly_a_b_c"]
    assert all(NODE_NAME.fullmatch(n) for n in names.values())


@pytest.mark.parametrize(
    ("cameras", "namespace"),
    [
        (["/cam/front/image_raw", "/cam/front/image_raw"], "/cam/front"),  # the same camera twice
        (["/cam/front/image_raw", "/cam/front/image_raw/compressed"], "/cam/front"),
        (["/cam/rgb", "/cam/bgr"], "/cam"),  # one node would separate them; two processes cannot
    ],
)
def test_multi_camera_refuses_cameras_sharing_an_output_namespace(instance_names, cameras, namespace):
    with pytest.raises(ConfigError, match=f"{cameras[0]} and {cameras[1]} would both publish under {namespace}:"):
        instance_names(cameras)


def test_multi_camera_includes_the_single_launch_per_camera():
    tree = _tree(MULTI)
    constants = _constants(tree)
    declared = _declared(tree)
    assert set(declared) == {"cameras"}  # the rest are anomaly.launch.py's own declarations, re-exposed
    assert declared["cameras"].value == CAMERA
    assert "anomaly.launch.py" in ast.unparse(tree) and SINGLE.is_file()
    per_camera = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PER_CAMERA")
    assert {e.value for e in per_camera.elts} == {"image_topics", "node_name"} <= set(_declared(_tree(SINGLE)))
    (include,) = _calls(tree, "IncludeLaunchDescription")
    arguments = _keywords(include)["launch_arguments"]
    assert {k.value for k in arguments.func.value.keys} == {"image_topics", "node_name"}
    (group,) = _calls(tree, "GroupAction")  # scoped: one camera's arguments do not leak into the next
    assert _keywords(group)["scoped"].value is True
    assert constants["NAME_PREFIX"] == "anomaly_"


def test_rviz_config_shows_the_node_outputs():
    config = yaml.safe_load(RVIZ.read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"]
    assert {p["Class"] for p in config["Panels"]} >= {"rviz_common/Displays"}
    images = {d["Topic"]["Value"]: d for d in manager["Displays"] if d["Class"] == "rviz_default_plugins/Image"}
    published = published_topics()
    assert set(images) <= published | {CAMERA}, set(images) - published
    for shown in ("/camera/front/anomaly_overlay", "/camera/front/anomaly_mask"):
        assert images[shown]["Enabled"] is True and images[shown]["Value"] is True, shown
    for display in images.values():
        # best effort receives from reliable and best-effort publishers alike
        assert display["Topic"]["Reliability Policy"] == "Best Effort"
        assert display["Topic"]["Depth"] >= 1
    names = [d["Name"] for d in manager["Displays"]]
    assert len(names) == len(set(names))


def _panels(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    assert isinstance(node, dict) and node["direction"] in ("row", "column"), node
    assert 0 < node["splitPercentage"] < 100
    return _panels(node["first"]) + _panels(node["second"])


def _message_paths(config: object) -> list[str]:
    if isinstance(config, dict):
        return [p for key, value in config.items() for p in _message_paths(value)] + [
            v for k, v in config.items() if k in ("value", "topicPath", "imageTopic", "topicToRender")
        ]
    if isinstance(config, list):
        return [p for item in config for p in _message_paths(item)]
    return []


def test_foxglove_layout_panels_topics_and_brake_keys():
    layout = json.loads(FOXGLOVE.read_text())
    placed = _panels(layout["layout"])
    assert sorted(placed) == sorted(layout["configById"]), "every panel is placed exactly once"
    kinds = {panel.split("!")[0] for panel in placed}
    assert {"Image", "Plot", "DiagnosticSummary"} <= kinds
    published = published_topics()
    topics = {}
    for panel, config in layout["configById"].items():
        for path in _message_paths(config):
            topic = path.split(".")[0]
            assert topic in published | {CAMERA, "/diagnostics"}, (panel, path)
            topics.setdefault(panel.split("!")[0], set()).add(topic)
    assert "/camera/front/anomaly_overlay" in topics["Image"]
    assert topics["DiagnosticSummary"] == {"/diagnostics"}
    # the keys the panels filter on are keys the node's brake message carries
    hint = BrakeHint(True, 0.4, "brake: hazard in corridor", True, True, 2, (1,))
    header = types.SimpleNamespace(stamp=types.SimpleNamespace(sec=1, nanosec=0), frame_id="cam")
    status = cv.brake_to_msg(hint, cv.copy_header(header, cv.RosbagsTypes()), cv.RosbagsTypes()).status[0]
    carried = {kv.key for kv in status.values}
    used = {key for path in _message_paths(layout) for key in re.findall(r'\{key=="(\w+)"\}', path)}
    assert "risk" in used and used <= carried, used - carried
    (plot,) = [c for p, c in layout["configById"].items() if p.startswith("Plot!")]
    assert any('{key=="risk"}' in p["value"] and p["enabled"] for p in plot["paths"])


def test_package_installs_launch_and_config_files():
    # setup.py's data_files as setuptools sees them (the distribution is created, no command runs)
    code = (
        "import json, setuptools\n"
        "from distutils.core import run_setup\n"
        "print(json.dumps(run_setup('setup.py', stop_after='init').data_files))\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    data_files = json.loads(shown.stdout.strip().splitlines()[-1])
    installed = {(folder, Path(f).name) for folder, files in data_files for f in files}
    for f in (f for _, files in data_files for f in files):
        assert (ROOT / f).is_file(), f
    share = "share/meta_ood_perception"
    for launch_file in (ROOT / "launch").glob("*.launch.py"):
        assert (f"{share}/launch", launch_file.name) in installed, launch_file.name
    for name in ("anomaly_node.param.yaml", "anomaly_node.schema.json", RVIZ.name, FOXGLOVE.name):
        assert (f"{share}/config", name) in installed, name


# ---- with ROS 2's launch installed -----------------------------------------------------------------------------

launch_ros_missing = importlib.util.find_spec("launch_ros") is None
needs_launch = pytest.mark.skipif(launch_ros_missing, reason="launch_ros is not installed (no wheels for Jazzy)")


def _evaluate(path: Path, arguments: dict[str, str]) -> list[object]:
    """Declare the arguments and run the OpaqueFunctions of a launch file; return the actions they produce
    (not executed: no process is started)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.launch_description_sources import get_launch_description_from_python_launch_file

    description = get_launch_description_from_python_launch_file(str(path))
    context = LaunchContext()
    context.launch_configurations.update(arguments)
    produced: list[object] = []
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument | OpaqueFunction):
            produced += entity.visit(context) or []
    return produced


@needs_launch
@pytest.mark.parametrize("lifecycle", ["false", "true"])
def test_single_launch_evaluates(lifecycle):
    from launch.actions import RegisterEventHandler
    from launch_ros.actions import LifecycleNode, Node

    params = str(ROOT / "config" / "anomaly_node.param.yaml")
    actions = _evaluate(SINGLE, {"params_file": params, "lifecycle": lifecycle, "respawn": "true"})
    nodes = [a for a in actions if isinstance(a, Node)]
    assert len(nodes) == 1
    assert isinstance(nodes[0], LifecycleNode) == (lifecycle == "true")
    expected = "anomaly_lifecycle_node" if lifecycle == "true" else "anomaly_node"
    assert nodes[0].node_executable == expected and nodes[0].node_package == "meta_ood_perception"
    handlers = [a for a in actions if isinstance(a, RegisterEventHandler)]
    assert len(handlers) == (2 if lifecycle == "true" else 0)


@needs_launch
def test_single_launch_overrides_only_what_is_given():
    from launch import LaunchContext
    from launch.launch_description_sources import load_python_launch_file_as_module

    module = load_python_launch_file_as_module(str(SINGLE))
    context = LaunchContext()
    context.launch_configurations.update({**SINGLE_DEFAULTS, "params_file": "p.yaml"})
    assert module._parameters(context) == ["p.yaml", {"use_sim_time": False}]
    context.launch_configurations.update({"use_sim_time": "True", "backend": "torch", "image_topics": "/a/x, /b/y"})
    assert module._parameters(context) == [
        "p.yaml", {"use_sim_time": True, "backend": "torch", "image_topics": ["/a/x", "/b/y"]}
    ]  # fmt: skip
    context.launch_configurations["respawn_delay"] = "-1"
    with pytest.raises(ConfigError, match="respawn_delay"):
        module._seconds(context, "respawn_delay")


@needs_launch
def test_multi_camera_launch_evaluates():
    from launch.actions import GroupAction

    actions = _evaluate(MULTI, {"cameras": "/cam/front/image_raw,/cam/rear/image_raw"})
    assert len(actions) == 2 and all(isinstance(a, GroupAction) for a in actions)


def _ros2_knows_the_package() -> bool:
    ros2 = shutil.which("ros2")
    if ros2 is None:
        return False
    found = subprocess.run([ros2, "pkg", "prefix", "meta_ood_perception"], capture_output=True, timeout=60)
    return found.returncode == 0


@pytest.mark.skipif(
    launch_ros_missing or not _ros2_knows_the_package(),
    reason="needs the ros2 CLI, launch_ros and meta_ood_perception installed in a sourced ROS 2 workspace",
)
@pytest.mark.parametrize(
    ("launch_file", "arguments"),
    [
        (SINGLE.name, {"params_file", *SINGLE_DEFAULTS}),
        (MULTI.name, {"cameras", "params_file", *SINGLE_DEFAULTS} - {"image_topics", "node_name"}),
    ],
)
def test_ros2_launch_show_args(launch_file, arguments):
    shown = subprocess.run(
        ["ros2", "launch", "meta_ood_perception", launch_file, "--show-args"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    listed = set(re.findall(r"^\s+'(\w+)':", shown.stdout, flags=re.MULTILINE))
    assert listed == arguments, shown.stdout
