"""Benchmark of leave-one-out MLP meta classification: all folds stacked vs one nn.Module per fold.

The reference trains a fresh ``nn.Sequential`` per fold (Adam, BCELoss, 50 epochs, a new
``DataLoader(batch_size=128, shuffle=True, drop_last=True)`` each epoch); it needs 394 s for leave-one-out over
663 components on a 2-core machine (shared reference material). This script times that sequential loop on
``--baseline-folds`` folds and extrapolates to all folds, then times the stacked trainer on all folds, in the
same run, and prints the ratio and the AUROC.

    python benchmarks/bench_meta_cv.py [--n 663] [--baseline-folds 8] [--seeds 0 1] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from meta_ood_perception.metrics import FEATURE_NAMES
from meta_ood_training.meta_cv import CVConfig, cross_validate
from meta_ood_training.meta_data import MetaDataset
from meta_ood_training.meta_models import MLPConfig

REFERENCE_LOO_S = 394.0


def synthetic_components(n: int, seed: int = 0) -> MetaDataset:
    """A component table with the paper's shape: 75 correlated metrics, ~25 % false positives."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 8))
    X = latent @ rng.normal(size=(8, 75)) + 0.5 * rng.normal(size=(n, 75))
    logit = latent[:, 0] * 1.5 - latent[:, 1] + 0.5 * latent[:, 2] * latent[:, 3] - 1.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return MetaDataset(X, y, FEATURE_NAMES, rng.integers(0, n // 10, n))


def sequential_fold_seconds(data: MetaDataset, folds: int, epochs: int) -> float:
    """Seconds per fold of the reference-style loop (one nn.Module, optimizer and DataLoader per fold)."""
    z = (data.X - data.X.mean(0)) / (data.X.std(0) + 1e-10)
    X = torch.tensor(z, dtype=torch.float32)
    y = torch.tensor(data.y, dtype=torch.float32)
    start = time.perf_counter()
    for i in range(folds):
        keep = torch.ones(len(X), dtype=torch.bool)
        keep[i] = False
        net = torch.nn.Sequential(
            torch.nn.Linear(75, 75), torch.nn.ReLU(), torch.nn.Linear(75, 75), torch.nn.ReLU(),
            torch.nn.Linear(75, 75), torch.nn.ReLU(), torch.nn.Linear(75, 1), torch.nn.Sigmoid(),
        )  # fmt: skip
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=5e-3)
        loss_fn = torch.nn.BCELoss()
        for _ in range(epochs):
            for xb, yb in DataLoader(TensorDataset(X[keep], y[keep]), batch_size=128, shuffle=True, drop_last=True):
                opt.zero_grad()
                loss_fn(net(xb).squeeze(1), yb).backward()
                opt.step()
        with torch.no_grad():
            net(X[i : i + 1])
    return (time.perf_counter() - start) / folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=663, help="components (leave-one-out folds)")
    parser.add_argument("--baseline-folds", type=int, default=8, help="folds timed for the sequential baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the stacked runs")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = synthetic_components(args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"n={data.n}, false positives {data.y.mean():.2f}")  # fmt: skip
    per_fold = sequential_fold_seconds(data, args.baseline_folds, args.epochs)
    sequential = per_fold * data.n
    print(f"sequential nn.Module loop: {per_fold:.3f} s/fold -> {sequential:.1f} s for {data.n} folds (extrapolated)")
    rows = []
    for seed in args.seeds:
        config = CVConfig("mlp", "loo", standardize="pooled",
                          mlp=MLPConfig(epochs=args.epochs, seed=seed, device=args.device))  # fmt: skip
        result = cross_validate(data, config)
        rows.append({"seed": seed, "wall_s": result.wall_s, "auroc": result.auroc, "auprc": result.auprc})
        print(f"stacked LOO seed {seed}: {result.wall_s:.1f} s, {sequential / result.wall_s:.1f}x the sequential "
              f"loop, {REFERENCE_LOO_S / result.wall_s:.1f}x the reference's 394 s; "
              f"AUROC {result.auroc:.4f} AUPRC {result.auprc:.4f}")  # fmt: skip
    lr = cross_validate(data, CVConfig("lr", "loo", standardize="pooled"))
    print(f"logistic LOO: {lr.wall_s:.1f} s, AUROC {lr.auroc:.4f} AUPRC {lr.auprc:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"sequential_s": sequential, "per_fold_s": per_fold, "stacked": rows,
                                         "lr": {"wall_s": lr.wall_s, "auroc": lr.auroc}}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
