"""Parameters under real rclpy (ROS 2 Jazzy wheels, Fast DDS), in a private network namespace: the descriptors
(ranges, read_only, typing) on a node in this process, and a non-default parameter file keyed ``/**`` loaded by the
node started as its own process under ``-r __ns:=`` and under ``-r __node:=``, read back through the parameter
services of the running node.

Run in ``.venv-ros`` by ``tests/test_ros_node.py`` (which runs all of ``tests/ros/``) inside ``unshare -n`` (see
``tests/ros/netns.sh``); in any other interpreter these tests skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed in this venv: see requirements-ros.txt")
if os.environ.get("META_OOD_ROS_NETNS") != "1":
    pytest.skip("real-ROS tests run only inside the private network namespace (tests/test_ros_node.py)",
                allow_module_level=True)  # fmt: skip

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter, parameter_value_to_python  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from meta_ood_perception.bundle import DEFAULT_BUNDLE  # noqa: E402
from meta_ood_perception.errors import ConfigError  # noqa: E402
from meta_ood_perception.ros.descriptors import declare_parameters, parameter_descriptor  # noqa: E402
from meta_ood_perception.ros.params import LIVE_PARAMETERS, PARAMETER_SPECS, flatten  # noqa: E402

STARTUP_S = 60  # bundle load and warm-up of a node process on a loaded 2-core machine take seconds

#: A value for every parameter; all but NOT_CHANGED differ from the defaults, and the node can start with them.
NON_DEFAULT = {
    "bundle": str(DEFAULT_BUNDLE), "backend": "onnxruntime", "providers": ["cpu"], "device": "cuda:1",
    "device_id": 3, "engine": "/nowhere/model.engine", "fp16": True, "trt_cache_dir": "off", "trt_rebuild": False,
    "trt_build_only": False, "threads": 1, "threshold": 0.55, "max_p_false_positive": 0.9, "region": "frame",
    "road_class": "sidewalk", "domain_patience": 5, "image_topics": ["/cam/x/image_raw"],
    "qos": {"reliability": "reliable", "depth": 2}, "output_qos": {"reliability": "best_effort", "depth": 7},
    "publish_score": False, "max_rate_hz": 12, "max_frame_pixels": 1920 * 1080, "min_frame_side": 48,
    "input_timeout_s": 2.5, "diagnostics_period_s": 0.5,
    "brake": {"corridor": [0.1, 1.0, 0.4, 0.4, 0.6, 0.4, 0.9, 1.0], "use_road": True, "min_area_px": 321,
              "max_p_false_positive": 0.8, "persistence_k": 3, "persistence_n": 4, "release_frames": 6,
              "full_risk_area_px": 2500, "min_risk": 0.4},
}  # fmt: skip
#: Kept at the default: the only backend / provider this machine has, and a node that stays up to be asked.
NOT_CHANGED = {"backend", "providers", "trt_build_only"}


@pytest.fixture(scope="module")
def ros():
    rclpy.init(args=["--ros-args", "--disable-external-lib-logs"])
    yield
    rclpy.shutdown()


def test_the_test_file_sets_every_parameter_and_changes_all_it_can():
    values = flatten(NON_DEFAULT)
    assert set(values) == set(PARAMETER_SPECS)
    changed = {name for name, v in values.items() if v != PARAMETER_SPECS[name].ros_default}
    assert changed == set(PARAMETER_SPECS) - NOT_CHANGED


def test_descriptors_carry_ranges_read_only_and_constraints(ros):
    node = rclpy.create_node("descriptors_probe")
    try:
        values = declare_parameters(node)
        assert values == {name: spec.ros_default for name, spec in PARAMETER_SPECS.items()}
        for name, spec in PARAMETER_SPECS.items():
            d = node.describe_parameter(name)
            assert d.read_only == (name not in LIVE_PARAMETERS), name
            assert d.description == spec.summary and d.additional_constraints == spec.constraints(), name
        threshold = node.describe_parameter("threshold").floating_point_range[0]
        assert (threshold.from_value, threshold.to_value, threshold.step) == (-1.0, 1.0, 0.0)  # -1 = the bundle's
        depth = node.describe_parameter("output_qos.depth").integer_range[0]
        assert (depth.from_value, depth.to_value, depth.step) == (1, 1000, 0)
        pixels = node.describe_parameter("max_frame_pixels").integer_range[0]
        assert (pixels.from_value, pixels.to_value) == (1024, 36_000_000)
        timeout = node.describe_parameter("input_timeout_s").floating_point_range[0]
        assert timeout.from_value == 0.0 and timeout.to_value > 1e300  # unbounded above: the type's limit
        assert "one of best_effort, reliable" in node.describe_parameter("qos.reliability").additional_constraints
        # read_only and ranges are enforced by rclpy on set
        result = node.set_parameters([Parameter("bundle", value="/elsewhere")])[0]
        assert not result.successful and "read-only" in result.reason
        result = node.set_parameters([Parameter("threshold", value=1.5)])[0]
        assert not result.successful and "threshold" in result.reason
        assert node.set_parameters([Parameter("threshold", value=0.6)])[0].successful
        assert node.set_parameters([Parameter("max_rate_hz", value=10)])[0].successful  # an int for a float
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (Parameter("threshold", value=1.5), r"^parameter threshold: .*1\.5"),  # outside the descriptor's range
        (Parameter("qos.depth", value=0), r"^parameter qos\.depth: .*0"),
        (Parameter("qos.depth", value=2.0), r"^parameter qos\.depth: .*2\.0"),  # an integer parameter
        (Parameter("publish_score", value="yes"), r"^parameter publish_score: .*yes"),
    ],
)
def test_declaring_a_refused_value_is_one_config_error_line(ros, override, message):
    node = rclpy.create_node("refused_probe", parameter_overrides=[override])
    try:
        with pytest.raises(ConfigError, match=message) as err:
            declare_parameters(node)
        assert "\n" not in str(err.value)
    finally:
        node.destroy_node()


def test_ints_for_float_parameters_are_declared(ros):
    node = rclpy.create_node(
        "int_probe",
        parameter_overrides=[Parameter("max_rate_hz", value=10), Parameter("brake.corridor", value=[0, 1, 0, 0, 1, 1])],
    )
    try:
        values = declare_parameters(node)
        assert values["max_rate_hz"] == 10 and values["brake.corridor"] == [0, 1, 0, 0, 1, 1]
    finally:
        node.destroy_node()


def _start(params_file: Path, *remaps: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "meta_ood_perception.ros.node", "--ros-args", *remaps, "--params-file",
           str(params_file)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _call(probe, future, what, timeout=10.0):
    rclpy.spin_until_future_complete(probe, future, timeout_sec=timeout)
    assert future.done(), f"no answer to {what}"
    return future.result()


def _remote_parameters(probe, name, proc):
    """``{parameter: value}`` and ``{parameter: descriptor}`` of the running node ``name``, through its services."""
    client = AsyncParameterClient(probe, name)
    end = time.monotonic() + STARTUP_S
    listed: set[str] = set()
    while time.monotonic() < end and not set(PARAMETER_SPECS) <= listed:
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{proc.communicate()[0]}"
        if client.wait_for_services(timeout_sec=1.0):
            listed = set(_call(probe, client.list_parameters(), f"{name}/list_parameters").result.names)
    assert set(PARAMETER_SPECS) <= listed, f"{name} declared {sorted(listed)}"
    names = list(PARAMETER_SPECS)
    values = _call(probe, client.get_parameters(names), f"{name}/get_parameters").values
    descriptors = _call(probe, client.describe_parameters(names), f"{name}/describe_parameters").descriptors
    plain = {n: parameter_value_to_python(v) for n, v in zip(names, values, strict=True)}
    plain = {n: v if isinstance(v, str | bool | int | float) else list(v) for n, v in plain.items()}  # arrays
    return plain, dict(zip(names, descriptors, strict=True))


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def test_a_parameter_file_keyed_for_any_node_loads_under_a_namespace_and_a_remapped_name(ros, tmp_path):
    params_file = tmp_path / "front.param.yaml"
    params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": NON_DEFAULT}}))
    expected = flatten(NON_DEFAULT)
    nodes = {"/perception/anomaly_node": ("-r", "__ns:=/perception"), "/anomaly_front": ("-r", "__node:=anomaly_front")}
    procs = {name: _start(params_file, *remaps) for name, remaps in nodes.items()}  # both start at once
    probe = rclpy.create_node("params_probe")
    try:
        for name, proc in procs.items():
            values, descriptors = _remote_parameters(probe, name, proc)
            loaded = [n for n, v in values.items() if v == expected[n]]
            assert len(loaded) == len(PARAMETER_SPECS), {n: (v, expected[n]) for n, v in values.items()
                                                          if v != expected[n]}  # fmt: skip
            for n, d in descriptors.items():  # what `ros2 param describe` shows
                want = parameter_descriptor(PARAMETER_SPECS[n])
                assert (d.read_only, d.description, d.additional_constraints) == (
                    want.read_only, want.description, want.additional_constraints), n  # fmt: skip
                assert list(d.integer_range) == list(want.integer_range), n
                assert list(d.floating_point_range) == list(want.floating_point_range), n
            assert descriptors["bundle"].read_only and not descriptors["brake.min_area_px"].read_only
            assert descriptors["threshold"].floating_point_range[0].to_value == 1.0
            assert descriptors["max_rate_hz"].type == ParameterType.PARAMETER_INTEGER  # `12` in YAML, accepted
    finally:
        outputs = {name: _stop(proc) for name, proc in procs.items()}
        probe.destroy_node()
    for name, out in outputs.items():
        assert "ready" in out and "Traceback" not in out, f"{name}:\n{out}"
