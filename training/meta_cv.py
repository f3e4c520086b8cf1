"""Cross-validated meta classification: leave-one-out (the paper) or group k-fold (the honest default).

Standardization ``pooled`` reproduces the research code (statistics over the whole data set, the held-out
component included); ``train`` fits them on each fold's training rows only.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from meta_ood_perception.errors import ConfigError

from .meta_data import MetaDataError, MetaDataset, ObjectOverlaps
from .meta_models import STD_EPS, LogisticConfig, MLPConfig, fit_logistic, standardization, train_stacked_mlps

LOG = logging.getLogger(__name__)
Classifier = Literal["lr", "mlp"]
CVScheme = Literal["loo", "group-kfold"]
Standardize = Literal["train", "pooled"]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CVConfig:
    """How to cross-validate a meta classifier.

    Attributes:
        classifier: ``lr`` (logistic regression, liblinear) or ``mlp`` (the paper's network).
        cv: ``loo`` (one held-out component per fold, the paper's protocol) or ``group-kfold``.
        folds: number of folds for ``group-kfold``.
        standardize: ``train`` (fold's training rows) or ``pooled`` (whole data set, the reference).
        logistic: logistic-regression settings.
        mlp: MLP settings (its ``seed`` also seeds nothing else).
    """

    classifier: Classifier = "lr"
    cv: CVScheme = "group-kfold"
    folds: int = 5
    standardize: Standardize = "train"
    logistic: LogisticConfig = field(default_factory=LogisticConfig)
    mlp: MLPConfig = field(default_factory=MLPConfig)

    def __post_init__(self) -> None:
        if self.classifier not in ("lr", "mlp"):
            raise ConfigError(f"classifier must be 'lr' or 'mlp', got {self.classifier!r}")
        if self.cv not in ("loo", "group-kfold"):
            raise ConfigError(f"cv must be 'loo' or 'group-kfold', got {self.cv!r}")
        if self.standardize not in ("train", "pooled"):
            raise ConfigError(f"standardize must be 'train' or 'pooled', got {self.standardize!r}")
        if self.cv == "group-kfold" and self.folds < 2:
            raise ConfigError(f"group-kfold needs at least 2 folds, got {self.folds}")


@dataclass(frozen=True)
class CVResult:
    """Out-of-fold predictions and their scores (positive class: false-positive component, y = 1)."""

    proba: FloatArray
    y: npt.NDArray[np.int64]
    auroc: float
    auprc: float
    accuracy: float
    n_parameters: int
    wall_s: float
    config: CVConfig
    objects: ObjectOverlaps | None = None
    single_class_folds: int = 0

    def report(self) -> dict[str, Any]:
        """JSON-serializable summary: auroc, auprc, accuracy, n, n_parameters, wall_s, removal counts, config."""
        kept = self.proba < 0.5
        out: dict[str, Any] = {
            "auroc": self.auroc,
            "auprc": self.auprc,
            "accuracy": self.accuracy,
            "n": len(self.y),
            "n_false_positives": int(self.y.sum()),
            "positive_ratio": float(self.y.mean()),
            "n_parameters": self.n_parameters,
            "wall_s": self.wall_s,
            "single_class_folds": self.single_class_folds,
            "removal_at_0.5": {
                "false_positives_before": int(self.y.sum()),
                "false_positives_remaining": int((self.y[kept] == 1).sum()),
                "true_detections_before": int((self.y == 0).sum()),
                "true_detections_lost": int((self.y[~kept] == 0).sum()),
            },
            "config": asdict(self.config),
        }
        if self.objects is not None:
            removal = out["removal_at_0.5"]
            removal["gt_objects"] = self.objects.n_objects
            removal["false_negatives_before"] = self.objects.missed(np.ones(len(self.y), dtype=bool))
            removal["false_negatives_after"] = self.objects.missed(kept)
        return out


def splits(data: MetaDataset, config: CVConfig) -> list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]]:
    """(train rows, test rows) per fold.

    Group-kfold on fewer groups than ``config.folds`` (e.g. a LostAndFound tree of a few sequences) uses one fold
    per group, with a one-line warning.

    Raises:
        MetaDataError: group-kfold without groups, or with a single group.
    """
    n = data.n
    if config.cv == "loo":
        every = np.arange(n)
        return [(np.delete(every, i), np.array([i])) for i in range(n)]
    if data.group is None:
        raise MetaDataError("group-kfold needs a 'group' array (frame or sequence id per component)")
    n_groups = len(np.unique(data.group))
    if n_groups < 2:
        raise MetaDataError(f"group-kfold needs at least 2 groups (frames or sequences), got {n_groups}")
    n_folds = config.folds
    if n_groups < n_folds:
        LOG.warning("group-kfold: %d groups for %d folds: using %d folds (one group each)", n_groups, n_folds,
                    n_groups)  # fmt: skip
        n_folds = n_groups
    from sklearn.model_selection import GroupKFold

    folds = GroupKFold(n_splits=n_folds).split(data.X, data.y, data.group)
    return [(train.astype(np.int64), test.astype(np.int64)) for train, test in folds]


def cross_validate(data: MetaDataset, config: CVConfig, *, progress: bool = False) -> CVResult:
    """Cross-validate one meta classifier and score its out-of-fold P(false positive).

    Raises:
        MetaDataError: a single class in y, or unusable groups (see :func:`splits`).
    """
    data.require_both_classes()
    start = time.perf_counter()
    folds = splits(data, config)
    if config.cv == "group-kfold" and len(folds) != config.folds:
        config = replace(config, folds=len(folds))  # the report names the folds used
    means, scales = _fold_standardization(data.X, folds, config.standardize)
    proba = np.empty(data.n)
    degenerate = 0
    if config.classifier == "lr":
        for k, (train, test) in enumerate(tqdm(folds, desc="LR folds", disable=not progress, leave=False)):
            if len(np.unique(data.y[train])) < 2:
                # liblinear cannot fit one class (the research code would stop here): predict the training
                # prior, which is 0 or 1, and count the fold.
                proba[test] = float(data.y[train].mean())
                degenerate += 1
                continue
            z = (data.X - means[k]) / scales[k]
            coef, intercept = fit_logistic(z[train], data.y[train], config.logistic)
            proba[test] = 1.0 / (1.0 + np.exp(-(z[test] @ coef + intercept)))
        n_parameters = data.X.shape[1] + 1
    else:
        proba[:] = _mlp_out_of_fold(data, folds, means, scales, config.mlp, progress)
        n_parameters = config.mlp.n_parameters(data.X.shape[1])
    wall = time.perf_counter() - start
    auroc, auprc, accuracy = scores(data.y, proba)
    if degenerate:
        LOG.warning("%d fold(s) had a single class in their training rows; they predict that class", degenerate)
    return CVResult(proba, data.y, auroc, auprc, accuracy, n_parameters, wall, config, data.objects, degenerate)


def scores(y: npt.NDArray[np.int64], proba: FloatArray) -> tuple[float, float, float]:
    """(AUROC, AUPRC = average precision, accuracy at 0.5) with y = 1 (false positive) as the positive class."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    accuracy = float(((proba >= 0.5).astype(np.int64) == y).mean())
    return float(roc_auc_score(y, proba)), float(average_precision_score(y, proba)), accuracy


def _fold_standardization(
    X: FloatArray, folds: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]], mode: Standardize
) -> tuple[FloatArray, FloatArray]:
    if mode == "pooled":
        mean, scale = standardization(X)
        return np.broadcast_to(mean, (len(folds), X.shape[1])), np.broadcast_to(scale, (len(folds), X.shape[1]))
    if len(folds) == len(X) and all(len(test) == 1 for _, test in folds):
        # Leave-one-out: the training statistics follow from the totals minus the held-out row.
        n = len(X) - 1
        total, total_sq = X.sum(axis=0), (X**2).sum(axis=0)
        order = np.array([test[0] for _, test in folds])
        mean = (total - X[order]) / n
        var = np.maximum((total_sq - X[order] ** 2) / n - mean**2, 0.0)
        return mean, np.sqrt(var) + STD_EPS
    stats = [standardization(X[train]) for train, _ in folds]
    return np.stack([m for m, _ in stats]), np.stack([s for _, s in stats])


#: Folds trained together at most (memory: about 1.5 MB per fold for the paper's network and batch 128).
MAX_STACKED_FOLDS = 1024


def _mlp_out_of_fold(
    data: MetaDataset,
    folds: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
    means: FloatArray,
    scales: FloatArray,
    config: MLPConfig,
    progress: bool,
) -> FloatArray:
    device = torch.device(config.device)
    X = torch.as_tensor(data.X, dtype=torch.float32, device=device)
    y = torch.as_tensor(data.y, dtype=torch.float32, device=device)
    proba = np.empty(data.n)
    for start in range(0, len(folds), MAX_STACKED_FOLDS):
        chunk = folds[start : start + MAX_STACKED_FOLDS]
        mean = torch.as_tensor(
            np.ascontiguousarray(means[start : start + len(chunk)]), dtype=torch.float32, device=device
        )
        scale = torch.as_tensor(
            np.ascontiguousarray(scales[start : start + len(chunk)]), dtype=torch.float32, device=device
        )
        # Each chunk gets its own seed stream so results do not depend on how many chunks came before.
        chunk_config = replace(config, seed=config.seed + start)
        net = train_stacked_mlps(X, y, [train for train, _ in chunk], mean, scale, chunk_config, progress=progress)
        t_max = max(len(test) for _, test in chunk)
        rows = torch.zeros(len(chunk), t_max, dtype=torch.long)
        for k, (_, test) in enumerate(chunk):
            rows[k, : len(test)] = torch.as_tensor(test)
        rows = rows.to(device)
        with torch.no_grad():
            logits = net.logits((X[rows] - mean.unsqueeze(1)) / scale.unsqueeze(1)).double().cpu().numpy()
        for k, (_, test) in enumerate(chunk):
            proba[test] = 1.0 / (1.0 + np.exp(-logits[k, : len(test)]))
    return proba
