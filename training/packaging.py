"""A trained network (and optionally a meta classifier) as a bundle with its ONNX graph registered.

Every offline consumer that measures a network (the default bundle's build, ``meta-ood results``) packages it first
and then runs the bundle's deployed :class:`~meta_ood_perception.pipeline.AnomalyPipeline` on it, so what is
measured is what the node runs.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from meta_ood_perception.bundle import DEFAULT_MAX_P_FALSE_POSITIVE, Bundle, write_bundle
from meta_ood_perception.meta_classifier import MetaClassifier
from meta_ood_perception.models import MEAN_RGB, STD_RGB
from meta_ood_perception.pipeline import AnomalyPipeline, PipelineConfig
from meta_ood_perception.scores import DEFAULT_THRESHOLD

from .export import export_onnx

ONNX_FILE = "model.onnx"


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
            return AnomalyPipeline.from_bundle(bundle, backend="onnxruntime", config=self.config, threads=2)
        except BaseException:
            self._tmp.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
