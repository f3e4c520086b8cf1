"""Settings of the anomaly node (and of ``meta-ood replay``), validated once, without ROS.

:data:`PARAMETERS` lists every ROS parameter of ``anomaly_node`` with its default and description; the node
declares exactly these, ``config/anomaly_node.param.yaml`` sets them with a comment each, and
``config/anomaly_node.schema.json`` describes them (the tests check all four agree). :meth:`NodeConfig.from_params`
turns a flat ``{name: value}`` mapping (ROS parameter names, dots for groups) into a validated :class:`NodeConfig`;
a bad value raises ``ValueError`` naming the parameter and the value.

Cameras are given by their input topics (``image_topics``). A topic ending in ``/compressed`` is read as
``sensor_msgs/msg/CompressedImage`` (the image_transport convention), any other as ``sensor_msgs/msg/Image``. The
outputs of a camera go to the namespace of its image topic: ``/cam/front/image_raw`` (or
``/cam/front/image_raw/compressed``) → ``/cam/front/anomaly_mask``, ``/cam/front/anomaly_score``,
``/cam/front/detections``, ``/cam/front/emergency_brake``. Cameras whose namespaces would collide (``/cam/rgb``
and ``/cam/bgr``) get their outputs under their own topics instead (``/cam/rgb/anomaly_mask``, …).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends import BACKENDS
from ..brake import DEFAULT_CORRIDOR, BrakeConfig
from ..pipeline import DEFAULT_ROAD_CLASS, REGIONS, PipelineConfig
from ..reports import first_line

#: name → (default, description). Types follow the defaults (a list of str / float is a ROS array parameter).
PARAMETERS: dict[str, tuple[Any, str]] = {
    "bundle": ("default", "model bundle: a bundle directory, or 'default' for the embedded CPU bundle"),
    "backend": ("onnxruntime", "inference backend: onnxruntime, torch or tensorrt"),
    "providers": (["cpu"], "onnxruntime execution providers in order of preference: tensorrt, cuda, cpu"),
    "device": ("cpu", "torch backend device: cpu or cuda[:N]"),
    "device_id": (0, "GPU index for the onnxruntime cuda / tensorrt providers"),
    "engine": ("", "tensorrt backend: serialized engine file ('' = the bundle's)"),
    "fp16": (False, "onnxruntime tensorrt provider: allow FP16 kernels"),
    "trt_cache_dir": ("", "onnxruntime tensorrt provider: engine cache directory ('' = no cache)"),
    "threads": (0, "CPU inference threads (0 = the backend's default)"),
    "threshold": (-1.0, "anomaly threshold t in [0, 1] on entropy / log C; -1 = the bundle's (0.7 in the paper)"),
    "max_p_false_positive": (
        -1.0,
        "components whose meta-classifier P(false positive) reaches this are removed; -1 = the bundle's cut",
    ),
    "region": ("road", "where components may lie: road (the predicted drivable region) or frame (anywhere)"),
    "road_class": (DEFAULT_ROAD_CLASS, "class name of the drivable road (for region and brake.use_road)"),
    "domain_patience": (
        3,
        "frames in a row outside the bundle's domain (domain monitor) after which the brake hint is unavailable",
    ),
    "image_topics": (["/camera/front/image_raw"], "input image topics, one per camera ('…/compressed' = JPEG/PNG)"),
    "qos.reliability": ("best_effort", "input QoS reliability: best_effort (camera drivers' usual) or reliable"),
    "qos.depth": (1, "input queue depth per camera; the node always processes the newest frame and drops older"),
    "publish_score": (True, "also publish the 32FC1 anomaly score map (anomaly_score)"),
    "max_rate_hz": (0.0, "process at most this many frames per second per camera (0 = as fast as possible)"),
    "input_timeout_s": (1.0, "no frame for this long: the brake hint says perception is unavailable"),
    "diagnostics_period_s": (1.0, "period of /diagnostics and of the unavailable-brake heartbeat, seconds"),
    "brake.corridor": (
        [v for xy in DEFAULT_CORRIDOR for v in xy],
        "drivable corridor polygon, flattened x0, y0, x1, y1, … in normalized image coordinates [0, 1]",
    ),
    "brake.use_road": (False, "intersect the corridor with the predicted road"),
    "brake.min_area_px": (100, "pixels (camera resolution) a component needs inside the corridor to count"),
    "brake.max_p_false_positive": (
        1.0,
        "a stricter cut for the brake only: kept components count while P(false positive) < this (1 = all)",
    ),
    "brake.persistence_k": (2, "hits needed among the last persistence_n frames to turn the hint on"),
    "brake.persistence_n": (3, "persistence window, frames"),
    "brake.release_frames": (5, "consecutive clear frames before an active hint turns off"),
    "brake.full_risk_area_px": (2000, "corridor area at which a hazard's risk stops growing with its size, pixels"),
}

RELIABILITY = ("best_effort", "reliable")
OUTPUTS = ("anomaly_mask", "anomaly_score", "detections", "emergency_brake")


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
    the outputs go under the image topic itself (``/cam/rgb`` → ``/cam/rgb/anomaly_mask``)."""
    topic = image_topic.strip()
    if not topic.startswith("/") or topic.endswith("/") or "//" in topic or len(topic) < 2:
        raise ValueError(f"image topic {image_topic!r} must be an absolute ROS topic name such as /camera/image_raw")
    compressed = topic.endswith("/compressed")
    base = topic[: -len("/compressed")] if compressed else topic
    namespace = topic if own_namespace else base.rsplit("/", 1)[0]
    return CameraTopics(
        name=namespace.strip("/") or "camera",
        input=topic,
        compressed=compressed,
        outputs={out: f"{namespace}/{out}" for out in OUTPUTS},
    )


