"""Static checks of the ROS packaging: package.xml, console scripts, launch file, parameter file and schema, and the
colcon workspace ``ros2_ws/`` (``colcon build`` + ``colcon test`` with colcon from PyPI)."""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from meta_ood_perception.errors import ConfigError
from meta_ood_perception.ros.params import PARAMETERS, NodeConfig, flatten, load_param_file

ROOT = Path(__file__).resolve().parents[1]
PARAM_FILE = ROOT / "config" / "anomaly_node.param.yaml"
SCHEMA = yaml.safe_load((ROOT / "config" / "anomaly_node.schema.json").read_text())


def console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {name.strip(): target.strip() for name, target in (line.split("=") for line in lines)}


def test_console_scripts_resolve():
    """Every console script names a module-level function; modules of the rclpy shell are imported where rclpy is
    installed (.venv-ros; tests/ros/ starts both node executables there) and parsed here otherwise."""
    scripts = console_scripts()
    assert {"meta-ood", "anomaly_node", "anomaly_lifecycle_node"} <= set(scripts)
    has_rclpy = importlib.util.find_spec("rclpy") is not None
    for target in scripts.values():
        module, func = target.split(":")
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None, module
        tree = ast.parse(Path(spec.origin).read_text())
        assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, target
        imports_rclpy = any(isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "rclpy"
                            for n in tree.body)  # fmt: skip
        if has_rclpy or not imports_rclpy:
            assert callable(getattr(importlib.import_module(module), func))


def test_package_xml_lists_every_ros_dependency():
    root = ET.parse(ROOT / "package.xml").getroot()
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "vision_msgs",
        "diagnostic_msgs",
        "builtin_interfaces",
        "rcl_interfaces",
        "launch",
        "launch_ros",
        "python3-numpy",
        "python3-opencv",
        "python3-yaml",
    } <= deps
    imported = set()
    for path in [*(ROOT / "meta_ood_perception").rglob("*.py"), ROOT / "launch" / "anomaly.launch.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if node.module.endswith(".msg") or top in ("rclpy", "launch", "launch_ros"):
                    imported.add(top)
    assert imported and imported <= deps, imported - deps
    # message types named as strings (conversions build messages by name) must be dependencies too
    text = (ROOT / "meta_ood_perception" / "ros" / "conversions.py").read_text()
    named = {pkg for pkg in ("sensor_msgs", "std_msgs", "vision_msgs", "diagnostic_msgs", "builtin_interfaces",
                             "geometry_msgs") if f'"{pkg}/msg/' in text}  # fmt: skip
    assert named - {"geometry_msgs"} <= deps


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def test_launch_file_arguments_node_and_files():
    source = (ROOT / "launch" / "anomaly.launch.py").read_text()
    tree = ast.parse(source)
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}  # fmt: skip
    arguments = _calls(tree, "DeclareLaunchArgument")
    names = set()
    for call in arguments:
        names.add(call.args[0].value)
        kw = {k.arg: k.value for k in call.keywords}
        assert "description" in kw, call.args[0].value
        description = kw["description"]
        text = description.value if isinstance(description, ast.Constant) else ast.unparse(description)
        assert len(str(text)) > 15, call.args[0].value
    assert {"params_file", "bundle", "image_topics", "namespace"} <= names
    (node,) = _calls(tree, "Node")
    kw = {k.arg: k.value for k in node.keywords}
    package = kw["package"]
    package_name = constants[package.id] if isinstance(package, ast.Name) else package.value
    assert package_name == ET.parse(ROOT / "package.xml").getroot().findtext("name")
    assert kw["executable"].value in console_scripts()
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration") if isinstance(c.args[0], ast.Constant)}
    assert used <= names, used - names
    assert "anomaly_node.param.yaml" in source and PARAM_FILE.is_file()


