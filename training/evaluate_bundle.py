"""``meta-ood evaluate``: a bundle on an OoD test set — pixel metrics, SMIYC component metrics, meta classifier.

For every frame: the network runs at the bundle's input size and its logits are resized back to the frame before
the softmax, exactly as in the runtime pipeline (:mod:`meta_ood_perception.preprocessing`); then the anomaly score
gives the pixel metrics, the OoD mask (a ≥ t inside the labelled region) gives components and their 75 metrics,
the bundle's meta classifier removes components with P(false positive) ≥ 0.5, and the remaining mask gives the
SMIYC metrics and the false-positive / false-negative counts before and after removal.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from meta_ood_perception.bundle import Bundle
from meta_ood_perception.components import ood_mask
from meta_ood_perception.evaluation import PixelMetricsAccumulator
from meta_ood_perception.metrics import component_metrics, ground_truth_metrics
from meta_ood_perception.preprocessing import check_frame, logits_to_probs, to_network_input
from meta_ood_perception.reports import write_json
from meta_ood_perception.scores import anomaly_score
from meta_ood_perception.smiyc import SegmentMetricsAccumulator, frame_segments

from .meta_cv import scores

LOG = logging.getLogger(__name__)


def bundle_probabilities(
    bundle: Bundle, model: torch.nn.Module, image: npt.NDArray[np.uint8], device: str = "cpu"
) -> npt.NDArray[np.float32]:
    """(C, H, W) float32 softmax of an (H, W, 3) uint8 RGB frame at the frame's own resolution, with the runtime
    pipeline's pre- and post-processing (:mod:`meta_ood_perception.preprocessing`)."""
    x = to_network_input(check_frame(image), bundle.input_size, bundle.mean, bundle.std)
    with torch.no_grad():
        logits = model(torch.from_numpy(x).to(device))[0].float().cpu().numpy()
    return logits_to_probs(logits, image.shape[:2])


def evaluate_bundle(
    bundle: Bundle,
    dataset: Any,
    *,
    frames: int | None = None,
    device: str = "cpu",
    min_pred_size: int = 50,
    min_gt_size: int = 10,
    plots_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The report of ``meta-ood evaluate`` (see the module docstring) over the first ``frames`` items.

    Returns ``{"pixel": {auroc, fpr95, auprc}, "components": {sIoU, PPV, mean_F1, F1, fp/fn counts},
    "meta": {auroc, auprc, n}, "frames": n}``; ``meta`` values are None when the components hold one class only.
    """
    model = bundle.build_torch_model().to(device)
    count = len(dataset) if frames is None else min(frames, len(dataset))
    pixel = PixelMetricsAccumulator()
    segments = SegmentMetricsAccumulator()
    proba_all, y_all = [], []
    fp_before = fp_after = fn_before = fn_after = lost = n_objects = 0
    for index in tqdm(range(count), desc="evaluate", disable=not progress):
        image, target = dataset[index]
        probs = bundle_probabilities(bundle, model, image, device)
        score = anomaly_score(probs)
        pixel.update(score, target)
        valid = target != 255
        mask = ood_mask(score, bundle.threshold, valid)
        table = component_metrics(probs, mask, target)
        p_fp = bundle.meta_classifier.predict_proba(table) if len(table) else np.zeros(0)
        assert table.iou0 is not None
        kept = p_fp < 0.5
        labels = np.abs(table.components)
        kept_mask = np.concatenate([[False], kept])[labels]
        segments.update(frame_segments(kept_mask, target, min_pred_size=min_pred_size, min_gt_size=min_gt_size))
        y = table.iou0.astype(np.int64)
        proba_all.append(p_fp)
        y_all.append(y)
        fp_before += int(y.sum())
        fp_after += int(y[kept].sum())
        lost += int(((y == 0) & ~kept).sum())
        truth = ground_truth_metrics(probs, mask, target)
        gt_labels = np.abs(truth.components)
        n_objects += len(truth)
        fn_before += int((truth.iou0 == 1).sum())
        hit_after = np.unique(gt_labels[kept_mask & (gt_labels > 0)])
        fn_after += len(truth) - len(hit_after)
    proba = np.concatenate(proba_all) if proba_all else np.zeros(0)
    y = np.concatenate(y_all) if y_all else np.zeros(0, np.int64)
    meta: dict[str, Any] = {"n": len(y), "auroc": None, "auprc": None}
    if len(np.unique(y)) == 2:
        meta["auroc"], meta["auprc"], meta["accuracy"] = scores(y, proba)
        if plots_dir is not None:
            from .meta_report import plot_roc_pr

            meta["plots"] = [str(p) for p in plot_roc_pr(y, {"meta classifier": proba}, plots_dir)]
    seg = segments.compute()
    components = {
        "sIoU": seg["sIoU_gt"], "PPV": seg["PPV"], "mean_F1": seg["mean_F1"], "F1": seg["F1"],
        "gt_objects": n_objects, "false_positives_before": fp_before, "false_positives_after": fp_after,
        "false_negatives_before": fn_before, "false_negatives_after": fn_after, "true_detections_lost": lost,
    }  # fmt: skip
    return {"pixel": pixel.compute("exact"), "components": components, "meta": meta, "frames": count}


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as JSON (NaN written as null)."""
    write_json(report, path)
