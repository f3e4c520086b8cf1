"""Benchmark of the per-frame pipeline on the default bundle: backends and per-stage latency.

1. Network inference, ONNX Runtime (CPU provider) vs torch (CPU) on the bundle's input size, same input, same run
   (issue target: ONNX Runtime ≥ 1.5× faster on a 2-core CPU).
2. Per-stage latency of ``AnomalyPipeline.process`` (median over ``--repeats`` frames of a synthetic drive) for
   cameras of 256×512, 512×1024 and 1024×2048: the network runs at the bundle's input size and score, components,
   metrics, meta classifier and brake on the bundle's metric grid, so only pre-processing and the final mapping to
   the frame grow with the camera.
3. Post-processing — anomaly score, components + 75 metrics, meta classifier, domain monitor, brake hint, mapping
   to the frame —
   against one ``np.log`` pass over the (C, h, w) probabilities of the metric grid, measured in the same run
   (target ≤ 4×).

    python benchmarks/bench_pipeline.py [--repeats 30] [--json out.json]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import bench_args, median_ms

from meta_ood_perception.backends import create_backend
from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.pipeline import STAGES, AnomalyPipeline
from meta_ood_perception.preprocessing import logits_to_probs, to_network_input
from meta_ood_training.synthetic import drive

LOG = logging.getLogger("bench_pipeline")
POST = ("score", "components", "meta", "domain", "brake", "output")


def bench_backends(repeats: int) -> dict[str, Any]:
    """Inference only, both backends on the same normalized input at the bundle's size."""
    bundle = load_bundle("default")
    image, _ = drive(7, 1, *bundle.input_size)[0]
    x = to_network_input(image, bundle.input_size, bundle.mean, bundle.std)
    out: dict[str, Any] = {"input": list(bundle.input_size)}
    for name in ("torch", "onnxruntime"):
        backend = create_backend(name, bundle)
        out[name] = {"ms": median_ms(lambda b=backend: b.run(x), repeats), "description": backend.description}
    out["onnxruntime_speedup"] = out["torch"]["ms"] / out["onnxruntime"]["ms"]
    return out


def bench_stages(size: tuple[int, int], repeats: int, backend: str = "onnxruntime") -> dict[str, Any]:
    """Median per-stage milliseconds over a drive rendered at camera ``size``; post-processing vs one np.log pass
    over the metric grid's probabilities."""
    pipeline = AnomalyPipeline.from_bundle("default", backend)
    frames = [image for image, _ in drive(11, repeats + 1, *size)]
    timings: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total", "post")}
    log_ms = []
    for i, image in enumerate(frames):
        result = pipeline.process(image)
        if i == 0:
            continue  # warm-up (numba kernels, allocations)
        for stage in (*STAGES, "total"):
            timings[stage].append(result.timings_ms[stage])
        timings["post"].append(sum(result.timings_ms[s] for s in POST))
        # the baseline on the same tensor, in the same loop iteration
        x = to_network_input(image, pipeline.bundle.input_size, pipeline.bundle.mean, pipeline.bundle.std)
        probs = logits_to_probs(pipeline.backend.run(x)["logits"][0], pipeline.metric_size)
        t0 = time.perf_counter()
        np.log(probs)
        log_ms.append((time.perf_counter() - t0) * 1e3)
    med = {stage: statistics.median(v) for stage, v in timings.items()}
    p95 = float(np.percentile(timings["total"], 95))
    log_med = statistics.median(log_ms)
    return {
        "size": list(size),
        "metric_size": list(pipeline.metric_size),
        "backend": backend,
        "median_ms": med,
        "total_p95_ms": p95,
        "fps_median": 1e3 / med["total"],
        "np_log_ms": log_med,
        "post_vs_np_log": med["post"] / log_med,
    }


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    backends = bench_backends(args.repeats)
    LOG.info("inference at %s: torch %.1f ms, onnxruntime %.1f ms -> ONNX Runtime %.2f× faster (target >= 1.5×)",
             backends["input"], backends["torch"]["ms"], backends["onnxruntime"]["ms"],
             backends["onnxruntime_speedup"])  # fmt: skip
    stages = [bench_stages(size, args.repeats) for size in ((256, 512), (512, 1024), (1024, 2048))]
    for s in stages:
        LOG.info("%s×%s (%s): %s; total p50 %.1f ms (%.1f frames/s), p95 %.1f ms", *s["size"], s["backend"],
                 ", ".join(f"{k} {v:.1f}" for k, v in s["median_ms"].items() if k in STAGES),
                 s["median_ms"]["total"], s["fps_median"], s["total_p95_ms"])  # fmt: skip
        LOG.info("  post-processing %.1f ms = %.2f× one np.log pass (%.2f ms) over the probabilities (target <= 4×)",
                 s["median_ms"]["post"], s["post_vs_np_log"], s["np_log_ms"])  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backends": backends, "stages": stages}, f, indent=1)


if __name__ == "__main__":
    main()