def test_parameter_file_matches_schema_parameters_and_defaults():
    doc = yaml.safe_load(PARAM_FILE.read_text())
    jsonschema.validate(doc, SCHEMA)
    params = flatten(doc["/**"]["ros__parameters"])
    assert set(params) == set(PARAMETERS)
    for name, value in params.items():
        assert value == PARAMETERS[name][0], name
    schema_params = set()
    for key, spec in SCHEMA["$defs"]["anomaly_node"]["properties"].items():
        if spec.get("type") == "object":
            schema_params |= {f"{key}.{sub}" for sub in spec["properties"]}
        else:
            schema_params.add(key)
    assert schema_params == set(PARAMETERS)
    for line in PARAM_FILE.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and ":" in stripped and not stripped.endswith(":"):
            assert "#" in stripped, f"no comment on: {line}"
    config = NodeConfig.from_params(load_param_file(PARAM_FILE))
    assert config.cameras[0].outputs["anomaly_mask"] == "/camera/front/anomaly_mask"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"qos": {"reliability": "sometimes"}}, "qos.reliability"),
        ({"qos": {"depth": 0}}, "qos.depth"),
        ({"backend": "tensorflow"}, "backend"),
        ({"image_topics": []}, "image_topics"),
        ({"image_topics": ["camera/no_slash"]}, "image_topics"),
        ({"brake": {"corridor": [0.1, 0.2, 0.3]}}, "corridor"),
        ({"brake": {"persistence_k": 4}}, "persistence"),  # k > n: a cross-field rule JSON Schema cannot state
        ({"max_p_false_positive": 0.0}, "max_p_false_positive"),
        ({"max_p_false_positive": -0.5}, "max_p_false_positive"),
        ({"max_p_false_positive": 1.5}, "max_p_false_positive"),
        ({"region": "lane"}, "region"),
        ({"bogus": 1}, "unknown parameter"),
        ({"publish_score": "yes"}, "publish_score"),
    ],
)
def test_bad_values_are_rejected_by_schema_and_node_config(patch, message):
    doc = yaml.safe_load(PARAM_FILE.read_text())
    params = doc["/**"]["ros__parameters"]
    for key, value in patch.items():
        if isinstance(value, dict):
            params[key].update(value)
        else:
            params[key] = value
    if message != "persistence":
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(doc, SCHEMA)
    with pytest.raises(ConfigError, match=message):
        NodeConfig.from_params(flatten(params))


def _colcon() -> str | None:
    beside_python = Path(sys.executable).parent / "colcon"
    return str(beside_python) if beside_python.is_file() else shutil.which("colcon")


@pytest.mark.skipif(_colcon() is None, reason="colcon is not installed (pip install -e .[dev])")
def test_ros2_ws_colcon_build_and_test(tmp_path):
    link = ROOT / "ros2_ws" / "src" / "meta_ood_perception"
    assert link.is_symlink() and link.resolve() == ROOT
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    base = [_colcon(), "--log-base", str(tmp_path / "log")]
    paths = ["--base-paths", str(ROOT / "ros2_ws" / "src"), "--build-base", str(tmp_path / "build"),
             "--install-base", str(tmp_path / "install")]  # fmt: skip
    run = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 600}
    build = subprocess.run([*base, "build", *paths], **run)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    share = tmp_path / "install" / "meta_ood_perception" / "share" / "meta_ood_perception"
    assert (share / "launch" / "anomaly.launch.py").is_file()
    assert (share / "config" / "anomaly_node.param.yaml").is_file()
    scripts = tmp_path / "install" / "meta_ood_perception" / "lib" / "meta_ood_perception"
    assert (scripts / "anomaly_node").is_file() and (scripts / "meta-ood").is_file()  # where `ros2 run` looks
    results = tmp_path / "test_results"
    test = subprocess.run([*base, "test", *paths, "--test-result-base", str(results), "--pytest-args",
                           "tests/test_ros_packaging.py", "-k", "not colcon"], **run)  # fmt: skip
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    summary = subprocess.run([*base, "test-result", "--test-result-base", str(results), "--all"], **run)
    assert summary.returncode == 0, summary.stdout[-3000:]
    assert "0 errors, 0 failures" in summary.stdout and "tests" in summary.stdout, summary.stdout
