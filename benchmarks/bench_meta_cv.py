"""Benchmark of leave-one-out MLP meta classification: all folds stacked vs one nn.Module per fold, and the GEMM bound.

The reference trains a fresh ``nn.Sequential`` per fold (Adam, BCELoss, 50 epochs, a new
``DataLoader(batch_size=128, shuffle=True, drop_last=True)`` each epoch); it needs 394 s for leave-one-out over
663 components on a 2-core machine (shared reference material). This script, in one run:

1. times that sequential loop on ``--baseline-folds`` folds and extrapolates to all folds;
2. counts the floating-point operations of the batched products the stacked trainer performs for the whole
   protocol and measures this machine's rate for them (the trainer's three kinds of batched product at its
   shapes, and a large square ``torch.mm`` for the peak), per precision → the least time the products alone need;
3. times the stacked trainer on all folds per precision and seed, with the AUROC;
4. logistic leave-one-out for comparison.

The load average is recorded beside every timing (other processes share the cores). On a shared machine run it
with ``OMP_WAIT_POLICY=PASSIVE``: with OpenMP's default active waiting, two threads run several times slower than one
whenever another process holds a core (docs/PERFORMANCE.md); on an idle machine both policies measure the same.

    python benchmarks/bench_meta_cv.py [--n 663] [--baseline-folds 8] [--seeds 0 1] [--precisions float32 bfloat16]
                                       [--threads N] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from meta_ood_perception.metrics import FEATURE_NAMES
from meta_ood_training.meta_cv import CVConfig, cross_validate
from meta_ood_training.meta_data import MetaDataset
from meta_ood_training.meta_models import DTYPES, PADS, MLPConfig, layer_shapes

REFERENCE_LOO_S = 394.0
TARGET_SPEEDUP = 20.0
#: Side of the square matrix product that measures the peak rate.
PEAK_SIZE = 2048


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


def protocol_flops(n_folds: int, n_train: int, n_features: int, config: MLPConfig) -> dict[str, Any]:
    """Floating-point operations (multiply and add counted apart) of the stacked trainer's batched products.

    Per step and fold, for every layer of (in, out) shape (padded as for ``config.precision``): the forward product
    (B×in)·(in×out) and the weight gradient (in×B)·(B×out); for every layer but the first the input gradient
    (B×out)·(out×in). Steps per fold: ``epochs`` × batches per epoch (``drop_last``: ⌊n_train / B⌋).
    """
    batch = config.batch_size
    batches = n_train // batch if config.drop_last and n_train >= batch else -(-n_train // batch)
    steps = config.epochs * max(batches, 1)
    shapes = layer_shapes((n_features, *config.hidden, 1), PADS[config.precision])
    per_step = {
        "forward": sum(2 * batch * i * o for i, o in shapes),
        "weight_grad": sum(2 * batch * i * o for i, o in shapes),
        "input_grad": sum(2 * batch * i * o for i, o in shapes[1:]),
    }
    return {"steps_per_fold": steps, "layer_shapes": shapes, "per_step_per_fold": per_step,
            "total": {kind: flops * steps * n_folds for kind, flops in per_step.items()}}  # fmt: skip


def best_rate(fn: Callable[[], Any], flops: float, repeats: int) -> tuple[float, float]:
    """(best, median) GFLOP/s of ``fn`` doing ``flops`` operations, over ``repeats`` calls after two warm-ups."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return flops / min(times) / 1e9, flops / statistics.median(times) / 1e9