def _type_of(default: Any) -> str:
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "str"
    return "float[]" if isinstance(default[0], float) else "str[]"


def _coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the type of the parameter's default; ints are accepted for floats."""
    kind = _type_of(PARAMETERS[name][0])
    bad = ValueError(f"parameter {name}: expected {kind}, got {value!r}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad
        return float(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise bad
    if kind == "str[]":
        if not all(isinstance(v, str) for v in value):
            raise bad
        return tuple(value)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise bad
    return tuple(float(v) for v in value)


@dataclass(frozen=True)
class NodeConfig:
    """Validated node settings (see :data:`PARAMETERS` for each field's meaning; dots become underscores)."""

    bundle: str = "default"
    backend: str = "onnxruntime"
    backend_options: dict[str, Any] = field(default_factory=dict)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    cameras: tuple[CameraTopics, ...] = ()
    qos_reliability: str = "best_effort"
    qos_depth: int = 1
    publish_score: bool = True
    max_rate_hz: float = 0.0
    input_timeout_s: float = 1.0
    diagnostics_period_s: float = 1.0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> NodeConfig:
        """Validate a flat ``{parameter name: value}`` mapping; missing names take their defaults.

        Raises:
            ValueError: an unknown parameter, a value of the wrong type, or a value out of range — one line naming
                the parameter and the value.
        """
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} (known: {', '.join(PARAMETERS)})")
        p = {name: _coerce(name, params[name]) if name in params else _coerce(name, d) for name, (d, _) in
             PARAMETERS.items()}  # fmt: skip
        return cls(
            bundle=_nonempty("bundle", p["bundle"]),
            backend=_choice("backend", p["backend"], BACKENDS),
            backend_options=_backend_options(p),
            pipeline=_pipeline_config(p),
            cameras=_cameras(p["image_topics"]),
            qos_reliability=_choice("qos.reliability", p["qos.reliability"], RELIABILITY),
            qos_depth=_at_least("qos.depth", p["qos.depth"], 1),
            publish_score=p["publish_score"],
            max_rate_hz=_at_least("max_rate_hz", p["max_rate_hz"], 0.0),
            input_timeout_s=_positive("input_timeout_s", p["input_timeout_s"]),
            diagnostics_period_s=_positive("diagnostics_period_s", p["diagnostics_period_s"]),
        )


def _nonempty(name: str, value: str) -> str:
    if not value.strip():
        raise ValueError(f"parameter {name}: must not be empty")
    return value


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"parameter {name}: {value!r} is not one of {', '.join(choices)}")
    return value


def _at_least(name: str, value: Any, low: float) -> Any:
    if value < low:
        raise ValueError(f"parameter {name}: must be >= {low}, got {value!r}")
    return value


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise ValueError(f"parameter {name}: must be > 0, got {value!r}")
    return value


