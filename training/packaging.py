"""A trained network (and optionally a meta classifier) as a bundle with its ONNX graph registered.

Every offline consumer that measures a network (the default bundle's build, ``meta-ood results``) packages it first
and then runs the bundle's deployed :class:`~meta_ood_perception.pipeline.AnomalyPipeline` on it, so what is
measured is what the node runs.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meta_ood_perception.bundle import (
    DEFAULT_MAX_P_FALSE_POSITIVE,
    MANIFEST,
    Bundle,
    BundleError,
    load_bundle,
    write_bundle,
)
from meta_ood_perception.meta_classifier import MetaClassifier, sha256_file
from meta_ood_perception.models import MEAN_RGB, STD_RGB
from meta_ood_perception.pipeline import AnomalyPipeline, PipelineConfig
from meta_ood_perception.scores import DEFAULT_THRESHOLD

from .export import DEFAULT_OPSET, export_onnx, model_from_bundle

ONNX_FILE = "model.onnx"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSpec:
    """What a bundle needs to know about its network besides the weights.

    Attributes:
        architecture: ``build_model`` name. options: its options (e.g. ``{"width": 16}``).
        class_names: the C output classes in order. input_size: (h, w) the network runs at, pixels.
        metric_size: (h, w) of the metric grid, pixels (default: ``input_size``).
        threshold: anomaly threshold t.
    """

    architecture: str
    options: dict[str, Any]
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    metric_size: tuple[int, int] | None = None
    threshold: float = DEFAULT_THRESHOLD


def package(
    model: torch.nn.Module,
    out_dir: str | Path,
    spec: NetworkSpec,
    *,
    meta_classifier: MetaClassifier | None = None,
    max_p_false_positive: float = DEFAULT_MAX_P_FALSE_POSITIVE,
    meta_training: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Bundle:
    """Export ``model`` to ONNX (dynamic size) into ``out_dir`` and write the bundle around it; returns it loaded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    h, w = spec.input_size
    export_onnx(model, out / ONNX_FILE, num_classes=len(spec.class_names), height=h, width=w, dynamic=True)
    return write_bundle(
        out, model=model, architecture=spec.architecture, model_options=dict(spec.options),
        class_names=list(spec.class_names), input_size=spec.input_size, metric_size=spec.metric_size,
        threshold=spec.threshold, meta_classifier=meta_classifier, max_p_false_positive=max_p_false_positive,
        meta_training=meta_training, mean=MEAN_RGB, std=STD_RGB, extra_model_files={"onnx": ONNX_FILE},
        metadata=metadata,
    )  # fmt: skip


def register_model_file(bundle_dir: str | Path, role: str, path: str | Path) -> Bundle:
    """Record ``path`` (a file inside the bundle directory) as the bundle's model file for ``role`` (``"onnx"`` is
    what the onnxruntime and tensorrt backends read) in ``bundle.json``, with its SHA-256; returns the bundle
    loaded again.

    The manifest is rewritten in place (every other field, e.g. a domain calibration, is kept; the write is atomic).
    The checksum of a file the role named before is dropped when no other role names it (the file stays). A new
    ``"onnx"`` graph (another file or other bytes) also drops the ``"tensorrt"`` engine from the model files: it
    was built from the old graph (logged; the engine file stays).

    Raises:
        BundleError: the bundle does not load, ``path`` is not a file inside it, or ``role`` is ``"torch"`` (the
            weights are written only by ``write_bundle``).
    """
    bundle = load_bundle(bundle_dir)
    root = bundle.root.resolve()
    file = Path(path).resolve()
    if root not in file.parents or not file.is_file():
        raise BundleError(f"cannot register {path} in {bundle.root}: not a file inside the bundle directory")
    if role == "torch":
        raise BundleError("the torch weights of a bundle are written by write_bundle / make-bundle, not registered")
    name = file.relative_to(root).as_posix()
    manifest_path = bundle.root / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    files: dict[str, str] = manifest["model"]["files"]
    checksums: dict[str, str] = manifest["checksums"]
    old = files.get(role)
    old_digest = checksums.get(old) if old is not None else None
    files[role] = name
    checksums[name] = sha256_file(file)
    if old is not None and old != name:
        _drop_checksum(manifest, old)
    if role == "onnx" and "tensorrt" in files and (old, old_digest) != (name, checksums[name]):
        engine = files.pop("tensorrt")
        _drop_checksum(manifest, engine)
        LOG.warning("%s: dropped the TensorRT engine %s from the bundle's model files: it was built from the ONNX "
                    "graph %s replaces (rebuild it with meta-ood build-engine)", bundle.root, engine, name)  # fmt: skip
    tmp = manifest_path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, manifest_path)
    return load_bundle(bundle.root)


def _drop_checksum(manifest: dict[str, Any], name: str) -> None:
    """Forget the checksum of ``name`` unless a model file role or the meta classifier still names it."""
    if name not in manifest["model"]["files"].values() and name != manifest.get("meta_classifier"):
        manifest["checksums"].pop(name, None)


def export_into_bundle(
    bundle: Bundle,
    path: str | Path | None = None,
    *,
    height: int | None = None,
    width: int | None = None,
    dynamic: bool = False,
    heatmaps: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Bundle:
    """Export the bundle's network to ``path`` inside it (default ``<bundle>/model.onnx``) and register it as its
    ONNX graph (:func:`register_model_file`); returns the bundle loaded again.

    The graph is written to a temporary file beside ``path`` and moved over it only when complete, then
    registered: an interrupted export leaves the bundle as it was (its checksums valid).

    Raises:
        BundleError: ``path`` is not inside the bundle, or a fixed size other than the bundle's input size.
    """
    root = bundle.root.resolve()
    target = Path(path).resolve() if path is not None else root / ONNX_FILE
    if root not in target.parents:
        raise BundleError(f"cannot export into {bundle.root}: {path} is not inside the bundle directory")
    h, w = height or bundle.input_size[0], width or bundle.input_size[1]
    if not dynamic and (h, w) != bundle.input_size:
        raise BundleError(f"a graph registered in {bundle.root} must take its input size {bundle.input_size[0]}×"
                          f"{bundle.input_size[1]} (or be dynamic), not {h}×{w}")  # fmt: skip
    model, num_classes = model_from_bundle(bundle)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        export_onnx(model, tmp, num_classes=num_classes, height=h, width=w, dynamic=dynamic, heatmaps=heatmaps,
                    opset=opset)  # fmt: skip
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return register_model_file(root, "onnx", target)


class DeployedPipeline:
    """A context manager: ``model`` packaged into a temporary keep-all bundle and its deployed pipeline
    (ONNX Runtime on the CPU), for measuring a network the way the node would run it."""

    def __init__(self, model: torch.nn.Module, spec: NetworkSpec, config: PipelineConfig | None = None) -> None:
        self.model, self.spec, self.config = model, spec, config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> AnomalyPipeline:
        self._tmp = tempfile.TemporaryDirectory(prefix="meta_ood_bundle_")
        try:
            bundle = package(self.model, self._tmp.name, self.spec)
            return AnomalyPipeline.from_bundle(
                bundle, backend="onnxruntime", config=self.config, threads=2, warn_uncalibrated=False
            )
        except BaseException:
            self._tmp.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
