"""Benchmark of the domain monitor's cost per frame, against the pipeline it runs in (same run, same frames).

For cameras of 256×512, 512×1024 and 1024×2048 (a synthetic drive through the default bundle, ONNX Runtime):

1. the ``domain`` stage of ``AnomalyPipeline.process`` (``FrameResult.timings_ms["domain"]``: the statistics of the
   network input, the probabilities and the score, and the calibrated decision), median over ``--repeats`` frames;
2. the same call alone, repeated on one frame's analysis (``AnomalyPipeline.domain_status``), median;
3. baselines measured in the same loop: the pipeline's total per frame, and one ``np.log`` pass over the metric
   grid's (C, h, w) probabilities.

Target (issue 13): at most 1 ms per frame at 512×1024 on top of the pipeline.

    python benchmarks/bench_domain.py [--repeats 30] [--json out.json]
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

from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_training.synthetic import drive

LOG = logging.getLogger("bench_domain")
SIZES = ((256, 512), (512, 1024), (1024, 2048))


def bench(pipeline: AnomalyPipeline, size: tuple[int, int], repeats: int) -> dict[str, Any]:
    """The domain stage and its baselines over a drive rendered at camera ``size``."""
    frames = [image for image, _ in drive(11, repeats + 1, *size)]
    stage, total, log_ms = [], [], []
    for i, image in enumerate(frames):
        result = pipeline.process(image)
        if i == 0:
            continue  # warm-up
        stage.append(result.timings_ms["domain"])
        total.append(result.timings_ms["total"])
        assert result.analysis is not None
        probs = result.analysis.probs
        t0 = time.perf_counter()
        np.log(probs)
        log_ms.append((time.perf_counter() - t0) * 1e3)
    pipeline.reset()
    analysis = pipeline.analyze(frames[-1])
    alone = median_ms(lambda: pipeline.domain_status(analysis), repeats * 10)
    med_stage, med_total, med_log = statistics.median(stage), statistics.median(total), statistics.median(log_ms)
    return {
        "size": list(size), "domain_stage_ms": med_stage, "domain_stage_p95_ms": float(np.percentile(stage, 95)),
        "domain_status_alone_ms": alone, "pipeline_total_ms": med_total, "np_log_ms": med_log,
        "domain_vs_total": med_stage / med_total, "domain_vs_np_log": med_stage / med_log,
    }  # fmt: skip


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    pipeline = AnomalyPipeline.from_bundle("default", "onnxruntime")
    results = [bench(pipeline, size, args.repeats) for size in SIZES]
    for r in results:
        LOG.info("%d×%d: domain stage %.3f ms (p95 %.3f; alone %.3f ms) = %.2f %% of the pipeline's %.1f ms, "
                 "%.2f× one np.log pass over the probabilities (%.2f ms)", *r["size"], r["domain_stage_ms"],
                 r["domain_stage_p95_ms"], r["domain_status_alone_ms"], 100 * r["domain_vs_total"],
                 r["pipeline_total_ms"], r["domain_vs_np_log"], r["np_log_ms"])  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"domain": results}, f, indent=1)


if __name__ == "__main__":
    main()
