"""``meta-ood evaluate``: a bundle on an OoD test set — pixel metrics, SMIYC component metrics, meta classifier.

Every frame goes through :meth:`AnomalyPipeline.process <meta_ood_perception.pipeline.AnomalyPipeline.process>` of
the bundle with its deployed backend, with the frame's ground truth as target: the network at the bundle's input
size, score and components at its metric resolution, components inside the labelled region (the LostAndFound
protocol; ``region_from="deployed"``: inside the pipeline's own region, the predicted road for ``region="road"``,
what the car sees, the target only labelling them), the bundle's meta classifier and cut. Pixel metrics compare
``FrameResult.score`` with the labels at the frame's resolution; the SMIYC metrics use the kept mask at the frame's
resolution; the component counts (false positives before and after the meta classifier, true detections lost,
ground-truth objects missed) come from the pipeline's component table and decisions.

Every value the report leaves null (JSON ``null``: undefined on these frames, or not applicable to the bundle) has
its reason beside it, under the value's key plus ``_null_reason`` (``"auroc": null, "auroc_null_reason": "..."``);
:func:`write_report` adds ``null_values``, each null's dotted path with its reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from meta_ood_perception.errors import InputError
from meta_ood_perception.evaluation import PixelMetricsAccumulator
from meta_ood_perception.pipeline import AnomalyPipeline, RegionSource
from meta_ood_perception.reports import json_safe, write_json
from meta_ood_perception.smiyc import SegmentMetricsAccumulator, frame_segments

from .meta_cv import scores
from .meta_extract import ComponentCollector, extraction_region

LOG = logging.getLogger(__name__)
#: Suffix of the key beside a null value that says why it is null (``auroc`` → ``auroc_null_reason``).
NULL_REASON = "_null_reason"
#: The reason :func:`null_reasons` gives a null that has none beside it (a gap in this module; tests keep it out).
UNEXPLAINED = "no reason recorded"
#: Why the meta-classifier values of a bundle without one are null.
NO_META_CLASSIFIER = "the bundle has no meta classifier: every component is kept"


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
    region_from: RegionSource = "target",
) -> dict[str, Any]:
    """The report of ``meta-ood evaluate`` (see the module docstring) over the first ``frames`` items;
    ``region_from``: where components may lie (see the module docstring), recorded as ``pipeline.region``.

    Returns ``{"pixel": {auroc, fpr95, auprc}, "components": {sIoU, PPV, mean_F1, F1, counts}, "meta": {auroc,
    auprc, accuracy, n, n_false_positives, note}, "frames": n, "pipeline": {...}}``; a value undefined on these
    frames is None (NaN for the SMIYC figures) with its ``<key>_null_reason`` beside it, e.g. ``meta`` AUROC / AUPRC
    when the components hold one class only or the bundle has no meta classifier (``note`` says it too), pixel
    metrics when the frames hold no labelled anomaly.
    """
    count = len(dataset) if frames is None else min(frames, len(dataset))
    pixel = PixelMetricsAccumulator()
    segments = SegmentMetricsAccumulator()
    collector = ComponentCollector()
    for index in tqdm(range(count), desc="evaluate", disable=not progress):
        image, target = dataset[index]
        pipeline.reset()  # frames of a test set are independent: no brake history across them
        result = pipeline.process(image, target, region_from=region_from)
        assert result.analysis is not None
        pixel.update(result.score, target)
        segments.update(frame_segments(result.mask.astype(bool), target, min_pred_size=min_pred_size,
                                       min_gt_size=min_gt_size))  # fmt: skip
        collector.add(result.analysis, index if groups is None else int(groups[index]))
    return {
        "pixel": _pixel_report(pixel),
        "components": {**_segment_report(segments, min_pred_size, min_gt_size), **component_counts(collector)},
        "meta": meta_report(collector, pipeline, plots_dir),
        "frames": count,
        "pipeline": {**pipeline_settings(pipeline), "region": extraction_region(pipeline, region_from)},
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


def _pixel_report(pixel: PixelMetricsAccumulator) -> dict[str, Any]:
    """AUROC, FPR95 and AUPRC of the pixels; None with the reason when the frames lack one of the two classes."""
    try:
        return dict(pixel.compute("exact"))
    except InputError as err:  # compute's only InputError: no in-distribution or no OoD pixel
        report: dict[str, Any] = {"auroc": None, "fpr95": None, "auprc": None}
        for key in list(report):
            explain_null(report, key, f"undefined on these frames: {err}")
        return report


def _segment_report(segments: SegmentMetricsAccumulator, min_pred_size: int, min_gt_size: int) -> dict[str, Any]:
    """SMIYC sIoU, PPV and F1 (per sIoU threshold τ, and their mean), each NaN one with its reason."""
    seg = segments.compute()
    report = {"sIoU": seg["sIoU_gt"], "PPV": seg["PPV"], "mean_F1": seg["mean_F1"], "F1": seg["F1"]}
    explain_null(report, "sIoU", f"no ground-truth anomaly segment of at least {min_gt_size} px in these frames")
    explain_null(report, "PPV", f"no predicted component of at least {min_pred_size} px in these frames")
    explain_null(report, "F1", f"F1 = 2TP / (2TP + FN + FP) is 0 / 0 at an sIoU threshold where there is no "
                 f"ground-truth segment (of at least {min_gt_size} px) and no false-positive component")  # fmt: skip
    explain_null(report, "mean_F1", "the mean over the sIoU thresholds of F1, which is null at some of them")
    return report


def explain_null(section: dict[str, Any], key: str, reason: str) -> None:
    """Put ``reason`` beside ``section[key]`` (as ``<key>_null_reason``) when that value is or holds a null (None,
    NaN or inf); a finite value gets no reason."""
    if _has_null(section.get(key)):
        section[f"{key}{NULL_REASON}"] = reason


def _has_null(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_has_null(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_null(v) for v in value)
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def null_reasons(report: Mapping[str, Any]) -> dict[str, str]:
    """Dotted path → reason of every null value of ``report`` (None, NaN or inf: JSON null). The reason is the
    nearest ``<key>_null_reason`` beside the value or beside a section holding it, else :data:`UNEXPLAINED`."""
    found: dict[str, str] = {}

    def walk(value: Any, path: str, reason: str | None) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not str(key).endswith(NULL_REASON):
                    walk(item, f"{path}.{key}" if path else str(key), value.get(f"{key}{NULL_REASON}", reason))
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{path}[{i}]", reason)
        elif _has_null(value):
            found[path] = reason or UNEXPLAINED

    walk(report, "", None)
    return found


def in_sample_null_reason(pipeline: AnomalyPipeline) -> str:
    """Why ``meta.in_sample`` is null when :func:`in_sample` finds no overlap for ``pipeline``'s bundle."""
    if pipeline.bundle.meta_classifier is None:
        return NO_META_CLASSIFIER
    if not pipeline.bundle.meta_training:
        return "the bundle does not record the frames its meta classifier was trained on: overlap unknown"
    return "no overlap: none of the test frames was used to train the meta classifier or choose its cut"


