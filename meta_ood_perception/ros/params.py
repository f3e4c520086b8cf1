"""Settings of the anomaly node (and of ``meta-ood replay``): one table, validated once, without ROS.

:data:`PARAMETER_SPECS` is the one table of the node's ROS parameters: name, default, description, unit, whether it
can change at runtime (``read_only`` = restart-only; the others are :data:`LIVE_PARAMETERS`), and its range (numbers,
inclusive unless marked exclusive), choices (strings) or pattern. Defaults are defined once: ``brake.*`` are the field
defaults and ``metadata["description"]`` of :class:`~meta_ood_perception.brake.BrakeConfig` (``brake.corridor``
flattened to x0, y0, x1, y1, …), ``threshold`` … ``domain_patience`` those of
:class:`~meta_ood_perception.pipeline.PipelineConfig` (``None`` = the bundle's → ``-1``), ``max_frame_pixels`` /
``min_frame_side`` those of :class:`~meta_ood_perception.ros.conversions.FrameLimits`; the rest are defined here.

Everything else derives from the table: the node declares exactly these parameters with descriptors (ranges,
``read_only``; :mod:`meta_ood_perception.ros.descriptors`), :mod:`meta_ood_perception.ros.param_files` renders
``config/anomaly_node.param.yaml`` (keyed ``/**`` so that it applies under any node name and namespace) and
``config/anomaly_node.schema.json`` (``python -m meta_ood_perception.ros.param_files --write config/``; a test keeps
the committed files equal to the rendered ones), and :meth:`NodeConfig.from_params` validates a flat ``{name: value}``
mapping (ROS parameter names, dots for groups) against it, raising
:class:`~meta_ood_perception.errors.ConfigError` with one line naming the parameter and the value.

Cameras are given by their input topics (``image_topics``). A topic ending in ``/compressed`` is read as
``sensor_msgs/msg/CompressedImage`` (the image_transport convention), any other as ``sensor_msgs/msg/Image``. The
outputs of a camera go to the namespace of its image topic: ``/cam/front/image_raw`` (or
``/cam/front/image_raw/compressed``) → ``/cam/front/anomaly_mask``, ``/cam/front/anomaly_score``,
``/cam/front/anomaly_overlay``, ``/cam/front/detections``, ``/cam/front/emergency_brake``. Cameras whose
namespaces would collide (``/cam/rgb`` and ``/cam/bgr``) get their outputs under their own topics instead
(``/cam/rgb/anomaly_mask``, …).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..backends import BACKENDS
from ..backends.onnxruntime_backend import PROVIDERS
from ..brake import BrakeConfig
from ..errors import ConfigError
from ..pipeline import REGIONS, PipelineConfig
from ..preprocessing import MAX_PIXELS
from ..reports import first_line
from .conversions import FrameLimits

Kind = Literal["bool", "int", "float", "str", "float[]", "str[]"]
Value = bool | int | float | str | tuple[str, ...] | tuple[float, ...]

RELIABILITY = ("best_effort", "reliable")
OUTPUTS = ("anomaly_mask", "anomaly_score", "anomaly_overlay", "detections", "emergency_brake")
#: ``threshold`` / ``max_p_false_positive`` value meaning "the bundle's" (``None`` in :class:`PipelineConfig`).
UNSET = -1.0
#: An absolute ROS topic name (``~`` and ``{}`` substitutions allowed).
TOPIC_PATTERN = r"/[A-Za-z0-9_~{}/]*[A-Za-z0-9_]"
#: Largest subscription / publisher queue depth the node accepts.
MAX_QUEUE_DEPTH = 1000
#: Largest ``min_frame_side``, pixels.
MAX_MIN_FRAME_SIDE = 4096
#: Smallest ``max_frame_pixels`` (32 × 32).
MIN_MAX_FRAME_PIXELS = 1024
#: Node name the parameter file was keyed by before ``/**`` (still accepted by :func:`load_param_file`).
NODE_NAME = "anomaly_node"


@dataclass(frozen=True)
class ParameterSpec:
    """One ROS parameter of ``anomaly_node``.

    Attributes:
        name: ROS parameter name (one dot at most: ``group.key``).
        default: its default; arrays are tuples (``float[]`` / ``str[]``), a float default makes a float parameter
            (ints are accepted for it).
        description: one line, without the unit.
        read_only: True = restart-only (declared ``read_only``); False = changeable at runtime.
        minimum, maximum: inclusive bounds of a number (of each item of a ``float[]``); None = unbounded.
        exclusive_minimum: the value must exceed ``minimum`` (``(0, 1]``).
        choices: allowed strings (of each item of a ``str[]``); empty = any.
        pattern: regular expression a string (each item of a ``str[]``) must match in full.
        min_length: least characters of a string (ignoring surrounding blanks) / items of an array.
        unset: a number accepted outside the range, meaning "not set" (``-1`` = the bundle's).
        unit: unit of a number ("s", "Hz", "px", "frames"), "" if none.
    """

    name: str
    default: Value
    description: str
    read_only: bool = True
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    min_length: int = 0
    unset: float | None = None
    unit: str = ""

    @property
    def kind(self) -> Kind:
        """The parameter's type, from its default."""
        return _kind_of(self.default)

    @property
    def summary(self) -> str:
        """Description with the unit: the ROS descriptor's description, the YAML comment, the schema's."""
        return f"{self.description} [{self.unit}]" if self.unit else self.description

    @property
    def ros_default(self) -> Any:
        """The default as rclpy declares it (arrays as lists)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default

    def range_text(self) -> str:
        """The numeric range in words (``in [0, 1] or -1``, ``>= 1``), "" if unbounded."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            text = f"in {'(' if self.exclusive_minimum else '['}{low}, {high}]"
        elif low is not None:
            text = f"{'>' if self.exclusive_minimum else '>='} {low}"
        elif high is not None:
            text = f"<= {high}"
        else:
            return ""
        return f"{text} or {self.unset}" if self.unset is not None else text

    def constraints(self) -> str:
        """All constraints in words (the ROS descriptor's ``additional_constraints``), "" if none."""
        each = "each " if self.kind.endswith("[]") else ""
        parts = []
        if self.range_text():
            parts.append(each + self.range_text())
        if self.choices:
            parts.append(f"{each}one of {', '.join(self.choices)}")
        if self.pattern:
            parts.append(f"{each}matching {self.pattern}")
        if self.min_length:
            parts.append(f"at least {self.min_length} item(s)" if each else "not empty")
        return "; ".join(parts)

    def check(self, value: Any) -> Value:
        """``value`` coerced to the parameter's type (ints → floats, lists → tuples) and validated.

        Raises:
            ConfigError: wrong type, out of range, not a choice, no match, too short — naming parameter and value.
        """
        kind = self.kind
        items = _coerce(self.name, kind, value)
        if kind.endswith("[]"):
            assert isinstance(items, tuple)
            if len(items) < self.min_length:
                raise ConfigError(f"parameter {self.name}: needs at least {self.min_length} item(s), got {list(items)}")
            for item in items:
                self._check_item(item)
        elif isinstance(items, str) and len(items.strip()) < self.min_length:
            raise ConfigError(f"parameter {self.name}: must not be empty, got {items!r}")
        else:
            self._check_item(items)
        return items

    def _check_item(self, item: Value) -> None:
        if isinstance(item, bool):
            return
        if isinstance(item, int | float):
            if item == self.unset:
                return
            low, high = self.minimum, self.maximum
            below = low is not None and (item <= low if self.exclusive_minimum else item < low)
            if below or (high is not None and item > high):
                raise ConfigError(f"parameter {self.name}: must be {self.range_text()}, got {item!r}")
        elif isinstance(item, str):
            if self.choices and item not in self.choices:
                raise ConfigError(f"parameter {self.name}: {item!r} is not one of {', '.join(self.choices)}")
            if self.pattern and not re.fullmatch(self.pattern, item):
                raise ConfigError(f"parameter {self.name}: {item!r} does not match {self.pattern}")


