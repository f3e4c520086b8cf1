"""The one stopwatch for stage timings, driven by a hand-set clock (no sleeping, no machine speed)."""

from __future__ import annotations

import pytest

from meta_ood_perception.stopwatch import Stopwatch


class FakeClock:
    """Seconds set by the test."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_stages_laps_and_total_in_milliseconds():
    clock = FakeClock()
    sw = Stopwatch(clock)
    clock.now += 0.002  # before the first stage: not part of any stage, part of the total
    with sw.stage("decode"):
        clock.now += 0.010
    clock.now += 0.005
    sw.lap("inference")  # from the end of "decode": 5 ms
    clock.now += 0.001
    sw.lap("score")
    assert sw.timings_ms == pytest.approx({"decode": 10.0, "inference": 5.0, "score": 1.0})
    assert list(sw.timings_ms) == ["decode", "inference", "score"]
    assert sw.total_ms == pytest.approx(18.0)
    clock.now += 0.004
    assert sw.with_total() == pytest.approx({"decode": 10.0, "inference": 5.0, "score": 1.0, "total": 22.0})


def test_first_lap_counts_from_the_start_and_repeated_stages_accumulate():
    clock = FakeClock(0.0)
    sw = Stopwatch(clock)
    clock.now = 0.003
    sw.lap("preprocess")
    with sw.stage("encode"):
        clock.now += 0.002
    with sw.stage("encode"):
        clock.now += 0.0005
    sw.add("inference", 7.5)  # measured elsewhere (e.g. the pipeline's own stages)
    assert sw.timings_ms == pytest.approx({"preprocess": 3.0, "encode": 2.5, "inference": 7.5})


def test_a_stage_that_raises_is_still_timed_and_the_copy_is_independent():
    clock = FakeClock(0.0)
    sw = Stopwatch(clock)

    def fail() -> None:
        with sw.stage("network"):
            clock.now = 0.004
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail()
    timings = sw.timings_ms
    timings["network"] = -1.0
    assert sw.timings_ms == pytest.approx({"network": 4.0})
    clock.now = 0.005
    sw.lap("after")  # laps continue from the end of the failed stage
    assert sw.timings_ms["after"] == pytest.approx(1.0)


def test_default_clock_is_monotonic_wall_time():
    sw = Stopwatch()
    with sw.stage("a"):
        pass
    assert 0.0 <= sw.timings_ms["a"] <= sw.total_ms
