"""The parameter table (meta_ood_perception/ros/params.py) and everything derived from it, without ROS: defaults from
BrakeConfig / PipelineConfig / FrameLimits, one validation, the generated parameter file and schema, and the backend
options it produces (TensorRT plumbed up to the point where the tensorrt package is needed)."""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import MISSING, fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from meta_ood_perception.brake import BrakeConfig
from meta_ood_perception.errors import ConfigError
from meta_ood_perception.pipeline import PipelineConfig
from meta_ood_perception.ros import param_files
from meta_ood_perception.ros.conversions import FrameLimits
from meta_ood_perception.ros.params import (
    LIVE_PARAMETERS,
    PARAMETER_SPECS,
    PARAMETERS,
    UNSET,
    NodeConfig,
    flatten,
    load_param_file,
)

ROOT = Path(__file__).resolve().parents[1]
PARAM_FILE = ROOT / "config" / param_files.PARAM_FILE_NAME
SCHEMA = json.loads((ROOT / "config" / param_files.SCHEMA_FILE_NAME).read_text())
NUMERIC = [s for s in PARAMETER_SPECS.values() if s.kind in ("int", "float")]


def test_committed_files_are_the_rendered_ones():
    for name, text in param_files.rendered_files().items():
        assert (ROOT / "config" / name).read_text() == text, (
            f"config/{name} is stale: python -m meta_ood_perception.ros.param_files --write config/"
        )
    assert param_files.main(["--check", str(ROOT / "config")]) == 0


def test_check_names_a_stale_file_and_write_repairs_it(tmp_path):
    assert param_files.main(["--write", str(tmp_path)]) == 0
    assert param_files.main(["--check", str(tmp_path)]) == 0
    path = tmp_path / param_files.PARAM_FILE_NAME
    path.write_text(path.read_text().replace("threshold: -1.0", "threshold: 0.5"))
    assert param_files.main(["--check", str(tmp_path)]) == 1
    (tmp_path / param_files.SCHEMA_FILE_NAME).unlink()
    assert param_files.main(["--check", str(tmp_path)]) == 1


def test_parameter_file_is_keyed_for_any_node_and_flattens_to_exactly_the_defaults():
    doc = yaml.safe_load(PARAM_FILE.read_text())
    assert list(doc) == ["/**"]
    params = flatten(doc["/**"]["ros__parameters"])
    assert list(params) == list(PARAMETER_SPECS)  # every parameter, in the table's order
    for name, spec in PARAMETER_SPECS.items():
        assert params[name] == spec.ros_default, name
        assert type(params[name]) is type(spec.ros_default), name  # 1.0 stays a float for ROS, 5 an int
        if isinstance(params[name], list):
            assert all(type(v) is type(d) for v, d in zip(params[name], spec.ros_default, strict=True)), name
    jsonschema.validate(doc, SCHEMA)
    default = NodeConfig.from_params({})
    assert NodeConfig.from_params(load_param_file(PARAM_FILE)) == default


def test_every_key_has_its_description_with_unit_as_comment():
    comments, group = {}, ""
    for line in PARAM_FILE.read_text().splitlines():
        if line.lstrip().startswith("#") or line.strip() in ("/**:", "ros__parameters:"):
            continue
        key = line.strip().split(":")[0]
        if line.rstrip().endswith(":"):  # a group: qos, output_qos, brake
            group = key
            continue
        name = f"{group}.{key}" if line.startswith(" " * 6) else key
        comments[name] = line.split("  # ", 1)[1]
    assert comments == {name: spec.summary for name, spec in PARAMETER_SPECS.items()}
    assert PARAMETER_SPECS["input_timeout_s"].summary.endswith("[s]")