def component_counts(collector: ComponentCollector) -> dict[str, Any]:
    """Components before / after the meta classifier: false positives, true detections kept and lost, and
    ground-truth objects no (kept) component overlaps."""
    data, kept = collector.dataset(), collector.kept
    y = data.y
    assert data.objects is not None
    n_true = int((y == 0).sum())
    lost = int(((y == 0) & ~kept).sum())
    fp_before, fp_after = int(y.sum()), int(y[kept].sum())
    counts: dict[str, Any] = {
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
    explain_null(counts, "false_positives_removed_fraction", "no false-positive component to remove (0 / 0)")
    explain_null(counts, "true_detections_lost_fraction", "no true detection among the components (0 / 0)")
    return counts


def meta_report(
    collector: ComponentCollector, pipeline: AnomalyPipeline, plots_dir: str | Path | None = None
) -> dict[str, Any]:
    """AUROC / AUPRC of the pipeline's P(false positive) against the components' targets, and the accuracy of its
    keep/remove decisions at the pipeline's cut (each None with its reason where undefined; ``note`` repeats the
    AUROC / AUPRC one)."""
    data, proba = collector.dataset(), collector.p_false_positive
    meta: dict[str, Any] = {"n": data.n, "n_false_positives": int(data.y.sum()), "auroc": None, "auprc": None,
                            "accuracy": None, "max_p_false_positive": pipeline.max_p_false_positive}  # fmt: skip
    why: str | None = None
    if pipeline.bundle.meta_classifier is None:
        why = NO_META_CLASSIFIER
    elif data.n == 0:
        why = "no component in these frames: nothing to classify"
    else:
        meta["accuracy"] = float(((~collector.kept).astype(np.int64) == data.y).mean())  # at the pipeline's cut
        if len(np.unique(data.y)) < 2:
            kind = "false positives (no true detection)" if data.y[0] else "true detections (no false positive)"
            why = f"AUROC / AUPRC need both classes; all {data.n} components are {kind}"
    if why is not None:
        meta["note"] = why
        for key in ("auroc", "auprc", "accuracy"):
            explain_null(meta, key, why)
    else:
        meta["auroc"], meta["auprc"], _ = scores(data.y, proba)
        if plots_dir is not None:
            from .meta_report import plot_roc_pr

            meta["plots"] = [str(p) for p in plot_roc_pr(data.y, {"meta classifier": proba}, plots_dir)]
    return meta


def pipeline_settings(pipeline: AnomalyPipeline) -> dict[str, Any]:
    """The settings a report was made with: backend, input and metric resolution, threshold, cut, region."""
    settings = {
        "backend": type(pipeline.backend).__name__,
        "input_size": list(pipeline.bundle.input_size),
        "metric_size": list(pipeline.metric_size),
        "threshold": pipeline.threshold,
        "max_p_false_positive": pipeline.max_p_false_positive,
        "meta_classifier": None if pipeline.bundle.meta_classifier is None else pipeline.bundle.meta_classifier.kind,
    }
    explain_null(settings, "meta_classifier", NO_META_CLASSIFIER)
    return settings


def write_report(report: dict[str, Any], path: str | Path) -> None:
    """Write the report as JSON (NaN written as null), each null's reason right after it, and ``null_values``:
    :func:`null_reasons` of it."""
    write_json({**_reasons_beside(report), "null_values": null_reasons(json_safe(report))}, path)


def _reasons_beside(value: Any) -> Any:
    """``value`` with every ``<key>_null_reason`` moved to right after ``<key>`` (for a reader of the JSON)."""
    if not isinstance(value, dict):
        return value
    ordered: dict[str, Any] = {}
    for key, item in value.items():
        if not str(key).endswith(NULL_REASON):
            ordered[key] = _reasons_beside(item)
            if f"{key}{NULL_REASON}" in value:
                ordered[f"{key}{NULL_REASON}"] = value[f"{key}{NULL_REASON}"]
    ordered.update({k: v for k, v in value.items() if k not in ordered})  # a reason whose value is gone stays
    return ordered
