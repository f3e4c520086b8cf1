"""``meta-ood export-onnx`` and ``meta-ood build-engine``: ONNX graphs (optionally with the heat maps inside) and
TensorRT engines.

The exported graph takes ``image``: (N, 3, H, W) float32, normalized as in training (RGB, ``pixel / 255``, ImageNet
mean / std), and returns ``logits``: (N, C, H, W) float32. With ``heatmaps=True`` it also returns, all computed in
float32 inside the graph so a GPU engine hands back what post-processing needs:

* ``probs`` (N, C, H, W) softmax; ``score`` (N, H, W) anomaly score a = entropy / log C (0·log 0 = 0);
* ``entropy`` (N, H, W) E = Σ p·log(p + ε) / log(1/C); ``margin`` D = 1 − p(1) + p(2); ``variation`` V = 1 − p(1);
* ``argmax`` (N, H, W) int32 predicted class.

(The runtime's numpy heat maps follow the research code's float64 margins; the graph's float32 values agree to
~1e-6.) Opset 17 by default; the input size is fixed (``height``/``width``) or dynamic in batch, height and width.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meta_ood_perception.bundle import Bundle
from meta_ood_perception.errors import ConfigError

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 17
OUTPUTS_WITH_HEATMAPS = ("logits", "probs", "score", "entropy", "margin", "variation", "argmax")


class WithHeatmaps(nn.Module):
    """Wraps a segmentation network (logits out) so the graph also emits softmax, anomaly score and heat maps."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.log_c = math.log(num_classes)
        self.eps = float(np.finfo(np.float32).eps)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits = self.model(image)
        probs = torch.softmax(logits, dim=1)
        # p·log p with 0·log 0 = 0 exactly, also in FP16 engines (where a clamp at 1e-30 would round to 0 → NaN)
        positive = probs > 0
        plogp = torch.where(positive, probs * torch.log(torch.where(positive, probs, torch.ones_like(probs))), 0.0)
        score = -plogp.sum(dim=1) / self.log_c
        entropy = (probs * torch.log(probs + self.eps)).sum(dim=1) / -self.log_c
        top2 = torch.topk(probs, 2, dim=1).values
        margin = 1.0 - top2[:, 0] + top2[:, 1]
        variation = 1.0 - top2[:, 0]
        argmax = torch.argmax(probs, dim=1).to(torch.int32)
        return logits, probs, score, entropy, margin, variation, argmax


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    num_classes: int,
    height: int,
    width: int,
    dynamic: bool = False,
    heatmaps: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Export ``model`` (logits at input size) to ``path``; see the module docstring for inputs and outputs."""
    if height < 16 or width < 16:
        raise ConfigError(f"export size must be at least 16×16, got {height}×{width}")
    model = model.eval()
    module: nn.Module = WithHeatmaps(model, num_classes).eval() if heatmaps else model
    outputs = list(OUTPUTS_WITH_HEATMAPS) if heatmaps else ["logits"]
    axes: dict[str, dict[int, str]] | None = None
    if dynamic:
        spatial = {0: "batch", 2: "height", 3: "width"}
        axes = {"image": spatial, "logits": spatial}
        if heatmaps:
            axes["probs"] = spatial
            for name in ("score", "entropy", "margin", "variation", "argmax"):
                axes[name] = {0: "batch", 1: "height", 2: "width"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter is deliberate (no onnxscript dependency); it warns
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module, (torch.zeros(1, 3, height, width),), str(path), input_names=["image"], output_names=outputs,
            opset_version=opset, dynamic_axes=axes, dynamo=False,
        )  # fmt: skip
    LOG.info("ONNX (opset %d, %s, outputs %s) -> %s", opset, "dynamic size" if dynamic else f"{height}×{width}",
             ", ".join(outputs), path)  # fmt: skip
    return path


def model_from_bundle(bundle: Bundle) -> tuple[nn.Module, int]:
    """The bundle's torch network and its class count."""
    return bundle.build_torch_model(), bundle.num_classes