def test_defaults_come_from_the_config_dataclasses():
    brake = BrakeConfig()
    for f in fields(BrakeConfig):
        spec = PARAMETER_SPECS[f"brake.{f.name}"]
        assert spec.description.startswith(f.metadata["description"]), f.name
        assert not spec.read_only
        if f.name == "corridor":
            assert spec.default == tuple(v for xy in brake.corridor for v in xy)
        else:
            assert spec.default == getattr(brake, f.name), f.name
    assert "brake.min_risk" in PARAMETER_SPECS
    config = NodeConfig.from_params({})
    assert config.pipeline == PipelineConfig()  # threshold / cut -1 ↔ None, region, road_class, patience, brake
    assert config.frame_limits == FrameLimits()
    assert (config.frame_limits.max_pixels, config.frame_limits.min_side) == (4096 * 2160, 32)
    assert PARAMETERS["brake.min_area_px"] == (brake.min_area_px, PARAMETER_SPECS["brake.min_area_px"].summary)


def test_node_config_has_no_defaults_of_its_own():
    assert all(f.default is MISSING and f.default_factory is MISSING for f in fields(NodeConfig))
    with pytest.raises(TypeError):
        NodeConfig()


def test_live_parameters_are_exactly_the_runtime_ones_and_the_rest_is_read_only():
    live = {"threshold", "max_p_false_positive", "region", "road_class", "domain_patience", "publish_score",
            "max_rate_hz"} | {f"brake.{f.name}" for f in fields(BrakeConfig)}  # fmt: skip
    assert live == LIVE_PARAMETERS
    for name, spec in PARAMETER_SPECS.items():
        assert spec.read_only == (name not in live), name


def test_every_number_is_bounded_below():
    for spec in NUMERIC:
        assert spec.minimum is not None, spec.name


def _boundary_values(spec):
    low, high = spec.minimum, spec.maximum
    step = 1 if spec.kind == "int" else 1e-6
    values = {low: not spec.exclusive_minimum, low - step: False}
    if high is not None:
        values.update({high: True, high + step: False})
    if spec.unset is not None:
        values[spec.unset] = True
    return values


@pytest.mark.parametrize("spec", NUMERIC, ids=[s.name for s in NUMERIC])
def test_ranges_are_inclusive_and_the_schema_agrees_with_the_validation(spec):
    group, _, key = spec.name.rpartition(".")
    parameters = SCHEMA["$defs"]["anomaly_node"]["properties"]
    schema = parameters[group]["properties"][key] if group else parameters[key]
    for value, ok in _boundary_values(spec).items():
        value = type(spec.default)(value) if spec.kind == "int" else float(value)
        assert jsonschema.Draft202012Validator(schema).is_valid(value) == ok, (spec.name, value)
        if ok:
            assert spec.check(value) == value
        else:
            with pytest.raises(ConfigError, match=rf"parameter {spec.name}: must be .*got"):
                spec.check(value)


