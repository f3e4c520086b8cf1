"""Helpers shared by the benchmarks: median wall time of repeated calls after one warm-up call, and the common
command line (``--repeats``, ``--json``)."""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_args(description: str, repeats: int = 30) -> argparse.Namespace:
    """Parse ``--repeats`` (default ``repeats``) and ``--json`` (write the figures there) and log at INFO level."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--json", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args
