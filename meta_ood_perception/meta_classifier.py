"""Meta classifiers at run time: P(false positive) per OoD component, with numpy alone.

Two kinds, both carrying their feature names (and order) and the standardization fitted on training data:

* ``logistic``: the research code's baseline, ``sigmoid(z · coef + intercept)``;
* ``mlp``: the paper's network, ``Linear → ReLU → … → Linear → sigmoid`` (75-75-75-1: 17,176 parameters).

Here ``z = (x − mean) / scale`` is the standardized feature row (``scale`` = std + 1e-10 as in the research
code). Models are stored as two files, never pickled: ``<name>.json`` (schema version, kind, feature names, array
shapes, SHA-256 of the arrays file) and ``<name>.npz`` (the arrays, read with ``allow_pickle=False``).
Training lives in ``meta_ood_training``; this module only evaluates.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import BundleError

SCHEMA_VERSION = 1
Kind = Literal["logistic", "mlp"]
FloatArray = npt.NDArray[np.float64]


class MetaClassifierError(BundleError):
    """A meta-classifier file or input that does not match what the model expects (a bundle's part: a
    :class:`~meta_ood_perception.errors.BundleError`)."""


@dataclass(frozen=True)
class MetaClassifier:
    """A trained meta classifier: standardization + logistic regression or MLP.

    Attributes:
        kind: ``"logistic"`` or ``"mlp"``.
        feature_names: names of the F input columns, in order.
        mean: (F,) float64 standardization offsets.
        scale: (F,) float64 standardization divisors (> 0).
        weights: per layer (out, in) float64 matrices; one (1, F) matrix for ``logistic``.
        biases: per layer (out,) float64 vectors.
        metadata: free-form JSON-serializable facts (training data, seed, code version, metrics).
    """

    kind: Kind
    feature_names: tuple[str, ...]
    mean: FloatArray
    scale: FloatArray
    weights: tuple[FloatArray, ...]
    biases: tuple[FloatArray, ...]
    metadata: dict[str, Any]

    def __post_init__(self) -> None:
        _check_model(self)

    @property
    def n_features(self) -> int:
        """Number of input features F."""
        return len(self.feature_names)

    @property
    def n_parameters(self) -> int:
        """Trainable parameters (weights and biases; the standardization is not counted)."""
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases, strict=True)))

    def decision_function(self, features: Any, names: Sequence[str] | None = None) -> FloatArray:
        """(N,) float64 logits of P(false positive); arguments as for :meth:`predict_proba`."""
        x = self._inputs(features, names)
        z = (x - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            z = z @ w.T + b
            if i < len(self.weights) - 1:
                np.maximum(z, 0.0, out=z)
        return z[:, 0]

    def predict_proba(self, features: Any, names: Sequence[str] | None = None) -> FloatArray:
        """P(false positive) of each component.

        Args:
            features: (N, F) float array of component metrics, or a
                :class:`~meta_ood_perception.metrics.ComponentMetrics` (its ``names`` are checked).
            names: the column names of ``features``; if given they must equal :attr:`feature_names`.

        Returns:
            (N,) float64 in [0, 1].

        Raises:
            MetaClassifierError: wrong shape, non-finite values, or names that differ from the model's.
        """
        logits = self.decision_function(features, names)
        return _sigmoid(logits)

    def _inputs(self, features: Any, names: Sequence[str] | None) -> FloatArray:
        if names is None and hasattr(features, "names") and hasattr(features, "features"):
            names, features = features.names, features.features
        if names is not None and tuple(names) != self.feature_names:
            raise MetaClassifierError(_name_mismatch(self.feature_names, tuple(names), "features"))
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise MetaClassifierError(
                f"features must have shape (N, {self.n_features}) for this {self.kind} model, got {x.shape}"
            )
        if not np.isfinite(x).all():
            rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
            raise MetaClassifierError(f"features hold NaN or inf in {len(rows)} row(s), first row {int(rows[0])}")
        return x

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.json`` and ``<path>.npz`` (``path`` with or without ``.json``); returns the JSON path."""
        json_path = _json_path(path)
        npz_path = json_path.with_name(json_path.name.removesuffix(".json") + ".npz")
        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            arrays[f"weight{i}"] = w
            arrays[f"bias{i}"] = b
        json_path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(npz_path, **arrays)  # type: ignore[arg-type]  # float64 arrays only; nothing is pickled
        header = {
            "schema_version": SCHEMA_VERSION,
            "kind": self.kind,
            "feature_names": list(self.feature_names),
            "n_layers": len(self.weights),
            "n_parameters": self.n_parameters,
            "arrays": {name: list(a.shape) for name, a in arrays.items()},
            "arrays_file": npz_path.name,
            "arrays_sha256": sha256_file(npz_path),
            "metadata": self.metadata,
        }
        json_path.write_text(json.dumps(header, indent=1) + "\n")
        return json_path


def logistic(
    feature_names: Sequence[str],
    mean: npt.ArrayLike,
    scale: npt.ArrayLike,
    coef: npt.ArrayLike,
    intercept: float,
    metadata: dict[str, Any] | None = None,
) -> MetaClassifier:
    """Build a logistic meta classifier from (F,) ``coef`` and a scalar ``intercept`` (on standardized z)."""
    w = np.asarray(coef, dtype=np.float64).reshape(1, -1)
    return MetaClassifier(
        "logistic", tuple(feature_names), _vec(mean), _vec(scale), (w,), (np.array([float(intercept)]),),
        dict(metadata or {}),
    )  # fmt: skip