def test_floats_accept_ints_and_reject_everything_else():
    spec = PARAMETER_SPECS["max_rate_hz"]
    assert spec.check(10) == 10.0 and isinstance(spec.check(10), float)  # `max_rate_hz: 10` in a YAML file
    for bad in (True, "10", math.nan, math.inf, [1.0]):
        with pytest.raises(ConfigError, match="parameter max_rate_hz: expected float"):
            spec.check(bad)
    with pytest.raises(ConfigError, match=r"parameter qos\.depth: expected int, got 5\.0"):
        PARAMETER_SPECS["qos.depth"].check(5.0)
    assert PARAMETER_SPECS["brake.corridor"].check([0, 1, 0.5, 0, 1, 1]) == (0.0, 1.0, 0.5, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"backend": "tensorflow"}, "parameter backend: 'tensorflow' is not one of torch, onnxruntime, tensorrt"),
        ({"providers": ["cpu", "rocm"]}, "parameter providers: 'rocm' is not one of"),
        ({"providers": []}, r"parameter providers: needs at least 1 item\(s\), got \[\]"),
        ({"device": "gpu0"}, r"parameter device: 'gpu0' does not match"),
        ({"bundle": "  "}, "parameter bundle: must not be empty"),
        ({"image_topics": ["camera/no_slash"]}, "parameter image_topics: 'camera/no_slash' does not match"),
        ({"image_topics": ["/a/image", "/a/image"]}, "listed twice"),
        ({"output_qos.reliability": "sometimes"}, "parameter output_qos.reliability: 'sometimes' is not one of"),
        ({"output_qos.depth": 1001}, r"parameter output_qos.depth: must be in \[1, 1000\], got 1001"),
        ({"max_frame_pixels": 100_000_000}, r"parameter max_frame_pixels: must be in \[1024, 36000000\]"),
        ({"min_frame_side": 0}, r"parameter min_frame_side: must be in \[1, 4096\], got 0"),
        ({"min_frame_side": 100, "max_frame_pixels": 5000}, "max_frame_pixels / min_frame_side"),
        ({"brake.min_risk": 1.5}, r"parameter brake.min_risk: must be in \[0.0, 1.0\], got 1.5"),
        ({"brake.corridor": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}, "brake.corridor: needs x, y pairs"),
        ({"brake.persistence_k": 4}, "parameter brake.persistence_k / brake.persistence_n"),
        ({"input_timeout_s": 0.0}, r"parameter input_timeout_s: must be > 0.0, got 0.0"),
        ({"threshold": -0.5}, r"parameter threshold: must be in \[0.0, 1.0\] or -1.0, got -0.5"),
        ({"trt_rebuild": "yes"}, "parameter trt_rebuild: expected bool, got 'yes'"),
        ({"brake": 1}, "unknown parameter"),
    ],
)
def test_bad_values_raise_one_config_error_line_naming_parameter_and_value(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        NodeConfig.from_params(params)
    assert "\n" not in str(err.value)


def test_new_parameters_reach_the_node_config():
    config = NodeConfig.from_params({"max_frame_pixels": 1920 * 1080, "min_frame_side": 64, "output_qos.depth": 20,
                                     "output_qos.reliability": "best_effort", "brake.min_risk": 0.5,
                                     "trt_build_only": True, "threshold": 0.55})  # fmt: skip
    assert config.frame_limits == FrameLimits(max_pixels=1920 * 1080, min_side=64)
    assert (config.output_qos_depth, config.output_qos_reliability) == (20, "best_effort")
    assert config.pipeline.brake.min_risk == 0.5 and config.pipeline.threshold == 0.55
    assert config.build_only
    assert NodeConfig.from_params({"threshold": UNSET}).pipeline.threshold is None


def test_tensorrt_options_are_plumbed_for_both_backends():
    trt = NodeConfig.from_params({"backend": "tensorrt", "device_id": 1, "fp16": True, "trt_cache_dir": "off",
                                  "trt_rebuild": False, "engine": "/e/m.engine"})  # fmt: skip
    assert trt.backend_options == {"device_id": 1, "fp16": True, "cache_dir": "off", "rebuild": False,
                                   "engine": "/e/m.engine"}  # fmt: skip
    default = NodeConfig.from_params({"backend": "tensorrt"}).backend_options
    assert default == {"device_id": 0, "fp16": False, "cache_dir": "", "rebuild": True}  # cache on, rebuild on
    ort = NodeConfig.from_params({"providers": ["tensorrt", "cuda", "cpu"], "device_id": 2, "threads": 3})
    assert ort.backend_options == {"providers": ["tensorrt", "cuda", "cpu"], "device_id": 2, "threads": 3,
                                   "fp16": False, "trt_cache_dir": ""}  # fmt: skip
    assert NodeConfig.from_params({}).backend_options == {"providers": ["cpu"], "device_id": 0}
    assert NodeConfig.from_params({"backend": "torch", "device": "cuda:1"}).backend_options == {"device": "cuda:1"}


def test_load_param_file_accepts_any_node_key_and_prefers_the_node_s_own(tmp_path):
    path = tmp_path / "p.yaml"
    for key in ("/**", "anomaly_node", "/anomaly_node"):
        path.write_text(yaml.safe_dump({key: {"ros__parameters": {"threshold": 0.4, "brake": {"min_area_px": 7}}}}))
        assert load_param_file(path) == {"threshold": 0.4, "brake.min_area_px": 7}
    both = {"/**": {"ros__parameters": {"threshold": 0.4}}, "front": {"ros__parameters": {"threshold": 0.6}}}
    path.write_text(yaml.safe_dump(both))
    assert load_param_file(path, "front") == {"threshold": 0.6}
    assert load_param_file(path, "rear") == {"threshold": 0.4}
    path.write_text(yaml.safe_dump({"other_node": {"ros__parameters": {"threshold": 0.4}}}))
    with pytest.raises(ConfigError, match=r"no 'anomaly_node:' or '/\*\*:' section"):
        load_param_file(path)
    path.write_text("a: [")
    with pytest.raises(ConfigError, match="parameter file"):
        load_param_file(path)


def test_schema_lists_types_defaults_descriptions_and_limits():
    parameters = SCHEMA["$defs"]["anomaly_node"]["properties"]
    assert parameters["max_frame_pixels"] == {"type": "integer", "minimum": 1024, "maximum": 36_000_000,
                                              "default": 8_847_360,
                                              "description": PARAMETER_SPECS["max_frame_pixels"].summary}  # fmt: skip
    assert parameters["output_qos"]["properties"]["reliability"]["enum"] == ["best_effort", "reliable"]
    assert parameters["brake"]["properties"]["corridor"]["items"] == {"type": "number", "minimum": 0.0, "maximum": 1.0}
    assert SCHEMA["properties"]["/**"] == {"$ref": "#/$defs/node"}
    node_keyed = {"anomaly_front": {"ros__parameters": {"threshold": 0.3}}}
    jsonschema.validate(node_keyed, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"/**": {"ros__parameters": {"threshold": 0.3, "typo": 1}}}, SCHEMA)
    assert json.loads((ROOT / "config" / param_files.SCHEMA_FILE_NAME).read_text()) == SCHEMA


