"""Model bundles: one directory with the network, its pre-processing, the threshold and the meta classifier.

Layout (``bundle.json`` names every other file; all paths are relative and must stay inside the directory)::

    bundle.json                  manifest: schema version, model architecture, class names, input size,
                                 mean/std, threshold t, metric resolution, meta-classifier cut and training
                                 regime, feature names, code version, SHA-256 of every file
    model.safetensors            the network's state dict (torch backend)
    model.onnx                   optional: the exported graph (onnxruntime / tensorrt backends)
    meta_classifier.json / .npz  the meta classifier (see meta_ood_perception.meta_classifier); a bundle without
                                 one (``"meta_classifier": null``) keeps every component

The *metric resolution* (``metrics.height`` × ``metrics.width``) is where the score, the OoD mask, the components,
their 75 metrics, the meta classifier and the brake hint are computed, whatever the camera size: the meta
classifier's features (sizes in pixels, positions) mean the same on every camera. ``meta_training`` records the
regime the meta classifier was trained in (threshold, metric resolution, frame aspect ratio, data); the pipeline
warns once when it is used outside it. ``domain`` (optional; null or absent = the domain monitor is off) holds the
statistics of in-domain frames the domain monitor compares each frame with (:mod:`.domain`), and which frames they
were; it is not covered by a checksum (``bundle.json`` itself is not), so a bundle can be calibrated after it was
written (``meta_ood_training.domain_calibration.calibrate_bundle``).

``load_bundle(path)`` validates everything before use and names the first problem; nothing is unpickled.
``load_bundle("default")`` is the embedded default bundle shipped in the wheel (meta_ood_perception/data).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .domain import DomainCalibration
from .errors import BundleError as BundleError  # re-exported: ``from meta_ood_perception.bundle import BundleError``
from .errors import InputError
from .meta_classifier import MetaClassifier, MetaClassifierError, load_meta_classifier, sha256_file
from .metrics import feature_names
from .reports import first_line
from .scores import DEFAULT_THRESHOLD

SCHEMA_VERSION = 2
#: Components with a meta-classifier P(false positive) at or above this are removed, unless the bundle says otherwise.
DEFAULT_MAX_P_FALSE_POSITIVE = 0.5
DEFAULT_BUNDLE = Path(__file__).resolve().parent / "data" / "default_bundle"
#: Logged once by the node and by replay / demo when they load the embedded default bundle.
DEFAULT_BUNDLE_WARNING = (
    "the embedded default bundle is a demonstrator trained only on the synthetic world of meta_ood_training.synthetic: "
    "on real camera images its anomaly score and its brake hint mean nothing (its domain monitor makes the brake hint "
    "unavailable on frames outside that world); give the node a bundle trained on real data (parameter bundle)"
)
MANIFEST = "bundle.json"
META_CLASSIFIER_FILE = "meta_classifier.json"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bundle:
    """A validated bundle.

    Attributes:
        root: the bundle directory.
        manifest: the parsed ``bundle.json``.
        meta_classifier: the loaded meta classifier (its feature names equal :attr:`feature_names`), or None for
            a bundle that keeps every component.
        domain: the domain monitor's calibration (``bundle.json`` ``domain``), or None: the monitor is off.
    """

    root: Path
    manifest: dict[str, Any]
    meta_classifier: MetaClassifier | None
    domain: DomainCalibration | None = None

    @property
    def class_names(self) -> list[str]:
        """Names of the C output classes, in output order."""
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.manifest["class_names"])

    @property
    def threshold(self) -> float:
        """Anomaly threshold t of the OoD mask."""
        return float(self.manifest["threshold"])

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the network is run at, in pixels."""
        size = self.manifest["input"]
        return int(size["height"]), int(size["width"])

    @property
    def metric_size(self) -> tuple[int, int]:
        """(height, width) of the grid score, components, metrics, meta classifier and brake run at, pixels."""
        size = self.manifest["metrics"]
        return int(size["height"]), int(size["width"])

    @property
    def max_p_false_positive(self) -> float:
        """The meta-classifier cut: components with P(false positive) at or above it are removed."""
        return float(self.manifest["max_p_false_positive"])

    @property
    def meta_training(self) -> dict[str, Any] | None:
        """The regime the meta classifier was trained in (threshold, metric size, aspect ratio, data), or None."""
        value = self.manifest.get("meta_training")
        return dict(value) if isinstance(value, dict) else None

    @property
    def mean(self) -> tuple[float, float, float]:
        """RGB mean subtracted from [0, 1] pixel values."""
        m = self.manifest["input"]["mean"]
        return float(m[0]), float(m[1]), float(m[2])

    @property
    def std(self) -> tuple[float, float, float]:
        """RGB standard deviation the centred values are divided by."""
        s = self.manifest["input"]["std"]
        return float(s[0]), float(s[1]), float(s[2])

    @property
    def feature_names(self) -> list[str]:
        """Component-metric names in the meta classifier's column order."""
        return list(self.manifest["feature_names"])

    def file(self, role: str) -> Path:
        """Path of the model file for ``role`` (e.g. ``"torch"``); raises :class:`BundleError` if absent."""
        files = self.manifest["model"]["files"]
        if role not in files:
            raise BundleError(f"{self.root / MANIFEST}: no model file for {role!r} (has {sorted(files)})")
        return self.root / str(files[role])

    def build_torch_model(self) -> Any:
        """The network as a torch module in eval mode, weights from ``model.safetensors`` (needs torch).

        Raises:
            BundleError: an architecture or options the code does not know, or weights that do not fit it.
        """
        from safetensors.torch import load_file

        from .models import build_model, check_state_dict

        model_info = self.manifest["model"]
        try:
            model = build_model(model_info["architecture"], self.num_classes, **model_info.get("options", {}))
            state = load_file(str(self.file("torch")))
            check_state_dict(model, state)
        except InputError as err:  # ConfigError: unknown architecture / option; CheckpointError: weights misfit
            raise BundleError(f"{self.root / MANIFEST}: the network does not build: {err}") from None
        model.load_state_dict(state, strict=True)
        return model.eval()