def gemm_rates(n_models: int, batch: int, width: int, dtype: torch.dtype, repeats: int = 10) -> dict[str, Any]:
    """This machine's rate for the trainer's three kinds of batched product at a hidden layer's padded shape
    (n_models × (B×width)·(width×width), in the trainer's memory layouts) and for a square PEAK_SIZE product."""
    h = torch.randn(n_models, batch, width).to(dtype)
    w = torch.randn(n_models, width, width).to(dtype)
    g = torch.randn(n_models, batch, width).to(dtype)
    out_b, out_w = torch.empty_like(h), torch.empty_like(w)
    flops = 2.0 * n_models * batch * width * width
    a, b = torch.randn(PEAK_SIZE, PEAK_SIZE).to(dtype), torch.randn(PEAK_SIZE, PEAK_SIZE).to(dtype)
    c = torch.empty_like(a)
    cases = {
        "forward": lambda: torch.bmm(h, w, out=out_b),
        "weight_grad": lambda: torch.bmm(h.transpose(1, 2), g, out=out_w),
        "input_grad": lambda: torch.bmm(g, w.transpose(1, 2), out=out_b),
    }
    rates: dict[str, Any] = {"load": os.getloadavg()[0]}
    for kind, fn in cases.items():
        rates[kind] = best_rate(fn, flops, repeats)
    rates["square_mm"] = best_rate(lambda: torch.mm(a, b, out=c), 2.0 * PEAK_SIZE**3, max(repeats // 2, 3))
    return rates


def gemm_bound(flops: dict[str, Any], rates: dict[str, Any]) -> dict[str, float]:
    """Least seconds the products need: each kind at its best measured rate, and all at the square product's."""
    total = flops["total"]
    return {
        "at_product_rates_s": sum(total[kind] / (rates[kind][0] * 1e9) for kind in total),
        "at_peak_s": sum(total.values()) / (rates["square_mm"][0] * 1e9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=663, help="components (leave-one-out folds)")
    parser.add_argument("--baseline-folds", type=int, default=8, help="folds timed for the sequential baseline")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds of the stacked runs")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"], choices=sorted(DTYPES))
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = synthetic_components(args.n)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads (OMP_WAIT_POLICY "
          f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}), device {args.device}; n={data.n}, false positives "
          f"{data.y.mean():.2f}; load {os.getloadavg()[0]:.1f}")  # fmt: skip
    per_fold = sequential_fold_seconds(data, args.baseline_folds, args.epochs) if args.baseline_folds else float("nan")
    sequential = per_fold * data.n
    print(f"sequential nn.Module loop: {per_fold:.3f} s/fold -> {sequential:.1f} s for {data.n} folds (extrapolated)")
    rows, bounds = [], {}
    for precision in args.precisions:
        dtype = DTYPES[precision]
        flops = protocol_flops(data.n, data.n - 1, data.X.shape[1], MLPConfig(epochs=args.epochs, precision=precision))
        width = flops["layer_shapes"][1][0]
        print(f"{precision} products: {flops['steps_per_fold']} steps per fold, layer shapes "
              f"{flops['layer_shapes']}, {sum(flops['total'].values()) / 1e12:.3f} TFLOP in all")  # fmt: skip
        rates = [gemm_rates(data.n, 128, width, dtype)] if args.device == "cpu" else []
        for seed in args.seeds:
            mlp = MLPConfig(epochs=args.epochs, seed=seed, device=args.device, precision=precision)
            config = CVConfig("mlp", "loo", standardize="pooled", mlp=mlp)
            load = os.getloadavg()[0]
            result = cross_validate(data, config)
            rows.append({"precision": precision, "seed": seed, "wall_s": result.wall_s, "auroc": result.auroc,
                         "auprc": result.auprc, "load_before": load, "load_after": os.getloadavg()[0]})  # fmt: skip
            speedup = REFERENCE_LOO_S / result.wall_s
            print(
                f"stacked LOO {precision} seed {seed}: {result.wall_s:.1f} s, {sequential / result.wall_s:.1f}x the "
                f"sequential loop, {speedup:.1f}x the reference's 394 s; AUROC "
                f"{result.auroc:.4f} AUPRC {result.auprc:.4f} (load {load:.1f} -> {rows[-1]['load_after']:.1f})"
            )
        if args.device == "cpu":
            rates.append(gemm_rates(data.n, 128, width, dtype))
            bound = [gemm_bound(flops, r) for r in rates]
            bounds[precision] = {"flops": flops, "rates_gflops_best_median": rates, "bound_s": bound}
            for r, b in zip(rates, bound, strict=True):
                print(f"  {precision} products (GFLOP/s best/median): "
                      + ", ".join(f"{k} {r[k][0]:.0f}/{r[k][1]:.0f}" for k in ("forward", "weight_grad", "input_grad",
                                                                               "square_mm"))
                      + f" (load {r['load']:.1f}) -> least time {b['at_product_rates_s']:.1f} s at these rates, "
                      f"{b['at_peak_s']:.1f} s at the square product's")  # fmt: skip
    print(f"target: >= {TARGET_SPEEDUP:.0f}x the reference = <= {REFERENCE_LOO_S / TARGET_SPEEDUP:.1f} s")
    lr = cross_validate(data, CVConfig("lr", "loo", standardize="pooled"))
    print(f"logistic LOO: {lr.wall_s:.1f} s, AUROC {lr.auroc:.4f} AUPRC {lr.auprc:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"sequential_s": sequential, "per_fold_s": per_fold, "threads":
                                         torch.get_num_threads(), "gemm": bounds, "stacked": rows,
                                         "lr": {"wall_s": lr.wall_s, "auroc": lr.auroc}}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
