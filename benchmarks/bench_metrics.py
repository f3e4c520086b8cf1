"""Benchmark of the runtime core: anomaly score, OoD components and the 75 component metrics.

Frames: synthetic 19-class softmax maps at 512×1024 and 1024×2048 with ~20 and ~150 OoD components, and a busy
1024×2048 frame (issue 15) with ≥ 150 components covering 12.5 % of the pixels (``--busy-fraction``). The
component metrics are timed without and with ground truth (the OoD ground truth: the predicted components of
the left half, grown by 2 px, so that part of it lies outside the prediction and touches it).
Every stage is timed (median of ``--repeats`` runs after a warm-up that also compiles the kernels) and
compared with one ``np.add.reduce(probs, axis=0)`` pass over the same tensor, measured in the same run.

    python benchmarks/bench_metrics.py [--repeats 15] [--busy-fraction 0.125] [--only-busy] [--device cuda]
                                       [--json out.json]

The research code needs 1.3–1.6 s per 512×1024 and 5.3–8.2 s per 1024×2048 frame for the component
metrics on a 2-core machine (shared reference material); those figures are printed for comparison only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_probs import synthetic_probs
from timing import median_ms

from meta_ood_perception._kernels import worker_count
from meta_ood_perception.components import label_components
from meta_ood_perception.metrics import component_metrics
from meta_ood_perception.scores import anomaly_score, heatmaps

LOG = logging.getLogger("bench_metrics")
RESEARCH_CODE_S = {(512, 1024): (1.3, 1.6), (1024, 2048): (5.3, 8.2)}
#: (height, width, blobs, OoD pixel fraction or None for the blobs' natural size)
CASES: list[tuple[int, int, int, float | None]] = [
    (512, 1024, 20, None),
    (512, 1024, 150, None),
    (1024, 2048, 20, None),
    (1024, 2048, 150, None),
]
BUSY_BLOBS = 150


def _torch_stages(probs: np.ndarray, device: str, repeats: int) -> dict[str, float]:
    import torch

    t = torch.from_numpy(probs).to(device)

    def sync() -> None:
        if t.device.type == "cuda":
            torch.cuda.synchronize()

    def score() -> None:
        (anomaly_score(t) >= 0.7).sum().item()

    def maps() -> None:
        heatmaps(t)
        sync()

    def reduce() -> None:
        t.sum(dim=0)
        sync()

    return {
        f"torch[{device}] reduce pass": median_ms(reduce, repeats),
        f"torch[{device}] anomaly_score+mask": median_ms(score, repeats),
        f"torch[{device}] heatmaps E/D/V/argmax": median_ms(maps, repeats),
    }


def _ground_truth(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 OoD ground truth: the left half's predicted components grown by 2 px (1 = OoD)."""
    left = np.zeros_like(mask)
    left[:, : mask.shape[1] // 2] = mask[:, : mask.shape[1] // 2]
    return cv2.dilate(left.view(np.uint8), np.ones((5, 5), np.uint8))


def run(repeats: int, device: str | None, cases: list[tuple[int, int, int, float | None]]) -> list[dict[str, Any]]:
    rows = []
    for height, width, n_blobs, fraction in cases:
        probs = synthetic_probs(height, width, n_blobs, seed=1, ood_fraction=fraction)
        score = anomaly_score(probs)
        mask = score >= 0.7
        gt = _ground_truth(mask)
        n_comp = label_components(mask).count
        stages = {
            "np.add.reduce pass (baseline)": median_ms(lambda p=probs: np.add.reduce(p, axis=0), repeats),
            "anomaly_score": median_ms(lambda p=probs: anomaly_score(p), repeats),
            "mask a>=t": median_ms(lambda s=score: s >= 0.7, repeats),
            "label_components": median_ms(lambda m=mask: label_components(m), repeats),
            "component_metrics": median_ms(lambda p=probs, m=mask: component_metrics(p, m), repeats),
            "component_metrics(gt)": median_ms(lambda p=probs, m=mask, g=gt: component_metrics(p, m, g), repeats),
            "component_metrics(validate=False)": median_ms(
                lambda p=probs, m=mask: component_metrics(p, m, validate=False), repeats
            ),
        }
        if device is not None:
            stages.update(_torch_stages(probs, device, repeats))
        base = stages["np.add.reduce pass (baseline)"]
        lo, hi = RESEARCH_CODE_S[(height, width)]
        row = {
            "height": height,
            "width": width,
            "components": n_comp,
            "component_pixels": int(mask.sum()),
            "component_pixel_fraction": float(mask.mean()),
            "stages_ms": stages,
            "ratio_metrics_to_reduce": stages["component_metrics"] / base,
            "ratio_metrics_gt_to_reduce": stages["component_metrics(gt)"] / base,
            "ratio_metrics_novalidate_to_reduce": stages["component_metrics(validate=False)"] / base,
            "speedup_vs_research_code": (
                lo * 1e3 / stages["component_metrics(gt)"],
                hi * 1e3 / stages["component_metrics(gt)"],
            ),
        }
        rows.append(row)
        print(
            f"\n{height}x{width}, {n_comp} components, {row['component_pixels']} component pixels "
            f"({100 * row['component_pixel_fraction']:.1f} % of the frame)"
        )
        for name, ms in stages.items():
            print(f"  {name:<40s} {ms:9.2f} ms   {ms / base:6.2f}x reduce")
        s_lo, s_hi = row["speedup_vs_research_code"]
        print(
            f"  component_metrics / reduce pass: {row['ratio_metrics_to_reduce']:.2f}x without, "
            f"{row['ratio_metrics_gt_to_reduce']:.2f}x with ground truth (target <= 2, limit 4); "
            f"vs research code ({lo}-{hi} s, with ground truth): {s_lo:.0f}-{s_hi:.0f}x faster"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per stage (median reported)")
    parser.add_argument("--device", default=None, help="also time the torch score path on this device")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    parser.add_argument(
        "--busy-fraction", type=float, default=0.125, help="OoD pixel fraction of the busy 1024x2048 frame"
    )
    parser.add_argument("--only-busy", action="store_true", help="time the busy frame only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    print(
        f"numpy {np.__version__}, numba {numba.__version__} ({worker_count()} metric workers), "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    busy = (1024, 2048, BUSY_BLOBS, args.busy_fraction)
    rows = run(args.repeats, args.device, [busy] if args.only_busy else [*CASES, busy])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
