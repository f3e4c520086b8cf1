"""One stopwatch for stage timings: wall time per named stage, in milliseconds.

The pipeline (:attr:`~meta_ood_perception.pipeline.FrameResult.timings_ms`), the ROS processor (decode / encode /
total) and the component metrics (:func:`~meta_ood_perception.metrics.component_metrics`) all time their stages
with a :class:`Stopwatch`::

    sw = Stopwatch()
    with sw.stage("decode"):
        image = decode(msg)
    sw.lap("inference")          # the time since the previous stage ended (or since the start)
    timings = sw.with_total()    # {"decode": ms, "inference": ms, "total": ms}

The clock is injectable (a function returning seconds, :func:`time.perf_counter` by default), so tests drive it by
hand instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: A clock: seconds as a float, monotonic (:func:`time.perf_counter`).
Clock = Callable[[], float]
#: Key of the whole run's wall time in :meth:`Stopwatch.with_total`.
TOTAL = "total"


class Stopwatch:
    """Wall time per stage of one run, milliseconds; a stage timed twice accumulates.

    Args:
        clock: seconds as a float (default :func:`time.perf_counter`); read once at construction (the start), at
            the start and end of each :meth:`stage` and at each :meth:`lap`.
    """

    def __init__(self, clock: Clock = time.perf_counter) -> None:
        self._clock = clock
        self._start = self._last = clock()
        self._ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as stage ``name`` (also when it raises); the next :meth:`lap` starts at its end."""
        begin = self._clock()
        try:
            yield
        finally:
            self._last = self._clock()
            self.add(name, (self._last - begin) * 1e3)

    def lap(self, name: str) -> None:
        """Count the time since the previous stage or lap ended (or since the start) as stage ``name``."""
        now = self._clock()
        self.add(name, (now - self._last) * 1e3)
        self._last = now

    def add(self, name: str, ms: float) -> None:
        """Add ``ms`` milliseconds measured elsewhere (e.g. by a pipeline the caller ran) to stage ``name``."""
        self._ms[name] = self._ms.get(name, 0.0) + ms

    @property
    def timings_ms(self) -> dict[str, float]:
        """Stage → milliseconds, in the order the stages were first timed (a copy)."""
        return dict(self._ms)

    @property
    def total_ms(self) -> float:
        """Milliseconds since the stopwatch was created (reads the clock)."""
        return (self._clock() - self._start) * 1e3

    def with_total(self) -> dict[str, float]:
        """:attr:`timings_ms` and ``"total"``: :attr:`total_ms` now."""
        return {**self._ms, TOTAL: self.total_ms}
