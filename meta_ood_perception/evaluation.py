"""Pixel-level OoD detection metrics: AUROC, FPR at 95 % TPR, AUPRC (positive class = OoD pixels).

Two modes:

* ``exact``: over every labelled pixel, streamed frame by frame. The accumulator keeps one count per distinct score
  value (not one entry per pixel), so memory is bounded by the number of distinct float32 scores. AUROC and AUPRC
  (average precision, as scikit-learn defines it) equal scikit-learn on the concatenated pixels; FPR95 is the FPR
  at the first threshold (from high to low scores) where the TPR reaches 0.95.
* ``reference``: the research code's numbers. It histograms the scores of in- and out-of-distribution pixels into
  100 bins on [0, 1] (values outside are dropped), gives every pixel of bin i the score i/100, rescales the two
  histograms (truncating to integers) to 1e5 samples each for the ROC and to 1e7 samples in the true in/out ratio
  for the precision-recall curve, and takes FPR95 as the FPR at the ROC point whose TPR is *closest* to 0.95.
  Because of the 100 bins that point can lie far off (FPR95 can jump to 1.0 when one bin holds most OoD pixels).
  Here the resampled histograms enter scikit-learn as sample weights instead of expanded lists (same curves).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import ConfigError, InputError

Mode = Literal["exact", "reference"]
REFERENCE_BINS = 100


class PixelMetricsAccumulator:
    """Streaming pixel metrics: ``update(scores, labels)`` per frame, then ``compute(mode)``."""

    def __init__(
        self, *, ood_label: int = 1, in_label: int = 0, void_label: int = 255, quantum: float | None = None
    ) -> None:
        """``quantum``: None keeps every distinct score (exact; memory grows with the distinct values seen); a value
        such as 1e-5 counts scores in [0, 1] in bins of that width (fixed memory, for long replays; the curves
        are then exact for the binned scores)."""
        if len({ood_label, in_label, void_label}) != 3:
            raise ConfigError(f"ood_label, in_label and void_label must differ: {ood_label}, {in_label}, {void_label}")
        if quantum is not None and not 0 < quantum <= 0.01:
            raise ConfigError(f"quantum must lie in (0, 0.01], got {quantum}")
        self.ood_label, self.in_label, self.void_label = ood_label, in_label, void_label
        self.quantum = quantum
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self._values = np.zeros(0, dtype=np.float32)
        self._counts = np.zeros((0, 2), dtype=np.int64)  # columns: in, out
        self._pending: list[tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.int64]]] = []
        self._pending_size = 0
        self._hist = np.zeros((2, REFERENCE_BINS), dtype=np.int64)
        bins = 0 if self.quantum is None else round(1.0 / self.quantum) + 1
        self._binned = np.zeros((bins, 2), dtype=np.int64)

    def update(self, scores: npt.ArrayLike, labels: npt.ArrayLike) -> None:
        """Add one frame: (H, W) float scores (higher = more anomalous) and (H, W) integer labels.

        Scores are kept at their own precision (float32 scores as float32 keys): nothing is rounded.

        Raises:
            InputError: shapes that differ, non-finite scores on labelled pixels.
        """
        s = np.asarray(scores)
        lab = np.asarray(labels)
        if s.shape != lab.shape:
            raise InputError(f"scores {s.shape} and labels {lab.shape} must have the same shape")
        if not np.issubdtype(s.dtype, np.floating):
            s = s.astype(np.float64)
        groups = [s[lab == label].ravel() for label in (self.in_label, self.ood_label)]
        for v in groups:  # validate the whole frame before anything is counted
            if v.size and not np.isfinite(v).all():
                raise InputError(f"scores hold NaN or inf on {int((~np.isfinite(v)).sum())} labelled pixel(s)")
            if self.quantum is not None and v.size and (v.min() < 0 or v.max() > 1):
                raise InputError(f"binned pixel metrics need scores in [0, 1], got [{v.min():g}, {v.max():g}]")
        for column, v in enumerate(groups):
            self._hist[column] += np.histogram(v, bins=REFERENCE_BINS, range=(0.0, 1.0))[0]
            if self.quantum is not None:
                index = np.clip(np.rint(v / self.quantum), 0, len(self._binned) - 1).astype(np.int64)
                self._binned[:, column] += np.bincount(index, minlength=len(self._binned))
                continue
            uniq, cnt = np.unique(v, return_counts=True)
            counts = np.zeros((len(uniq), 2), dtype=np.int64)
            counts[:, column] = cnt
            self._pending.append((uniq, counts))
            self._pending_size += len(uniq)
        # Merge in batches: re-sorting everything after every frame would cost O(total) per frame.
        if self._pending_size > max(4_000_000, len(self._values)):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        values = np.concatenate([self._values, *(v for v, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._values, inverse = np.unique(values, return_inverse=True)
        merged = np.zeros((len(self._values), 2), dtype=np.int64)
        np.add.at(merged, inverse.reshape(-1), counts)
        self._counts = merged
        self._pending, self._pending_size = [], 0

    def compute(self, mode: Mode = "exact") -> dict[str, float]:
        """{"auroc", "fpr95", "auprc"} over all frames so far.

        Raises:
            InputError: no in-distribution or no OoD pixel seen.
            ConfigError: an unknown mode.
        """
        if self.quantum is not None:
            used = np.flatnonzero(self._binned.sum(axis=1))
            self._values = (used * self.quantum).astype(np.float64)
            self._counts = self._binned[used]
        self._merge()
        n_in, n_out = self._counts.sum(axis=0) if len(self._counts) else (0, 0)
        if n_in == 0 or n_out == 0:
            raise InputError(f"pixel metrics need both classes: {n_in} in-distribution and {n_out} OoD pixels")
        if mode == "exact":
            return _exact(self._counts[::-1])
        if mode == "reference":
            return _reference(self._hist)
        raise ConfigError(f"mode must be 'exact' or 'reference', got {mode!r}")


def pixel_metrics(
    scores: npt.ArrayLike | Iterable[npt.ArrayLike],
    labels: npt.ArrayLike | Iterable[npt.ArrayLike],
    *,
    ood_label: int = 1,
    in_label: int = 0,
    void_label: int = 255,
    mode: Mode = "exact",
) -> dict[str, float]:
    """AUROC, FPR95 and AUPRC of OoD (``ood_label``) against in-distribution (``in_label``) pixels.

    Args:
        scores: an array of anomaly scores, or an iterable of per-frame arrays (streamed).
        labels: the matching label array(s); ``void_label`` and any other value are ignored.
        ood_label, in_label, void_label: label values.
        mode: ``exact`` or ``reference`` (the research code's 100-bin numbers, see the module docstring).

    Returns:
        {"auroc": float, "fpr95": float, "auprc": float}.

    Raises:
        InputError: per-frame scores with labels that are not per frame; what
            :meth:`PixelMetricsAccumulator.update` / :meth:`~PixelMetricsAccumulator.compute` refuse.
    """
    acc = PixelMetricsAccumulator(ood_label=ood_label, in_label=in_label, void_label=void_label)
    if isinstance(scores, np.ndarray) or not isinstance(scores, Iterable):
        acc.update(np.asarray(scores), np.asarray(labels))
    elif not isinstance(labels, Iterable):
        raise InputError("pixel_metrics: per-frame scores need per-frame labels (an iterable of arrays)")
    else:
        for frame_scores, frame_labels in zip(scores, labels, strict=True):
            acc.update(frame_scores, frame_labels)
    return acc.compute(mode)


def _exact(counts_desc: npt.NDArray[np.int64]) -> dict[str, float]:
    """Metrics from (distinct score, [n_in, n_out]) counts sorted by descending score."""
    fp = np.cumsum(counts_desc[:, 0]).astype(np.float64)
    tp = np.cumsum(counts_desc[:, 1]).astype(np.float64)
    fpr = np.concatenate([[0.0], fp / fp[-1]])
    tpr = np.concatenate([[0.0], tp / tp[-1]])
    auroc = float(np.trapezoid(tpr, fpr))
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    auprc = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    fpr95 = float(fpr[np.argmax(tpr >= 0.95)])
    return {"auroc": auroc, "fpr95": fpr95, "auprc": auprc}


def _resampled(hist: npt.NDArray[np.int64], size: float) -> npt.NDArray[np.float64]:
    total = hist.sum()
    if total == 0:
        return hist.astype(np.float64)
    scaled: npt.NDArray[np.float64] = (hist / total * size).astype(np.uint32).astype(np.float64)
    return scaled


def _reference(hist: npt.NDArray[np.int64]) -> dict[str, float]:
    from sklearn.metrics import auc, average_precision_score, roc_curve

    bin_scores = np.arange(1, REFERENCE_BINS + 1) / 100.0
    y = np.r_[np.zeros(REFERENCE_BINS), np.ones(REFERENCE_BINS)]
    s = np.r_[bin_scores, bin_scores]
    w_roc = np.r_[_resampled(hist[0], 1e5), _resampled(hist[1], 1e5)]
    keep = w_roc > 0
    fpr, tpr, _ = roc_curve(y[keep], s[keep], sample_weight=w_roc[keep])
    ratio_in = hist[0].sum() / hist.sum()
    w_pr = np.r_[_resampled(hist[0], 1e7 * ratio_in), _resampled(hist[1], 1e7 * (1 - ratio_in))]
    keep = w_pr > 0
    auprc = float(average_precision_score(y[keep], s[keep], sample_weight=w_pr[keep]))
    return {"auroc": float(auc(fpr, tpr)), "fpr95": float(fpr[np.abs(tpr - 0.95).argmin()]), "auprc": auprc}
