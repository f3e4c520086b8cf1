"""Figures of meta classification: ROC and precision-recall curves (paper Fig. 1), LARS path (Fig. 3) and
incremental evaluation over the top-N metrics (Fig. 4). Written as PNG files with matplotlib (Agg).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt


def plot_roc_pr(
    y: npt.NDArray[np.int64], curves: dict[str, npt.NDArray[np.float64]], out_dir: str | Path
) -> list[Path]:
    """ROC and PR curves of one or more classifiers' P(false positive); returns the two PNG paths.

    The PR plot's random-guessing line is the positive (false-positive) ratio.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4.5))
    fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4.5))
    for name, proba in curves.items():
        fpr, tpr, _ = roc_curve(y, proba)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, proba):.3f})")
        precision, recall, _ = precision_recall_curve(y, proba)
        ax_pr.plot(recall, precision, label=f"{name} (AUPRC {average_precision_score(y, proba):.3f})")
    ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8, label="random guessing")
    ratio = float(np.mean(y))
    ax_pr.axhline(ratio, color="k", ls="--", lw=0.8, label=f"random guessing ({ratio:.2f})")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC: false-positive components")
    ax_pr.set(xlabel="recall", ylabel="precision", title="PR: false-positive components", ylim=(0, 1.02))
    paths = [out / "roc.png", out / "pr.png"]
    for fig, ax, path in ((fig_roc, ax_roc, paths[0]), (fig_pr, ax_pr, paths[1])):
        ax.legend(loc="lower right" if ax is ax_roc else "lower left", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return paths


def plot_lars_path(
    coefs: npt.NDArray[np.float64], names: Sequence[str], order: Sequence[int], path: str | Path, first: int = 10
) -> Path:
    """Coefficient paths of the ``first`` metrics to enter the LARS model (``coefs``: (F, steps))."""
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(coefs.shape[1])
    for j in order[:first]:
        ax.plot(steps, coefs[j], label=names[j])
    ax.set(xlabel="LARS step", ylabel="coefficient", title=f"LARS path of the first {first} metrics")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_incremental(table: list[dict[str, Any]], path: str | Path) -> Path:
    """AUROC and AUPRC of each classifier over the number N of top LARS metrics (paper Fig. 4)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, ax in zip(("auroc", "auprc"), axes, strict=True):
        for clf in sorted({str(row["classifier"]) for row in table}):
            rows = [r for r in table if r["classifier"] == clf]
            ax.plot([r["n_metrics"] for r in rows], [r[key] for r in rows], marker=".", label=clf)
        ax.set(xlabel="number of metrics (LARS order)", ylabel=key.upper())
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
