"""Benchmark of the per-frame cost against the camera's resolution, through the node's code path.

``CameraProcessor.process`` (decode → pipeline → output messages, exactly what the node and ``meta-ood replay`` run)
with the embedded default bundle on ONNX Runtime (CPU provider), fed raw ``rgb8`` ``sensor_msgs/msg/Image`` messages
built with the rosbags typestore classes. Frames of a synthetic drive rendered at 1024×2048 are resized to each
camera size (the scene, not the rendering, is what matters). The sizes take turns frame by frame (so a change in
the machine's load hits both alike); after one warm-up frame, the median wall time of ``process`` per frame and the
median per stage. Issue 14 item 3 asks that a 4K frame (2160×3840) cost at most a small multiple of a 1024×2048
one; the ratio of the medians, measured in the same run, is the figure to compare between machines.

    python benchmarks/bench_frame_size.py [--repeats 20] [--json out.json]
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import bench_args

from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics
from meta_ood_perception.ros.processor import CameraProcessor
from meta_ood_training.synthetic import drive

LOG = logging.getLogger("bench_frame_size")
#: (height, width): the reference camera and 4K UHD.
SIZES = ((1024, 2048), (2160, 3840))
#: Distinct frames per size (cycled; a 4K rgb8 frame is 25 MB).
SCENES = 6


def _messages(size: tuple[int, int], scenes: list[npt.NDArray[np.uint8]], types: cv.RosbagsTypes) -> list[Any]:
    height, width = size
    out = []
    for i, image in enumerate(scenes):
        frame = image if image.shape[:2] == size else cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
        out.append(cv.rgb_to_image(np.ascontiguousarray(frame), cv.make_header(types, (i + 1) * 10**8, "cam"), types))
    return out


def bench_sizes(sizes: tuple[tuple[int, int], ...], repeats: int, scenes: list[npt.NDArray[np.uint8]]) -> list[Any]:
    """Median ms of ``CameraProcessor.process`` per frame and per stage for raw rgb8 frames of each size; the sizes
    take turns frame by frame, so a change in the machine's load hits them alike."""
    types = cv.RosbagsTypes()
    pipeline = AnomalyPipeline.from_bundle("default")
    processors = [CameraProcessor(camera_topics("/cam/front/image_raw"), pipeline, types) for _ in sizes]
    messages = [_messages(size, scenes, types) for size in sizes]
    wall: list[list[float]] = [[] for _ in sizes]
    stages: list[dict[str, list[float]]] = [{} for _ in sizes]
    for i in range(repeats + 1):
        for k, processor in enumerate(processors):
            t0 = time.perf_counter()
            frame = processor.process(messages[k][i % len(scenes)])
            elapsed = (time.perf_counter() - t0) * 1e3
            if frame.error is not None:
                raise RuntimeError(f"benchmark frame rejected: {frame.error.reason}")
            if i == 0:
                continue  # warm-up
            wall[k].append(elapsed)
            for stage, ms in frame.timings_ms.items():
                stages[k].setdefault(stage, []).append(ms)
    return [
        {
            "size": list(size),
            "median_ms": statistics.median(wall[k]),
            "p95_ms": float(np.percentile(wall[k], 95)),
            "stages_median_ms": {stage: statistics.median(v) for stage, v in stages[k].items()},
        }
        for k, size in enumerate(sizes)
    ]


def main() -> None:
    args = bench_args(__doc__.splitlines()[0], repeats=20)
    scenes = [image for image, _ in drive(11, SCENES, *SIZES[0])]
    results = bench_sizes(SIZES, args.repeats, scenes)
    for r in results:
        LOG.info("%d×%d: process p50 %.1f ms, p95 %.1f ms; stages %s", *r["size"], r["median_ms"], r["p95_ms"],
                 ", ".join(f"{k} {v:.1f}" for k, v in r["stages_median_ms"].items()))  # fmt: skip
    ratio = results[1]["median_ms"] / results[0]["median_ms"]
    LOG.info("4K / 1024×2048 per-frame cost: %.2f× (pixels: %.2f×)", ratio,
             (SIZES[1][0] * SIZES[1][1]) / (SIZES[0][0] * SIZES[0][1]))  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"sizes": results, "ratio_4k": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