# -- backends: the options the node passes, up to the point where a GPU package is needed --------------------------


def test_onnxruntime_tensorrt_provider_caches_engines_in_the_user_cache_by_default(tmp_path, monkeypatch):
    from meta_ood_perception.backends.onnxruntime_backend import execution_providers

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    options = NodeConfig.from_params({"providers": ["tensorrt", "cuda", "cpu"], "device_id": 1, "fp16": True})
    kw = {k: v for k, v in options.backend_options.items() if k != "providers"}
    chosen = execution_providers(options.backend_options["providers"], every, "1.99.0", **kw)
    folder = tmp_path / "meta_ood_perception" / "engines" / "onnxruntime-1.99.0"
    assert chosen == [
        ("TensorrtExecutionProvider", {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                       "trt_engine_cache_path": str(folder)}),
        ("CUDAExecutionProvider", {"device_id": 1}),
        "CPUExecutionProvider",
    ]  # fmt: skip
    assert folder.is_dir()
    off = execution_providers(["tensorrt"], every, "1.99.0", trt_cache_dir="off")
    assert off == [("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": False})]
    mine = execution_providers(["tensorrt"], every, "1.99.0", trt_cache_dir=tmp_path / "mine")
    assert mine[0][1]["trt_engine_cache_path"] == str(tmp_path / "mine")
    with pytest.raises(ConfigError, match=r"provider 'tensorrt' is not available in onnxruntime 1.99.0 \(available: "):
        execution_providers(["tensorrt"], every[1:], "1.99.0")


def test_onnxruntime_without_the_tensorrt_provider_says_so():
    import onnxruntime as ort

    from meta_ood_perception.backends import create_backend
    from meta_ood_perception.bundle import load_bundle

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has the TensorRT provider; the message is for builds without it")
    options = NodeConfig.from_params({"providers": ["tensorrt", "cpu"]}).backend_options
    with pytest.raises(ConfigError, match="provider 'tensorrt' is not available"):
        create_backend("onnxruntime", load_bundle("default"), **options)


