"""``meta-ood evaluate``: a bundle on an OoD test set — pixel metrics, SMIYC component metrics, meta classifier.

Every frame goes through :meth:`AnomalyPipeline.process <meta_ood_perception.pipeline.AnomalyPipeline.process>` of
the bundle with its deployed backend, with the frame's ground truth as target: the network at the bundle's input
size, score and components at its metric resolution, components inside the labelled region (the LostAndFound
protocol), the bundle's meta classifier and cut. Pixel metrics compare ``FrameResult.score`` with the labels at the
frame's resolution; the SMIYC metrics use the kept mask at the frame's resolution; the component counts (false
positives before and after the meta classifier, true detections lost, ground-truth objects missed) come from the
pipeline's component table and decisions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from meta_ood_perception.evaluation import PixelMetricsAccumulator
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.reports import write_json
from meta_ood_perception.smiyc import SegmentMetricsAccumulator, frame_segments

from .meta_cv import scores
from .meta_extract import ComponentCollector

LOG = logging.getLogger(__name__)


def evaluate_bundle(
    pipeline: AnomalyPipeline,
    dataset: Any,
    *,
    frames: int | None = None,
    groups: Any = None,
    min_pred_size: int = 50,
    min_gt_size: int = 10,
    plots_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The report of ``meta-ood evaluate`` (see the module docstring) over the first ``frames`` items.

    Returns ``{"pixel": {auroc, fpr95, auprc}, "components": {sIoU, PPV, mean_F1, F1, counts}, "meta": {auroc,
    auprc, accuracy, n, n_false_positives, note}, "frames": n, "pipeline": {...}}``; ``meta`` AUROC / AUPRC are None
    (with ``note`` saying why) when the components hold one class only or the bundle has no meta classifier.
    """
    count = len(dataset) if frames is None else min(frames, len(dataset))
    pixel = PixelMetricsAccumulator()
    segments = SegmentMetricsAccumulator()
    collector = ComponentCollector()
    for index in tqdm(range(count), desc="evaluate", disable=not progress):
        image, target = dataset[index]
        pipeline.reset()  # frames of a test set are independent: no brake history across them
        result = pipeline.process(image, target)
        assert result.analysis is not None
        pixel.update(result.score, target)
        segments.update(frame_segments(result.mask.astype(bool), target, min_pred_size=min_pred_size,
                                       min_gt_size=min_gt_size))  # fmt: skip
        collector.add(result.analysis, index if groups is None else int(groups[index]))
    return {
        "pixel": pixel.compute("exact"),
        "components": {**_segment_report(segments), **component_counts(collector)},
        "meta": meta_report(collector, pipeline, plots_dir),
        "frames": count,
        "pipeline": pipeline_settings(pipeline),
    }


def in_sample(regime: dict[str, Any] | None, identity: dict[str, Any]) -> str | None:
    """Why the test frames ``identity`` (see :func:`~meta_ood_training.meta_extract.dataset_identity`) overlap the
    frames the bundle's meta classifier was trained or its cut chosen on (``meta_training.data`` /
    ``selection_data``), or None when they do not.

    Both sets start at a dataset's first frame, so frames overlap whenever they are of the same dataset: the same
    resolved root and split for a real dataset, the same seed for a synthetic world (other options render the
    same streets and look-alikes).
    """
    if not regime:
        return None
    for key, use in (("data", "trained on"), ("selection_data", "had its cut chosen on")):
        trained = regime.get(key)
        if not isinstance(trained, dict) or trained.get("dataset") != identity.get("dataset"):
            continue
        if str(identity.get("dataset", "")).startswith("synthetic"):
            same = trained.get("seed") == identity.get("seed")
            where = f"seed {identity.get('seed')}"
        else:
            same = trained.get("root") == identity.get("root") and trained.get("split") == identity.get("split")
            where = f"{identity.get('root')}, split {identity.get('split')}"
        overlap = min(int(trained.get("frames") or 0), int(identity.get("frames") or 0))
        if same and overlap > 0:
            return (f"the bundle's meta classifier {use} the first {trained.get('frames')} frames of "
                    f"{identity.get('dataset')} ({where}); {overlap} of the {identity.get('frames')} test frames are "
                    "among them, so its figures here are optimistic")  # fmt: skip
    return None


def _segment_report(segments: SegmentMetricsAccumulator) -> dict[str, Any]:
    seg = segments.compute()
    return {"sIoU": seg["sIoU_gt"], "PPV": seg["PPV"], "mean_F1": seg["mean_F1"], "F1": seg["F1"]}


def component_counts(collector: ComponentCollector) -> dict[str, Any]:
    """Components before / after the meta classifier: false positives, true detections kept and lost, and
    ground-truth objects no (kept) component overlaps."""
    data, kept = collector.dataset(), collector.kept
    y = data.y
    assert data.objects is not None
    n_true = int((y == 0).sum())
    lost = int(((y == 0) & ~kept).sum())
    fp_before, fp_after = int(y.sum()), int(y[kept].sum())
    return {
        "components": data.n,
        "gt_objects": data.objects.n_objects,
        "true_detections": n_true,
        "false_positives_before": fp_before,
        "false_positives_after": fp_after,
        "false_positives_removed_fraction": (fp_before - fp_after) / fp_before if fp_before else None,
        "true_detections_lost": lost,
        "true_detections_lost_fraction": lost / n_true if n_true else None,
        "false_negatives_before": data.objects.missed(np.ones(data.n, bool)),
        "false_negatives_after": data.objects.missed(kept),
    }


def meta_report(
    collector: ComponentCollector, pipeline: AnomalyPipeline, plots_dir: str | Path | None = None
) -> dict[str, Any]:
    """AUROC / AUPRC of the pipeline's P(false positive) against the components' targets, and the accuracy of its
    keep/remove decisions at the pipeline's cut."""
    data, proba = collector.dataset(), collector.p_false_positive
    meta: dict[str, Any] = {"n": data.n, "n_false_positives": int(data.y.sum()), "auroc": None, "auprc": None,
                            "max_p_false_positive": pipeline.max_p_false_positive}  # fmt: skip
    if pipeline.bundle.meta_classifier is None:
        meta["note"] = "the bundle has no meta classifier: every component is kept"
    elif len(np.unique(data.y)) < 2:
        kind = "false positives" if data.n and data.y[0] else "true detections"
        meta["note"] = f"AUROC / AUPRC need both classes; all {data.n} components are {kind}"
    else:
        meta["auroc"], meta["auprc"], _ = scores(data.y, proba)
        meta["accuracy"] = float(((~collector.kept).astype(np.int64) == data.y).mean())  # at the pipeline's cut
        if plots_dir is not None:
            from .meta_report import plot_roc_pr

            meta["plots"] = [str(p) for p in plot_roc_pr(data.y, {"meta classifier": proba}, plots_dir)]
    return meta


def pipeline_settings(pipeline: AnomalyPipeline) -> dict[str, Any]:
    """The settings a report was made with: backend, input and metric resolution, threshold, cut, region."""
    return {
        "backend": type(pipeline.backend).__name__,
        "input_size": list(pipeline.bundle.input_size),
        "metric_size": list(pipeline.metric_size),
        "threshold": pipeline.threshold,
        "max_p_false_positive": pipeline.max_p_false_positive,
        "meta_classifier": None if pipeline.bundle.meta_classifier is None else pipeline.bundle.meta_classifier.kind,
    }


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as JSON (NaN written as null)."""
    write_json(report, path)