def _backend_options(p: Mapping[str, Any]) -> dict[str, Any]:
    threads = _at_least("threads", p["threads"], 0)
    if p["backend"] == "torch":
        return {"device": _nonempty("device", p["device"])}
    if p["backend"] == "tensorrt":
        return {"engine": p["engine"]} if p["engine"] else {}
    providers = p["providers"]
    if not providers:
        raise ValueError("parameter providers: needs at least one of tensorrt, cuda, cpu")
    options: dict[str, Any] = {"providers": list(providers), "device_id": _at_least("device_id", p["device_id"], 0)}
    if threads:
        options["threads"] = threads
    if "tensorrt" in providers:
        options["fp16"] = p["fp16"]
        if p["trt_cache_dir"]:
            options["trt_cache_dir"] = p["trt_cache_dir"]
    return options


def _pipeline_config(p: Mapping[str, Any]) -> PipelineConfig:
    threshold = p["threshold"]
    if threshold != -1.0 and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"parameter threshold: must lie in [0, 1] (or -1 for the bundle's), got {threshold!r}")
    cut = p["max_p_false_positive"]
    if cut != -1.0 and not 0.0 < cut <= 1.0:
        raise ValueError(f"parameter max_p_false_positive: must lie in (0, 1] (or -1 for the bundle's), got {cut!r}")
    if p["region"] not in REGIONS:
        raise ValueError(f"parameter region: must be one of {', '.join(REGIONS)}, got {p['region']!r}")
    patience = _at_least("domain_patience", p["domain_patience"], 1)
    corridor = p["brake.corridor"]
    if len(corridor) % 2:
        raise ValueError(f"parameter brake.corridor: needs x, y pairs, got {len(corridor)} numbers")
    try:
        brake = BrakeConfig(
            corridor=tuple(zip(corridor[::2], corridor[1::2], strict=True)),
            use_road=p["brake.use_road"],
            min_area_px=p["brake.min_area_px"],
            max_p_false_positive=p["brake.max_p_false_positive"],
            persistence_k=p["brake.persistence_k"],
            persistence_n=p["brake.persistence_n"],
            release_frames=p["brake.release_frames"],
            full_risk_area_px=p["brake.full_risk_area_px"],
        )
        return PipelineConfig(
            threshold=None if threshold == -1.0 else threshold,
            max_p_false_positive=None if cut == -1.0 else cut,
            region=p["region"],
            brake=brake,
            road_class=p["road_class"],
            domain_patience=patience,
        )
    except ValueError as err:
        raise ValueError(f"parameter {err}") from None


def _cameras(topics: tuple[str, ...]) -> tuple[CameraTopics, ...]:
    if not topics:
        raise ValueError("parameter image_topics: needs at least one image topic")
    if len(set(topics)) != len(topics):
        raise ValueError(f"parameter image_topics: a topic is listed twice: {list(topics)}")
    return all_camera_topics(topics)


def all_camera_topics(topics: Sequence[str]) -> tuple[CameraTopics, ...]:
    """Output topics of several cameras: image topics whose namespaces would collide (``/cam/rgb`` and
    ``/cam/bgr``) each get their outputs under their own topic instead (``/cam/rgb/anomaly_mask``, …)."""
    cameras = [camera_topics(t) for t in topics]
    namespaces = [c.outputs["anomaly_mask"] for c in cameras]
    out = tuple(camera_topics(t, own_namespace=True) if namespaces.count(c.outputs["anomaly_mask"]) > 1 else c
                for t, c in zip(topics, cameras, strict=True))  # fmt: skip
    final = [c.outputs["anomaly_mask"] for c in out]
    if len(set(final)) != len(final):
        raise ValueError(f"image topics {', '.join(topics)} cannot get distinct output topics; rename or remap one")
    return out


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


def load_param_file(path: str | Path, node_name: str = "anomaly_node") -> dict[str, Any]:
    """Read a ROS 2 parameter YAML file (``node: {ros__parameters: {...}}``) into flat parameter names.

    Raises:
        ValueError: unreadable YAML, or no ``ros__parameters`` for ``node_name`` (or for ``/**``).
    """
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"parameter file {path}: {first_line(err)}") from None
    if not isinstance(doc, Mapping):
        raise ValueError(f"parameter file {path}: expected a mapping of node names")
    for key in (node_name, f"/{node_name}", "/**"):
        section = doc.get(key)
        if isinstance(section, Mapping) and isinstance(section.get("ros__parameters"), Mapping):
            return flatten(section["ros__parameters"])
    raise ValueError(f"parameter file {path}: no '{node_name}: ros__parameters:' section")