def test_engine_cache_folder_settings(tmp_path, monkeypatch):
    from meta_ood_perception.backends.tensorrt_backend import engine_cache_dir, engine_cache_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert engine_cache_dir("") == tmp_path / "meta_ood_perception" / "engines"
    assert engine_cache_dir("off") is None
    assert engine_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert engine_cache_dir("") == tmp_path / "home" / ".cache" / "meta_ood_perception" / "engines"
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"graph")
    fp16, fp32 = engine_cache_path(onnx, tmp_path, fp16=True), engine_cache_path(onnx, tmp_path, fp16=False)
    assert fp16 != fp32 and fp16.parent == tmp_path and fp16.name.endswith("-fp16.engine")


def test_tensorrt_backend_without_the_package_names_it_in_one_line(tmp_path, monkeypatch):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here: the build and run are covered by tests/test_tensorrt_engine.py")
    from meta_ood_perception.backends import create_backend
    from meta_ood_perception.bundle import load_bundle

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    options = NodeConfig.from_params({"backend": "tensorrt", "device_id": 1, "fp16": True}).backend_options
    with pytest.raises(ConfigError, match=r"^tensorrt backend needs NVIDIA TensorRT's Python package \(pip install "
                       r"tensorrt\) and a CUDA GPU$"):  # fmt: skip
        create_backend("tensorrt", load_bundle("default"), **options)
    assert not (tmp_path / "meta_ood_perception").exists()  # nothing written before the package is found missing


@pytest.fixture
def trt_spy(monkeypatch):
    """TensorRTBackend.__init__ replaced by a recorder: what from_bundle passes to the TensorRT part."""
    from meta_ood_perception.backends import tensorrt_backend

    calls = []

    def record(self, engine, **kw):
        calls.append({"engine": engine, **kw, "engine_existed": engine is not None and engine.is_file()})

    monkeypatch.setattr(tensorrt_backend.TensorRTBackend, "__init__", record)
    return calls


def test_tensorrt_from_bundle_builds_into_the_cache_and_reuses_it(tmp_path, monkeypatch, trt_spy):
    from meta_ood_perception.backends.tensorrt_backend import TensorRTBackend, engine_cache_path
    from meta_ood_perception.bundle import load_bundle

    bundle = load_bundle("default")
    assert "tensorrt" not in bundle.manifest["model"]["files"]
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    options = NodeConfig.from_params({"backend": "tensorrt", "device_id": 1}).backend_options
    TensorRTBackend.from_bundle(bundle, **options)
    cache = engine_cache_path(bundle.file("onnx"), tmp_path / "meta_ood_perception" / "engines", fp16=False)
    (call,) = trt_spy
    assert call["engine"] == cache and call["rebuild_to"] == cache and not call["engine_existed"]
    assert (call["device_id"], call["fp16"], call["rebuild"]) == (1, False, True)
    assert call["input_shape"] == (1, 3, *bundle.input_size) and call["onnx"] == bundle.file("onnx")
    # without rebuild: a cached engine is used, none at all is a clear error
    no_rebuild = {**options, "rebuild": False}
    with pytest.raises(ConfigError, match="the bundle has no TensorRT engine"):
        TensorRTBackend.from_bundle(bundle, **no_rebuild)
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"engine built by an earlier start")
    TensorRTBackend.from_bundle(bundle, **no_rebuild)
    assert trt_spy[-1]["engine"] == cache and trt_spy[-1]["engine_existed"]


def test_tensorrt_from_bundle_with_the_cache_off_builds_into_a_folder_it_removes(trt_spy):
    from meta_ood_perception.backends.tensorrt_backend import TensorRTBackend
    from meta_ood_perception.bundle import load_bundle

    bundle = load_bundle("default")
    options = NodeConfig.from_params({"backend": "tensorrt", "trt_cache_dir": "off"}).backend_options
    TensorRTBackend.from_bundle(bundle, **options)
    (call,) = trt_spy
    assert call["engine"] == call["rebuild_to"] and not call["rebuild_to"].parent.exists()  # removed after loading
    with pytest.raises(ConfigError, match="the bundle has no TensorRT engine"):
        TensorRTBackend.from_bundle(bundle, **{**options, "rebuild": False})
    with pytest.raises(ConfigError, match="unknown option"):
        TensorRTBackend.from_bundle(bundle, **options, trt_cache_dir="x")