def _inside(root: Path, name: str, field: str) -> Path:
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        raise BundleError(f"{root / MANIFEST}: {field} {name!r} points outside the bundle directory")
    return path


def load_bundle(path: str | Path) -> Bundle:
    """Load and validate a bundle directory, or the embedded default with ``"default"``.

    Raises:
        BundleError: missing directory or file, unreadable manifest, other schema version, missing field, bad
            value, path escaping the directory, checksum mismatch, or a meta classifier whose feature names
            differ from the manifest's.
    """
    root = DEFAULT_BUNDLE if str(path) == "default" else Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        hint = " (the default bundle is built by `meta-ood build-default-bundle`)" if str(path) == "default" else ""
        raise BundleError(f"bundle directory not found: {root}{hint}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(f"bundle manifest not found: {manifest_path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"cannot read bundle manifest {manifest_path}: {err}") from err
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: expected a JSON object")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {manifest.get('schema_version')!r}, this code reads {SCHEMA_VERSION} "
            "(rebuild the bundle with this version of meta-ood)"
        )
    required = (
        "model",
        "class_names",
        "input",
        "metrics",
        "threshold",
        "max_p_false_positive",
        "meta_classifier",
        "meta_training",
        "feature_names",
        "checksums",
    )
    for key in required:
        if key not in manifest:
            raise BundleError(f"{manifest_path}: missing field {key!r}")
    model = manifest["model"]
    if not isinstance(model, dict) or "architecture" not in model or not isinstance(model.get("files"), dict):
        raise BundleError(f"{manifest_path}: 'model' needs 'architecture' and a 'files' mapping")
    names = manifest["class_names"]
    if not isinstance(names, list) or len(names) < 2:
        raise BundleError(f"{manifest_path}: class_names must list at least 2 classes")
    inp = manifest["input"]
    try:
        mean, std = [float(v) for v in inp["mean"]], [float(v) for v in inp["std"]]
        ok = (
            isinstance(inp["height"], int) and isinstance(inp["width"], int) and inp["height"] > 0
            and inp["width"] > 0 and len(mean) == 3 and len(std) == 3
            and all(math.isfinite(v) for v in mean + std) and min(std) > 0
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise BundleError(f"{manifest_path}: input needs positive integer height/width and 3 finite mean and "
                          f"positive std values, got {inp}")  # fmt: skip
    metrics = manifest["metrics"]
    if not (
        isinstance(metrics, dict) and all(_positive_int(metrics.get(k)) for k in ("height", "width"))
    ):  # fmt: skip
        raise BundleError(f"{manifest_path}: metrics needs positive integer height/width, got {metrics}")
    threshold = manifest["threshold"]
    if not _number(threshold) or not 0.0 <= float(threshold) <= 1.0:
        raise BundleError(f"{manifest_path}: threshold must lie in [0, 1], got {threshold!r}")
    cut = manifest["max_p_false_positive"]
    if not _number(cut) or not 0.0 < float(cut) <= 1.0:
        raise BundleError(f"{manifest_path}: max_p_false_positive must lie in (0, 1], got {cut!r}")
    _check_regime(manifest["meta_training"], manifest_path)
    expected_features = feature_names(len(names))
    if manifest["feature_names"] != expected_features:
        raise BundleError(
            f"{manifest_path}: feature_names differ from the {len(expected_features)} component metrics of "
            f"{len(names)} classes"
        )
    checksums = manifest["checksums"]
    files_ok = all(isinstance(k, str) and isinstance(v, str) for k, v in model["files"].items())
    if not isinstance(checksums, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in
                                                  checksums.items()) or not files_ok:  # fmt: skip
        raise BundleError(f"{manifest_path}: 'checksums' and 'model.files' must map file names to strings")
    for name, digest in checksums.items():
        file = _inside(root, name, "checksummed file")
        if not file.is_file():
            raise BundleError(f"{manifest_path}: file missing: {file}")
        if sha256_file(file) != digest:
            raise BundleError(f"{file}: SHA-256 does not match {manifest_path} (changed or corrupt)")
    for role, name in model["files"].items():
        file = _inside(root, name, f"model file {role!r}")
        if not file.is_file():
            raise BundleError(f"{manifest_path}: model file for {role!r} missing: {file}")
        if name not in checksums:
            raise BundleError(f"{manifest_path}: model file {name!r} has no checksum")
    domain = _domain(manifest.get("domain"), manifest_path)  # None: the pipeline says once that the monitor is off
    if manifest["meta_classifier"] is None:
        return Bundle(root, manifest, None, domain)
    if not isinstance(manifest["meta_classifier"], str):
        raise BundleError(f"{manifest_path}: meta_classifier must be a file name or null")
    meta_path = _inside(root, manifest["meta_classifier"], "meta_classifier")
    try:
        meta = load_meta_classifier(meta_path, expected_names=expected_features)
    except MetaClassifierError as err:
        raise BundleError(f"{manifest_path}: meta classifier: {err}") from err
    return Bundle(root, manifest, meta, domain)


def _domain(value: Any, manifest_path: Path) -> DomainCalibration | None:
    """``domain``: absent or null (monitor off), or a valid :class:`~.domain.DomainCalibration` object."""
    if value is None:
        return None
    try:
        return DomainCalibration.from_dict(value)
    except (ValueError, TypeError) as err:
        raise BundleError(f"{manifest_path}: domain: {first_line(err)}") from None


def _check_regime(regime: Any, manifest_path: Path) -> None:
    """``meta_training``: null, or an object whose threshold / metric_size / input_size / aspect_ratio (each
    optional) are valid."""
    if regime is None:
        return
    if not isinstance(regime, dict):
        raise BundleError(f"{manifest_path}: meta_training must be an object or null")
    for key in ("metric_size", "input_size"):
        size = regime.get(key)
        if key in regime and not (isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))):
            raise BundleError(f"{manifest_path}: meta_training.{key} must be [height, width], got {size!r}")
    for key, low in (("threshold", 0.0), ("aspect_ratio", 1e-9)):
        value = regime.get(key)
        if key in regime and not (isinstance(value, int | float) and _number(value) and value >= low):
            raise BundleError(f"{manifest_path}: meta_training.{key} must be a number >= {low:g}, got {value!r}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def write_bundle(
    out_dir: str | Path,
    *,
    model: Any,
    architecture: str,
    class_names: list[str],
    input_size: tuple[int, int],
    meta_classifier: MetaClassifier | None,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    threshold: float = DEFAULT_THRESHOLD,
    metric_size: tuple[int, int] | None = None,
    max_p_false_positive: float = DEFAULT_MAX_P_FALSE_POSITIVE,
    meta_training: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    extra_model_files: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
    domain: DomainCalibration | dict[str, Any] | None = None,
) -> Bundle:
    """Write a bundle (torch state dict as safetensors, meta classifier, manifest) and return it loaded.

    ``metric_size`` (default: ``input_size``) is the metric resolution; ``meta_classifier=None`` writes a bundle
    that keeps every component; ``meta_training`` records the classifier's training regime (see the module
    docstring). ``extra_model_files`` names further model files already in ``out_dir`` by role (e.g.
    ``{"onnx": "model.onnx"}``); they are checksummed like the rest. Files of an earlier meta classifier are
    removed when the bundle has none. ``domain`` is the domain monitor's calibration (a
    :class:`~.domain.DomainCalibration` or its :meth:`~.domain.DomainCalibration.to_dict`; None = monitor off).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    meta_files: list[str] = []
    if meta_classifier is not None:
        meta_json = meta_classifier.save(out / META_CLASSIFIER_FILE)
        meta_files = [meta_json.name, meta_json.name.removesuffix(".json") + ".npz"]
    else:
        for stale in (META_CLASSIFIER_FILE, META_CLASSIFIER_FILE.removesuffix(".json") + ".npz"):
            (out / stale).unlink(missing_ok=True)
    extra = dict(extra_model_files or {})
    for role, name in extra.items():
        if not (out / name).is_file():
            raise BundleError(f"model file for {role!r} not found in {out}: {name}")
    files = ["model.safetensors", *meta_files, *extra.values()]
    metric_h, metric_w = metric_size or input_size
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "code_version": __version__,
        "model": {
            "architecture": architecture,
            "options": dict(model_options or {}),
            "files": {"torch": "model.safetensors", **extra},
        },
        "class_names": list(class_names),
        "input": {
            "height": int(input_size[0]),
            "width": int(input_size[1]),
            "mean": list(mean),
            "std": list(std),
            "channel_order": "RGB",
            "scale": "pixel / 255",
        },
        "metrics": {"height": int(metric_h), "width": int(metric_w)},
        "threshold": float(threshold),
        "max_p_false_positive": float(max_p_false_positive),
        "meta_classifier": meta_files[0] if meta_files else None,
        "meta_training": dict(meta_training) if meta_training is not None else None,
        "feature_names": feature_names(len(class_names)),
        "checksums": {name: sha256_file(out / name) for name in files},
        "metadata": dict(metadata or {}),
    }
    if domain is not None:
        manifest["domain"] = domain.to_dict() if isinstance(domain, DomainCalibration) else dict(domain)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return load_bundle(out)


def bundle_warnings(bundle: Bundle) -> list[str]:
    """What a node or replay logs once at load time about ``bundle``: that the embedded default bundle is a
    demonstrator of the synthetic world (a bundle without a domain calibration running with the domain monitor off
    is said once by its :class:`~meta_ood_perception.pipeline.AnomalyPipeline`)."""
    if bundle.root.resolve() == DEFAULT_BUNDLE.resolve():
        return [DEFAULT_BUNDLE_WARNING]
    return []