def _kind_of(default: Value) -> Kind:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return "float[]" if isinstance(default[0], float) else "str[]"


def _coerce(name: str, kind: Kind, value: Any) -> Value:
    """``value`` as a ``kind``; ints are accepted for floats (ROS YAML gives ``10`` for ``10.0``)."""
    bad = ConfigError(f"parameter {name}: expected {kind}, got {value!r}")

    def number(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise bad
        return float(v)

    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float":
        return number(value)
    if kind == "str" and isinstance(value, str):
        return value
    if kind.endswith("[]") and isinstance(value, list | tuple):
        if kind == "float[]":
            return tuple(number(v) for v in value)
        if all(isinstance(v, str) for v in value):
            return tuple(value)
    raise bad


def _field_defaults(cls: type) -> dict[str, Any]:
    """Field name → default of a dataclass (fields without a plain default are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


_PIPELINE = _field_defaults(PipelineConfig)
_FRAME = _field_defaults(FrameLimits)

#: Ranges and units of the ``brake.*`` parameters (defaults and descriptions come from BrakeConfig).
_BRAKE_LIMITS: dict[str, dict[str, Any]] = {
    "corridor": {"minimum": 0.0, "maximum": 1.0, "min_length": 6},
    "min_area_px": {"minimum": 1, "unit": "px"},
    "max_p_false_positive": {"minimum": 0.0, "maximum": 1.0},
    "persistence_k": {"minimum": 1, "unit": "frames"},
    "persistence_n": {"minimum": 1},  # its description says "in frames"
    "release_frames": {"minimum": 1, "unit": "frames"},
    "full_risk_area_px": {"minimum": 1, "unit": "px"},
    "min_risk": {"minimum": 0.0, "maximum": 1.0},
}


def _brake_specs() -> list[ParameterSpec]:
    specs = []
    defaults = _field_defaults(BrakeConfig)
    for f in fields(BrakeConfig):
        default, description = defaults[f.name], f.metadata["description"]
        if f.name == "corridor":  # a ROS parameter cannot hold pairs: x0, y0, x1, y1, …
            default = tuple(float(v) for xy in default for v in xy)
            description += "; flattened x0, y0, x1, y1, …"
        specs.append(ParameterSpec(f"brake.{f.name}", default, description, read_only=False,
                                   **_BRAKE_LIMITS.get(f.name, {})))  # fmt: skip
    return specs


def _unset(value: float | None) -> float:
    return UNSET if value is None else value


# fmt: off
_SPECS = (
    ParameterSpec("bundle", "default", "model bundle: a bundle directory, or 'default' for the embedded CPU bundle",
                  min_length=1),
    ParameterSpec("backend", "onnxruntime", "inference backend", choices=BACKENDS),
    ParameterSpec("providers", ("cpu",), "onnxruntime execution providers in order of preference",
                  choices=tuple(PROVIDERS), min_length=1),
    ParameterSpec("device", "cpu", "torch backend device", pattern=r"cpu|cuda(:[0-9]+)?"),
    ParameterSpec("device_id", 0, "GPU index for the tensorrt backend and the onnxruntime cuda / tensorrt providers",
                  minimum=0),
    ParameterSpec("engine", "", "tensorrt backend: serialized engine file ('' = the bundle's, or one built into the "
                  "engine cache)"),
    ParameterSpec("fp16", False, "tensorrt backend and onnxruntime tensorrt provider: allow FP16 kernels in engines "
                  "built here"),
    ParameterSpec("trt_cache_dir", "", "TensorRT engine cache folder ('' = $XDG_CACHE_HOME/meta_ood_perception/"
                  "engines, 'off' = no cache)"),
    ParameterSpec("trt_rebuild", True, "tensorrt backend: build an engine that is missing or does not match the "
                  "bundle, TensorRT or GPU into the engine cache (false: refuse to start)"),
    ParameterSpec("trt_build_only", False, "load the backend (building its engine if needed), warm up, then exit 0"),
    ParameterSpec("threads", 0, "CPU inference threads (0 = the backend's default)", minimum=0),
    ParameterSpec("threshold", _unset(_PIPELINE["threshold"]), "anomaly threshold t on entropy / log C; -1 = the "
                  "bundle's (0.7 in the paper)", read_only=False, minimum=0.0, maximum=1.0, unset=UNSET),
    ParameterSpec("max_p_false_positive", _unset(_PIPELINE["max_p_false_positive"]), "components whose "
                  "meta-classifier P(false positive) reaches this are removed; -1 = the bundle's cut", read_only=False,
                  minimum=0.0, maximum=1.0, exclusive_minimum=True, unset=UNSET),
    ParameterSpec("region", _PIPELINE["region"], "where components may lie: road (the predicted drivable region) or "
                  "frame (anywhere)", read_only=False, choices=REGIONS),
    ParameterSpec("road_class", _PIPELINE["road_class"], "class name of the drivable road (for region and "
                  "brake.use_road)", read_only=False, min_length=1),
    ParameterSpec("domain_patience", _PIPELINE["domain_patience"], "frames in a row outside the bundle's domain "
                  "(domain monitor) after which the brake hint is unavailable", read_only=False, minimum=1,
                  unit="frames"),
    ParameterSpec("image_topics", ("/camera/front/image_raw",), "input image topics, one per camera ('…/compressed' "
                  "= JPEG/PNG)", pattern=TOPIC_PATTERN, min_length=1),
    ParameterSpec("qos.reliability", "best_effort", "input QoS reliability (camera drivers usually publish "
                  "best_effort)", choices=RELIABILITY),
    ParameterSpec("qos.depth", 1, "input queue depth per camera; the node always processes the newest frame and "
                  "drops older", minimum=1, maximum=MAX_QUEUE_DEPTH),
    ParameterSpec("output_qos.reliability", "reliable", "QoS reliability of anomaly_mask, anomaly_score, "
                  "anomaly_overlay and detections", choices=RELIABILITY),
    ParameterSpec("output_qos.depth", 5, "queue depth of anomaly_mask, anomaly_score, anomaly_overlay and "
                  "detections", minimum=1, maximum=MAX_QUEUE_DEPTH),
    ParameterSpec("publish_score", True, "also publish the 32FC1 anomaly score map (anomaly_score)", read_only=False),
    ParameterSpec("max_rate_hz", 0.0, "process at most this many frames per second per camera (0 = as fast as "
                  "possible)", read_only=False, minimum=0.0, unit="Hz"),
    ParameterSpec("max_frame_pixels", _FRAME["max_pixels"], "frames with more pixels (height × width) are rejected "
                  "before decoding (default 4096 × 2160)", minimum=MIN_MAX_FRAME_PIXELS, maximum=MAX_PIXELS,
                  unit="px"),
    ParameterSpec("min_frame_side", _FRAME["min_side"], "frames with a smaller height or width are rejected",
                  minimum=1, maximum=MAX_MIN_FRAME_SIDE, unit="px"),
    ParameterSpec("input_timeout_s", 1.0, "no frame (or a stalled backend) for this long: the brake hint says "
                  "perception is unavailable", minimum=0.0, exclusive_minimum=True, unit="s"),
    ParameterSpec("diagnostics_period_s", 1.0, "heartbeat period: /diagnostics and the unavailable-brake heartbeat; "
                  "emergency_brake's QoS deadline is twice this", minimum=0.0, exclusive_minimum=True, unit="s"),
    *_brake_specs(),
)
# fmt: on

#: name → :class:`ParameterSpec`, in the order of the parameter file.
PARAMETER_SPECS: dict[str, ParameterSpec] = {spec.name: spec for spec in _SPECS}
#: name → (default as rclpy declares it, description with unit).
PARAMETERS: dict[str, tuple[Any, str]] = {name: (s.ros_default, s.summary) for name, s in PARAMETER_SPECS.items()}
#: Parameters that can be changed at runtime (the others are declared ``read_only``: restart the node).
LIVE_PARAMETERS: frozenset[str] = frozenset(name for name, s in PARAMETER_SPECS.items() if not s.read_only)


@dataclass(frozen=True)
class CameraTopics:
    """Input and output topics of one camera.

    Attributes:
        name: camera name (the output namespace without its leading slash, or ``"camera"`` at the root).
        input: the subscribed topic. compressed: ``sensor_msgs/msg/CompressedImage`` instead of ``Image``.
        outputs: output name (:data:`OUTPUTS`) → topic.
    """

    name: str
    input: str
    compressed: bool
    outputs: dict[str, str]


def camera_topics(image_topic: str, own_namespace: bool = False) -> CameraTopics:
    """Derive a camera's output topics from its image topic (see the module docstring); with ``own_namespace``
    the outputs go under the image topic itself (``/cam/rgb`` → ``/cam/rgb/anomaly_mask``).

    Raises:
        ConfigError: not an absolute topic name.
    """
    topic = image_topic.strip()
    if not topic.startswith("/") or topic.endswith("/") or "//" in topic or len(topic) < 2:
        raise ConfigError(f"image topic {image_topic!r} must be an absolute ROS topic name such as /camera/image_raw")
    compressed = topic.endswith("/compressed")
    base = topic[: -len("/compressed")] if compressed else topic
    namespace = topic if own_namespace else base.rsplit("/", 1)[0]
    return CameraTopics(
        name=namespace.strip("/") or "camera",
        input=topic,
        compressed=compressed,
        outputs={out: f"{namespace}/{out}" for out in OUTPUTS},
    )


@dataclass(frozen=True)
class NodeConfig:
    """Validated node settings (see :data:`PARAMETER_SPECS` for each one's meaning; dots become underscores).

    Attributes:
        backend_options: keyword options for :func:`~meta_ood_perception.backends.create_backend`.
        pipeline: ``threshold`` … ``domain_patience`` and ``brake.*``.
        cameras: from ``image_topics``.
        frame_limits: ``max_frame_pixels`` and ``min_frame_side``.
        build_only: ``trt_build_only``: load (build) the backend, warm up, exit 0.
    """

    bundle: str
    backend: str
    backend_options: dict[str, Any]
    pipeline: PipelineConfig
    cameras: tuple[CameraTopics, ...]
    qos_reliability: str
    qos_depth: int
    output_qos_reliability: str
    output_qos_depth: int
    publish_score: bool
    max_rate_hz: float
    frame_limits: FrameLimits
    input_timeout_s: float
    diagnostics_period_s: float
    build_only: bool

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NodeConfig:
        """Validate a flat ``{parameter name: value}`` mapping; missing names take their defaults.

        Raises:
            ConfigError: an unknown parameter, a value of the wrong type, out of range or inconsistent with another
                — one line naming the parameter and the value.
        """
        unknown = sorted(set(params) - set(PARAMETER_SPECS))
        if unknown:
            raise ConfigError(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMETER_SPECS)})")
        p: dict[str, Any] = {name: spec.check(params.get(name, spec.default)) for name, spec in PARAMETER_SPECS.items()}
        return cls(
            bundle=p["bundle"],
            backend=p["backend"],
            backend_options=_backend_options(p),
            pipeline=_pipeline_config(p),
            cameras=_cameras(p["image_topics"]),
            qos_reliability=p["qos.reliability"],
            qos_depth=p["qos.depth"],
            output_qos_reliability=p["output_qos.reliability"],
            output_qos_depth=p["output_qos.depth"],
            publish_score=p["publish_score"],
            max_rate_hz=p["max_rate_hz"],
            frame_limits=_frame_limits(p),
            input_timeout_s=p["input_timeout_s"],
            diagnostics_period_s=p["diagnostics_period_s"],
            build_only=p["trt_build_only"],
        )


def _backend_options(p: Mapping[str, Any]) -> dict[str, Any]:
    """Options of the chosen backend (TensorRT ones also for the onnxruntime tensorrt provider)."""
    if p["backend"] == "torch":
        return {"device": p["device"]}
    if p["backend"] == "tensorrt":
        options = {"device_id": p["device_id"], "fp16": p["fp16"], "cache_dir": p["trt_cache_dir"],
                   "rebuild": p["trt_rebuild"]}  # fmt: skip
        return {**options, "engine": p["engine"]} if p["engine"] else options
    options = {"providers": list(p["providers"]), "device_id": p["device_id"]}
    if p["threads"]:
        options["threads"] = p["threads"]
    if "tensorrt" in p["providers"]:
        options.update(fp16=p["fp16"], trt_cache_dir=p["trt_cache_dir"])
    return options


def _pipeline_config(p: Mapping[str, Any]) -> PipelineConfig:
    brake = {f.name: p[f"brake.{f.name}"] for f in fields(BrakeConfig)}
    corridor = brake["corridor"]
    if len(corridor) % 2:
        raise ConfigError(f"parameter brake.corridor: needs x, y pairs, got {len(corridor)} numbers")
    brake["corridor"] = tuple(zip(corridor[::2], corridor[1::2], strict=True))
    try:
        return PipelineConfig(
            threshold=None if p["threshold"] == UNSET else p["threshold"],
            max_p_false_positive=None if p["max_p_false_positive"] == UNSET else p["max_p_false_positive"],
            region=p["region"],
            brake=BrakeConfig(**brake),
            road_class=p["road_class"],
            domain_patience=p["domain_patience"],
        )
    except ValueError as err:  # rules across parameters (brake.persistence_k <= brake.persistence_n)
        raise ConfigError(f"parameter {first_line(err)}") from None


def _frame_limits(p: Mapping[str, Any]) -> FrameLimits:
    try:
        return FrameLimits(max_pixels=p["max_frame_pixels"], min_side=p["min_frame_side"])
    except ValueError as err:  # min_frame_side² must not exceed max_frame_pixels
        raise ConfigError(f"parameters max_frame_pixels / min_frame_side: {first_line(err)}") from None


def _cameras(topics: tuple[str, ...]) -> tuple[CameraTopics, ...]:
    if len(set(topics)) != len(topics):
        raise ConfigError(f"parameter image_topics: a topic is listed twice: {list(topics)}")
    return all_camera_topics(topics)


def all_camera_topics(topics: Sequence[str]) -> tuple[CameraTopics, ...]:
    """Output topics of several cameras: image topics whose namespaces would collide (``/cam/rgb`` and
    ``/cam/bgr``) each get their outputs under their own topic instead (``/cam/rgb/anomaly_mask``, …).

    Raises:
        ConfigError: a topic that is not an absolute name, or topics that cannot get distinct outputs.
    """
    cameras = [camera_topics(t) for t in topics]
    namespaces = [c.outputs["anomaly_mask"] for c in cameras]
    out = tuple(camera_topics(t, own_namespace=True) if namespaces.count(c.outputs["anomaly_mask"]) > 1 else c
                for t, c in zip(topics, cameras, strict=True))  # fmt: skip
    final = [c.outputs["anomaly_mask"] for c in out]
    if len(set(final)) != len(final):
        raise ConfigError(f"image topics {', '.join(topics)} cannot get distinct output topics; rename or remap one")
    return out


# -- parameter files -----------------------------------------------------------------------------------------------


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"brake": {"min_area_px": 5}}`` → ``{"brake.min_area_px": 5}`` (ROS parameter names)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def load_param_file(path: str | Path, node_name: str = NODE_NAME) -> dict[str, Any]:
    """Read a ROS 2 parameter YAML file into flat parameter names: the section of ``node_name`` (or
    ``/node_name``) if there is one, else the ``/**`` section (which applies to every node).

    Raises:
        ConfigError: unreadable YAML, or no ``ros__parameters`` for ``node_name`` nor for ``/**``.
    """
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"parameter file {path}: {first_line(err)}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"parameter file {path}: expected a mapping of node names")
    for key in (node_name, f"/{node_name}", "/**"):
        section = doc.get(key)
        if isinstance(section, Mapping) and isinstance(section.get("ros__parameters"), Mapping):
            return flatten(section["ros__parameters"])
    raise ConfigError(f"parameter file {path}: no '{node_name}:' or '/**:' section with 'ros__parameters:'")