def mlp(
    feature_names: Sequence[str],
    mean: npt.ArrayLike,
    scale: npt.ArrayLike,
    weights: Sequence[npt.ArrayLike],
    biases: Sequence[npt.ArrayLike],
    metadata: dict[str, Any] | None = None,
) -> MetaClassifier:
    """Build an MLP meta classifier from per-layer (out, in) weights and (out,) biases (torch ``Linear`` layout)."""
    return MetaClassifier(
        "mlp",
        tuple(feature_names),
        _vec(mean),
        _vec(scale),
        tuple(np.asarray(w, dtype=np.float64) for w in weights),
        tuple(_vec(b) for b in biases),
        dict(metadata or {}),
    )


def load_meta_classifier(path: str | Path, expected_names: Sequence[str] | None = None) -> MetaClassifier:
    """Load a model written by :meth:`MetaClassifier.save`, checking everything before use.

    Args:
        path: the ``.json`` file (or the same path without suffix).
        expected_names: if given, the feature names (and order) the caller will provide.

    Raises:
        MetaClassifierError: missing or unreadable files, another schema version, unknown kind, checksum or
            shape mismatch, non-finite weights, or feature names that differ from ``expected_names``.
    """
    json_path = _json_path(path)
    try:
        header = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise MetaClassifierError(f"meta classifier file not found: {json_path}") from None
    except (OSError, json.JSONDecodeError) as err:
        raise MetaClassifierError(f"cannot read meta classifier {json_path}: {err}") from err
    if not isinstance(header, dict):
        raise MetaClassifierError(f"{json_path}: expected a JSON object, got {type(header).__name__}")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MetaClassifierError(f"{json_path}: schema_version {version!r}, this code reads {SCHEMA_VERSION}")
    kind = header.get("kind")
    if kind not in ("logistic", "mlp"):
        raise MetaClassifierError(f"{json_path}: unknown kind {kind!r}, expected 'logistic' or 'mlp'")
    names = header.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MetaClassifierError(f"{json_path}: feature_names must be a list of strings")
    arrays_file = str(header.get("arrays_file", ""))
    npz_path = json_path.parent / arrays_file
    if Path(arrays_file).name != arrays_file or not arrays_file:
        raise MetaClassifierError(f"{json_path}: arrays_file {arrays_file!r} must be a file name beside the JSON")
    if not npz_path.is_file():
        raise MetaClassifierError(f"{json_path}: arrays file missing: {npz_path}")
    if sha256_file(npz_path) != header.get("arrays_sha256"):
        raise MetaClassifierError(f"{npz_path}: SHA-256 does not match {json_path} (file changed or corrupt)")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k], dtype=np.float64) for k in data.files}
    except (OSError, ValueError) as err:
        raise MetaClassifierError(f"cannot read {npz_path}: {err}") from err
    declared = header.get("arrays", {})
    actual = {k: list(v.shape) for k, v in arrays.items()}
    if declared != actual:
        raise MetaClassifierError(f"{npz_path}: arrays {actual} differ from those declared in {json_path}: {declared}")
    n_layers = int(header.get("n_layers", 0))
    try:
        model = MetaClassifier(
            kind,
            tuple(names),
            arrays["mean"],
            arrays["scale"],
            tuple(arrays[f"weight{i}"] for i in range(n_layers)),
            tuple(arrays[f"bias{i}"] for i in range(n_layers)),
            dict(header.get("metadata") or {}),
        )
    except KeyError as err:
        raise MetaClassifierError(f"{npz_path}: missing array {err}") from None
    if expected_names is not None and tuple(expected_names) != model.feature_names:
        raise MetaClassifierError(_name_mismatch(model.feature_names, tuple(expected_names), str(json_path)))
    return model


def _check_model(model: MetaClassifier) -> None:
    f = len(model.feature_names)
    if f == 0 or len(set(model.feature_names)) != f:
        raise MetaClassifierError("feature_names must be non-empty and unique")
    for name, v in (("mean", model.mean), ("scale", model.scale)):
        if v.shape != (f,):
            raise MetaClassifierError(f"{name} has shape {v.shape}, expected ({f},) for {f} feature names")
    if not (model.scale > 0).all():
        raise MetaClassifierError("scale must be positive")
    if not model.weights or len(model.weights) != len(model.biases):
        raise MetaClassifierError("weights and biases must be non-empty and of equal length")
    if model.kind == "logistic" and len(model.weights) != 1:
        raise MetaClassifierError(f"a logistic model has one layer, got {len(model.weights)}")
    width = f
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        if w.ndim != 2 or w.shape[1] != width or b.shape != (w.shape[0],):
            raise MetaClassifierError(
                f"layer {i}: weight {w.shape} / bias {b.shape} do not fit an input of width {width}"
            )
        width = w.shape[0]
    if width != 1:
        raise MetaClassifierError(f"the last layer must have 1 output, got {width}")
    arrays = (model.mean, model.scale, *model.weights, *model.biases)
    if not all(np.isfinite(a).all() for a in arrays):
        raise MetaClassifierError("model parameters hold NaN or inf")


def _name_mismatch(model: tuple[str, ...], given: tuple[str, ...], what: str) -> str:
    if len(model) != len(given):
        return f"{what}: {len(given)} feature names, the model expects {len(model)}"
    i = next(i for i, (a, b) in enumerate(zip(model, given, strict=True)) if a != b)
    return f"{what}: feature {i} is {given[i]!r}, the model expects {model[i]!r} (names or order differ)"


def _json_path(path: str | Path) -> Path:
    """``x.json`` for ``x``, ``x.json`` or ``x.npz``; other suffixes are kept (``m.v1`` → ``m.v1.json``)."""
    path = Path(path)
    if path.suffix == ".json":
        return path
    if path.suffix == ".npz":
        return path.with_suffix(".json")
    return path.with_name(path.name + ".json")


def _sigmoid(x: FloatArray) -> FloatArray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def _vec(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64).reshape(-1)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes (model files are checked with it before use)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
