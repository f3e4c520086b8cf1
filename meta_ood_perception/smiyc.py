"""SegmentMeIfYouCan component-level metrics: sIoU per ground-truth component, PPV per predicted component, F1.

Per frame (labels 0 = in-distribution, 1 = anomaly, 255 = void):

1. prediction = score > threshold outside void; ground-truth anomaly = label 1; both split into 8-connected components;
2. size filters as the benchmark: predicted components below ``min_pred_size`` pixels are dropped, ground-truth
   components below ``min_gt_size`` pixels become void (anomaly track: 500 / 100; obstacle track: 50 / 10);
3. everything is counted inside the region of interest (label ≠ 255) only;
4. sIoU of ground-truth component k: |k ∩ P̂(k)| / (|P̂(k)| + |k| − |k ∩ P̂(k)| − |P̂(k) ∩ other ground-truth
   components|), P̂(k) = the predicted components that touch k (the adjusted IoU);
5. PPV of predicted component k̂: |k̂ ∩ K(k̂)| / |k̂|, K(k̂) = the ground-truth components it touches (the paper's
   definition). The benchmark's code counts false positives with the adjusted IoU of k̂ instead (symmetric to 4);
   ``fp_criterion="siou"`` reproduces that;
6. at each τ in 0.25, 0.30, …, 0.75: TP = #{sIoU ≥ τ}, FN = #{sIoU < τ}, FP = #{PPV < τ} summed over frames,
   F1 = 2TP / (2TP + FN + FP); ``mean_F1`` is their mean over τ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ConfigError, InputError

TAUS = tuple(float(t) for t in np.round(np.linspace(0.25, 0.75, 11), 2))
FpCriterion = Literal["ppv", "siou"]


@dataclass(frozen=True)
class FrameSegments:
    """Component scores of one frame: ``siou_gt`` (one per ground-truth component), ``ppv`` and ``siou_pred``
    (one per predicted component), float64 arrays."""

    siou_gt: npt.NDArray[np.float64]
    ppv: npt.NDArray[np.float64]
    siou_pred: npt.NDArray[np.float64]


def _components(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.int32], int]:
    n, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return np.asarray(labels, dtype=np.int32), int(n) - 1


def frame_segments(
    prediction: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    min_pred_size: int = 500,
    min_gt_size: int = 100,
    void_label: int = 255,
    ood_label: int = 1,
) -> FrameSegments:
    """Compute sIoU / PPV of one frame from a boolean (H, W) ``prediction`` and (H, W) integer ``labels``.

    Raises:
        InputError: shapes that differ or a prediction that is not 2-D.
    """
    pred = np.asarray(prediction).astype(bool)
    lab = np.asarray(labels)
    if pred.ndim != 2 or pred.shape != lab.shape:
        raise InputError(f"prediction {pred.shape} and labels {lab.shape} must be the same 2-D shape")
    void = lab == void_label
    pred_labels, n_pred = _components(np.ascontiguousarray(pred & ~void))
    gt_labels, n_gt = _components(np.ascontiguousarray(lab == ood_label))
    pred_size = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    gt_size = np.bincount(gt_labels.ravel(), minlength=n_gt + 1)
    small_pred = pred_size < min_pred_size
    small_pred[0] = False
    small_gt = gt_size < min_gt_size
    small_gt[0] = False
    roi = ~void & ~small_gt[gt_labels]
    p = np.where(small_pred[pred_labels], 0, pred_labels)[roi].astype(np.int64)
    g = gt_labels[roi].astype(np.int64)
    keep_pred = np.flatnonzero(~small_pred[1:] & (np.bincount(p, minlength=n_pred + 1)[1:] > 0)) + 1
    keep_gt = np.flatnonzero(np.bincount(g, minlength=n_gt + 1)[1:] > 0) + 1
    overlap = np.zeros((n_gt + 1, n_pred + 1), dtype=np.int64)  # rows: gt id, cols: pred id (0 = none)
    np.add.at(overlap, (g, p), 1)
    size_p = overlap.sum(axis=0)  # pixels of each predicted component inside the ROI
    size_g = overlap.sum(axis=1)
    touching = overlap[1:, 1:] > 0
    inter = overlap[1:, 1:]
    in_gt_p = inter.sum(axis=0)  # pixels of each predicted component on some ground-truth component
    in_pred_g = inter.sum(axis=1)

    siou_gt = []
    for k in keep_gt:
        seg = touching[k - 1]
        i = inter[k - 1, seg].sum()
        union = size_p[1:][seg].sum() + size_g[k] - i - (in_gt_p[seg] - inter[k - 1, seg]).sum()
        siou_gt.append(i / union if union else 0.0)
    siou_pred, ppv = [], []
    for j in keep_pred:
        seg = touching[:, j - 1]
        i = inter[seg, j - 1].sum()
        union = size_g[1:][seg].sum() + size_p[j] - i - (in_pred_g[seg] - inter[seg, j - 1]).sum()
        siou_pred.append(i / union if union else 0.0)
        ppv.append(i / size_p[j] if size_p[j] else 0.0)
    return FrameSegments(np.asarray(siou_gt, float), np.asarray(ppv, float), np.asarray(siou_pred, float))


@dataclass
class SegmentMetricsAccumulator:
    """Sums TP / FN / FP over frames at every τ and reports F1 (see the module docstring)."""

    fp_criterion: FpCriterion = "ppv"
    taus: tuple[float, ...] = TAUS
    frames: list[FrameSegments] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fp_criterion not in ("ppv", "siou"):
            raise ConfigError(f"fp_criterion must be 'ppv' or 'siou', got {self.fp_criterion!r}")

    def update(self, segments: FrameSegments) -> None:
        """Add one frame's component scores."""
        self.frames.append(segments)

    def compute(self) -> dict[str, Any]:
        """{"sIoU_gt", "PPV", "mean_F1", "F1": {τ: f1}, "tp"/"fn"/"fp": {τ: count}} (NaN where undefined)."""
        siou = np.concatenate([f.siou_gt for f in self.frames]) if self.frames else np.zeros(0)
        ppv = np.concatenate([f.ppv for f in self.frames]) if self.frames else np.zeros(0)
        siou_pred = np.concatenate([f.siou_pred for f in self.frames]) if self.frames else np.zeros(0)
        fp_scores = ppv if self.fp_criterion == "ppv" else siou_pred
        out: dict[str, Any] = {
            "sIoU_gt": float(siou.mean()) if siou.size else float("nan"),
            "PPV": float(ppv.mean()) if ppv.size else float("nan"),
            "tp": {}, "fn": {}, "fp": {}, "F1": {},
        }  # fmt: skip
        f1s = []
        for t in self.taus:
            tp, fn, fp = int((siou >= t).sum()), int((siou < t).sum()), int((fp_scores < t).sum())
            f1 = 2 * tp / (2 * tp + fn + fp) if (2 * tp + fn + fp) else float("nan")
            key = f"{t:.2f}"
            out["tp"][key], out["fn"][key], out["fp"][key], out["F1"][key] = tp, fn, fp, f1
            f1s.append(f1)
        out["mean_F1"] = float(np.mean(f1s))
        return out
