"""Bootstrap intervals for the results report: pixel metrics over frames and training seeds, component-level meta
classification over frames.

* Pixel metrics come from per-frame score histograms (:data:`SCORE_BINS` bins on [0, 1]); a replicate resamples
  frames (and, for several training seeds, the seeds) with replacement and recomputes AUROC, AUPRC and FPR95 from
  the summed histograms, vectorized over models.
* Component metrics: a replicate resamples frames (groups) with replacement and weights each component by how
  often its frame was drawn.

"Reproduced" is claimed only when the 95 % interval of a difference excludes zero (:func:`verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

SCORE_BINS = 1000
FloatArray = npt.NDArray[np.float64]


def score_histograms(score: npt.NDArray[np.floating[Any]], labels: npt.NDArray[np.integer[Any]]
                     ) -> npt.NDArray[np.int64]:  # fmt: skip
    """(2, SCORE_BINS) int64 counts of in-distribution (label 0) and OoD (label 1) pixels per score bin."""
    bins = np.minimum((np.asarray(score, np.float64) * SCORE_BINS).astype(np.int64), SCORE_BINS - 1)
    return np.stack([np.bincount(bins[labels == k], minlength=SCORE_BINS) for k in (0, 1)]).astype(np.int64)


def histogram_metrics(hist: npt.NDArray[np.integer[Any]]) -> dict[str, FloatArray]:
    """AUROC, AUPRC (average precision) and FPR95 from (..., 2, bins) histograms (in, out), vectorized over the
    leading axes; each is an array of the leading shape (NaN where a class is empty)."""
    counts = np.asarray(hist, np.float64)[..., ::-1]  # descending score
    fp = np.cumsum(counts[..., 0, :], axis=-1)
    tp = np.cumsum(counts[..., 1, :], axis=-1)
    n_in, n_out = fp[..., -1:], tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        fpr = np.concatenate([np.zeros_like(n_in), fp / n_in], axis=-1)
        tpr = np.concatenate([np.zeros_like(n_out), tp / n_out], axis=-1)
        auroc = np.sum(np.diff(fpr, axis=-1) * (tpr[..., 1:] + tpr[..., :-1]) / 2, axis=-1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 1.0)
        auprc = np.sum(np.diff(tpr, axis=-1) * precision, axis=-1)
    first = np.argmax(tpr >= 0.95, axis=-1)
    fpr95 = np.take_along_axis(fpr, first[..., None], axis=-1)[..., 0]
    bad = (n_in[..., 0] == 0) | (n_out[..., 0] == 0)
    return {k: np.where(bad, np.nan, v) for k, v in (("auroc", auroc), ("auprc", auprc), ("fpr95", fpr95))}


def pixel_bootstrap(hists: npt.NDArray[np.int64], n_boot: int, rng: np.random.Generator) -> dict[str, FloatArray]:
    """Replicates of the seed-averaged pixel metrics of V models.

    Args:
        hists: (V, S, F, 2, bins) per-frame histograms of V models, S training seeds, F frames (the same frames
            for every model and seed).
        n_boot: replicates.

    Returns:
        ``{"auroc" | "auprc" | "fpr95": (n_boot, V)}``: per replicate, S seeds drawn with replacement and F frames
        drawn with replacement, the metric of each drawn seed on the drawn frames, averaged over the drawn seeds.
    """
    _, s, f = hists.shape[:3]
    out: dict[str, list[FloatArray]] = {"auroc": [], "auprc": [], "fpr95": []}
    flat = hists.reshape(hists.shape[0], s, f, -1).astype(np.float64)
    for _ in range(n_boot):
        frame_w = np.bincount(rng.integers(0, f, f), minlength=f).astype(np.float64)
        seeds = rng.integers(0, s, s)
        summed = np.einsum("vsfb,f->vsb", flat[:, seeds], frame_w).reshape(hists.shape[0], s, *hists.shape[3:])
        metrics = histogram_metrics(summed)
        for k in out:
            out[k].append(np.nanmean(metrics[k], axis=1))
    return {k: np.stack(v) for k, v in out.items()}


def component_bootstrap(
    y: npt.NDArray[np.int64],
    probas: dict[str, FloatArray],
    groups: npt.NDArray[np.int64],
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, FloatArray]]:
    """Replicates of AUROC and AUPRC (positive = false positive) of several classifiers' P(false positive) on the
    same components, frames (``groups``) resampled with replacement: ``{name: {"auroc", "auprc": (n_boot,)}}``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    ids, inverse = np.unique(groups, return_inverse=True)
    out: dict[str, dict[str, list[float]]] = {n: {"auroc": [], "auprc": []} for n in probas}
    for _ in range(n_boot):
        weight = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))[inverse].astype(np.float64)
        keep = weight > 0
        both = len(np.unique(y[keep])) == 2
        for name, p in probas.items():
            if both:
                out[name]["auroc"].append(float(roc_auc_score(y[keep], p[keep], sample_weight=weight[keep])))
                out[name]["auprc"].append(float(average_precision_score(y[keep], p[keep], sample_weight=weight[keep])))
            else:
                out[name]["auroc"].append(np.nan)
                out[name]["auprc"].append(np.nan)
    return {n: {k: np.asarray(v) for k, v in d.items()} for n, d in out.items()}


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap 95 % interval."""

    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of zero."""
        return bool(self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float]:
        """``{"value", "low", "high"}``."""
        return {"value": self.value, "low": self.low, "high": self.high}


def interval(value: float, replicates: FloatArray) -> Interval:
    """``value`` with the 2.5 / 97.5 percentiles of its (finite) bootstrap replicates."""
    finite = replicates[np.isfinite(replicates)]
    if not len(finite):
        return Interval(value, float("nan"), float("nan"))
    low, high = np.percentile(finite, [2.5, 97.5])
    return Interval(float(value), float(low), float(high))


def verdict(difference: Interval, higher_is_better: bool = True) -> str:
    """``reproduced`` when the interval of (claimed better − claimed worse) excludes zero in the claimed direction,
    ``reversed`` when it excludes zero the other way, else ``not separated``."""
    if not difference.excludes_zero():
        return "not separated"
    better = difference.low > 0 if higher_is_better else difference.high < 0
    return "reproduced" if better else "reversed"
