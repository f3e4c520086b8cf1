"""Interpretability: LARS ordering of the metrics and the paper's Algorithm 1 (incremental evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from .meta_cv import CVConfig, cross_validate
from .meta_data import MetaDataset
from .meta_models import standardization


@dataclass(frozen=True)
class LarsResult:
    """The order in which metrics enter the LARS model, and the coefficient path (F, steps)."""

    order: list[int]
    names: list[str]
    coefs: npt.NDArray[np.float64]


def lars_order(data: MetaDataset) -> LarsResult:
    """LARS (least-angle regression, scikit-learn ``lars_path``) on the standardized metrics against y.

    Metrics that never enter (e.g. constant columns) follow in their column order.
    """
    from sklearn.linear_model import lars_path

    mean, scale = standardization(data.X)
    z = (data.X - mean) / scale
    _, active, coefs = lars_path(z, data.y.astype(np.float64) - data.y.mean(), method="lar")
    order = [int(j) for j in active]
    order += [j for j in range(data.X.shape[1]) if j not in order]
    return LarsResult(order, [data.names[j] for j in order], np.asarray(coefs, dtype=np.float64))


def incremental_evaluation(
    data: MetaDataset,
    order: list[int],
    config: CVConfig,
    n_values: list[int] | None = None,
    *,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Algorithm 1: for N top metrics in LARS order, cross-validate both classifiers; one row per (N, classifier).

    Each row: ``n_metrics``, ``classifier``, ``auroc``, ``auprc``, ``accuracy``, ``correlation`` (Pearson
    correlation of the two classifiers' out-of-fold outputs at that N, on both rows).
    """
    n_values = n_values or list(range(1, len(order) + 1))
    rows: list[dict[str, Any]] = []
    for n in tqdm(n_values, desc="Algorithm 1", disable=not progress):
        subset = data.subset(order[:n])
        results = {clf: cross_validate(subset, replace(config, classifier=clf)) for clf in ("lr", "mlp")}
        corr = float(np.corrcoef(results["lr"].proba, results["mlp"].proba)[0, 1])
        for clf, res in results.items():
            rows.append(
                {"n_metrics": n, "classifier": clf, "auroc": res.auroc, "auprc": res.auprc, "accuracy": res.accuracy,
                 "correlation": corr}
            )  # fmt: skip
    return rows
