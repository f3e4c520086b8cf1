"""Overload and faults on the node's scheduling and processing code (no ROS; tests/ros repeats it under rclpy).

Overload: the camera is driven by the worker's own measured progress, never by a rate fixed in advance or measured
on warm-up frames: it submits ``FRAMES_PER_PERIOD`` frames per frame the worker starts, spread over the worker's
processing time as measured during the run (median of its last frames), catching up at once when it falls behind.
So the feed stays several times the measured throughput whatever the machine's speed or load, and every assertion is
a relation between figures of the same run: every frame accounted for (processed + dropped == submitted), most frames
dropped, every processed frame submitted after the worker took the one before it (the newest-frame slot: no frame
waits behind another, so receipt latency stays under two worker periods) and memory flat (RSS growth < 5 %).
Faults: a backend that raises, or blocks until released, for several frames. Health must go to ERROR with a
fail-safe reason and come back to OK, and the brake output must say perception is unavailable rather than "no
hazard". Times the scheduler judges (stalls, no input, rate limits) come from a test clock, so they do not depend on
how fast this machine runs either.

Set ``META_OOD_SOAK=1`` for the long runs (10,000 frames through the real pipeline; recorded by hand in
docs/RELIABILITY.md). CI runs about 10,000 frames through a fixed-cost handler and 600 through the real pipeline.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from meta_ood_perception.brake import BrakeHint
from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics
from meta_ood_perception.ros.processor import CameraProcessor, ProcessedFrame, Rejection
from meta_ood_perception.ros.scheduler import LatestFrameScheduler
from meta_ood_training.synthetic import drive

T = cv.RosbagsTypes()
TOPIC = "/cam/front/image_raw"
SOAK = os.environ.get("META_OOD_SOAK") == "1"
#: Frames the camera submits per frame the worker starts: the feed is about this many times the measured throughput.
FRAMES_PER_PERIOD = 4
#: The feed's spacing is the median processing time of the worker's last this-many frames, / FRAMES_PER_PERIOD.
SPACING_WINDOW = 8
#: Seconds a wait for the worker may take before the test fails (a hung worker, not a slow one).
PROGRESS_TIMEOUT_S = 60.0


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def image_msg(pixels, stamp):
    h, w = pixels.shape[:2]
    header = cv.make_header(T, stamp, "cam")
    return T.get("sensor_msgs/msg/Image")(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                                          step=w * 3, data=pixels.reshape(-1))  # fmt: skip


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after PROGRESS_TIMEOUT_S (the worker is hung, not slow)."""
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def done(scheduler: LatestFrameScheduler, camera: str = TOPIC) -> int:
    """Frames the worker has finished on ``camera`` (processed or rejected; counted after the handler returned)."""
    stats = scheduler.cameras[camera].stats
    return stats.frames_processed + stats.frames_rejected


class ManualClock:
    """A monotonic clock the test moves by hand (seconds): what the scheduler judges by time becomes exact."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class OverloadRun:
    """What one overload run measured (times from the scheduler's clock, time.monotonic, seconds).

    submitted_at: per submitted frame (by index), when ``submit`` returned. taken: index of each processed frame, in
    processing order; starts / ends: when the worker took it / when its handler returned.
    """

    submitted_at: list[float]
    taken: list[int]
    starts: list[float]
    ends: list[float]
    processed: int
    dropped: int
    rejected: int
    rss_growth: float

    @property
    def feed_ratio(self) -> float:
        """Frames submitted per frame processed: the feed rate over the worker's measured throughput."""
        return len(self.submitted_at) / self.processed

    def summary(self) -> str:
        periods = np.diff(self.starts)
        latency = [end - self.submitted_at[i] for i, end in zip(self.taken, self.ends, strict=True)]
        p50, p99 = np.percentile(periods, [50, 99]) * 1e3
        return (f"{len(self.submitted_at)} frames, {self.processed} processed, {self.dropped} dropped "
                f"(feed {self.feed_ratio:.2f}× throughput), worker period p50 {p50:.2f} / p99 {p99:.2f} ms, "
                f"latency p99 {np.percentile(latency, 99) * 1e3:.2f} ms = {np.percentile(latency, 99) * 1e3 / p99:.2f}"
                f" × period p99, RSS growth {100 * self.rss_growth:+.2f} %")  # fmt: skip


def overload(process: Callable[[Any], ProcessedFrame], make: Callable[[int], Any], processed: int,
             period_s: float) -> OverloadRun:  # fmt: skip
    """Run ``process`` as a LatestFrameScheduler's handler, fed FRAMES_PER_PERIOD frames (``make(index)``) per frame
    the worker starts until it has done ``processed`` frames; then drain.

    The frames of one worker period are spread over its processing time, measured as it runs (the median of the last
    SPACING_WINDOW frames; ``period_s``, a steady-state measurement, until there are some); a feed that fell behind
    (a preempted test thread) catches up at once. So the camera outpaces the worker on any machine, under any load.
    """
    starts: list[float] = []
    ends: list[float] = []
    taken: list[int] = []
    durations: list[float] = []

    def handler(camera, item, received):
        index, msg = item
        start = state.last_start  # set by the worker when it took this frame, just before calling us
        starts.append(start)
        frame = process(msg)
        ends.append(time.monotonic())
        durations.append(ends[-1] - start)
        taken.append(index)
        return frame

    scheduler = LatestFrameScheduler([TOPIC], handler)
    state = scheduler.cameras[TOPIC]
    submitted_at: list[float] = []
    rss_warm = None
    scheduler.start()
    try:
        progress, deadline = 0, time.monotonic() + PROGRESS_TIMEOUT_S
        while (finished := done(scheduler)) < processed:
            if finished > progress:
                progress, deadline = finished, time.monotonic() + PROGRESS_TIMEOUT_S
            assert time.monotonic() < deadline, f"the worker stopped after {finished} frames"
            if len(submitted_at) < FRAMES_PER_PERIOD * len(starts) + 1:  # never more ahead than one period
                scheduler.submit(TOPIC, (len(submitted_at), make(len(submitted_at))))
                submitted_at.append(time.monotonic())
                if len(submitted_at) < FRAMES_PER_PERIOD * (len(starts) - 1) + 1:
                    continue  # short of FRAMES_PER_PERIOD for a period the worker finished: catch up at once
            if rss_warm is None and done(scheduler) >= processed // 10:
                rss_warm = rss_bytes()
            recent = durations[-SPACING_WINDOW:]
            time.sleep((statistics.median(recent) if recent else period_s) / FRAMES_PER_PERIOD)
        wait_until(lambda: state.slot is None and state.busy_since is None, "the last frame")
    finally:
        scheduler.stop()
    assert rss_warm is not None
    stats = state.stats
    return OverloadRun(submitted_at, taken, starts, ends, stats.frames_processed, stats.frames_dropped,
                       stats.frames_rejected, rss_bytes() / rss_warm - 1)  # fmt: skip


def check_overload(run: OverloadRun) -> None:
    """The relations an overloaded newest-frame scheduler must keep, whatever the machine's speed."""
    print(f"\n{run.summary()}")
    assert run.rejected == 0 and len(run.taken) == run.processed
    assert run.processed + run.dropped == len(run.submitted_at)  # every frame processed or dropped, none waits
    assert run.feed_ratio >= 2  # the feed outpaced the measured throughput at least twice over ...
    assert run.dropped >= len(run.submitted_at) // 2  # ... and the stale frames were dropped, not queued
    last = len(run.submitted_at) - 1
    for i, index in enumerate(run.taken):
        # newest frame: a frame that was waiting when the worker took this one would be newer than it
        assert index == last or run.submitted_at[index + 1] >= run.starts[i], (i, index)
        # no frame waits behind another: it reached the slot after the worker took the previous frame, so its
        # receipt latency is under one worker period (the one it waited through) plus its own processing
        assert i == 0 or run.submitted_at[index] >= run.starts[i - 1], (i, index)
    assert run.rss_growth < 0.05


def fixed_cost_handler(cost_s: float) -> Callable[[Any], ProcessedFrame]:
    def process(msg) -> ProcessedFrame:
        time.sleep(cost_s)  # like inference in native code: the GIL is released while it runs
        hint = BrakeHint(False, 0.0, "clear")
        return ProcessedFrame(camera_topics(TOPIC), 0, None, None, hint, {}, None, {"total": cost_s * 1e3})

    return process


def test_overload_fixed_cost_handler_10000_frames():
    run = overload(fixed_cost_handler(0.002), lambda i: None, 2_500, 0.002)
    check_overload(run)
    assert len(run.submitted_at) >= 9_000


@pytest.fixture(scope="module")
def pipeline():
    p = AnomalyPipeline.from_bundle("default")
    p.warm_up()
    return p


def test_overload_real_pipeline(pipeline):
    images = [image for image, _ in drive(5, 20, 64, 128)]
    processor = CameraProcessor(camera_topics(TOPIC), pipeline, T)
    # steady state, measured in this run: the frames after the first few through this processor
    timings = [processor.process(image_msg(im, i)).timings_ms["total"] for i, im in enumerate(images)]
    steady_s = statistics.median(timings[len(timings) // 2 :]) / 1e3
    run = overload(processor.process, lambda i: image_msg(images[i % len(images)], 1_000 + i),
                   2_500 if SOAK else 150, steady_s)  # fmt: skip
    check_overload(run)


class FlakyBackend:
    """Wraps a backend: raises on calls in ``fail``; on calls in ``stall``, blocks until ``release`` is set."""

    def __init__(self, inner, fail=(), stall=()):
        self.inner, self.fail, self.stall = inner, set(fail), set(stall)
        self.name, self.description = "flaky", "flaky test backend"
        self.calls = 0
        self.stalling, self.release = threading.Event(), threading.Event()

    def run(self, batch):
        call = self.calls
        self.calls += 1
        if call in self.fail:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        if call in self.stall:
            self.stalling.set()
            self.release.wait(PROGRESS_TIMEOUT_S)
        return self.inner.run(batch)


def test_backend_failures_give_error_then_recovery_and_unavailable_brake(pipeline):
    bundle = load_bundle("default")
    backend = FlakyBackend(pipeline.backend, fail=range(3, 8))
    flaky = AnomalyPipeline(bundle, backend)
    processor = CameraProcessor(camera_topics(TOPIC), flaky, T)
    frames: list[ProcessedFrame] = []

    def handler(camera, msg, received):
        frames.append(processor.process(msg))
        return frames[-1]

    scheduler = LatestFrameScheduler([TOPIC], handler)
    images = [image for image, _ in drive(5, 12, 64, 128)]
    health = []
    scheduler.start()
    try:
        for i, im in enumerate(images):
            scheduler.submit(TOPIC, image_msg(im, i))
            wait_until(lambda i=i: done(scheduler) == i + 1, f"frame {i}")  # counted: the worker is idle again
            health.append(scheduler.health(TOPIC, timeout_s=PROGRESS_TIMEOUT_S))
    finally:
        scheduler.stop()
    assert [f.error is not None for f in frames] == [False] * 3 + [True] * 5 + [False] * 4
    for f in frames[3:8]:
        assert f.error.kind == "fault" and "backend failure: RuntimeError: CUDA error" in f.error.reason
        down = cv.msg_to_brake(f.messages["emergency_brake"])
        assert not down["available"] and down["level"] == cv.STALE
    levels = [h[0] for h in health]
    assert levels[:3] == [cv.OK] * 3 and set(levels[3:8]) == {cv.ERROR} and levels[8:] == [cv.OK] * 4
    assert "5 consecutive failure(s)" in health[7][1] and health[7][2] is not None
    stats = scheduler.cameras[TOPIC].stats
    assert stats.faults == 5 and stats.frames_processed == 7 and stats.consecutive_faults == 0


def test_a_stalled_backend_is_reported_while_it_stalls(pipeline):
    bundle = load_bundle("default")
    backend = FlakyBackend(pipeline.backend, stall={1})
    processor = CameraProcessor(camera_topics(TOPIC), AnomalyPipeline(bundle, backend), T)
    clock = ManualClock()
    scheduler = LatestFrameScheduler([TOPIC], lambda c, m, r: processor.process(m), clock=clock)
    images = [image for image, _ in drive(5, 3, 64, 128)]
    scheduler.start()
    try:
        scheduler.submit(TOPIC, image_msg(images[0], 0))
        wait_until(lambda: done(scheduler) == 1, "the first frame")
        clock.now += 0.3
        assert scheduler.health(TOPIC, timeout_s=0.5)[0] == cv.OK
        scheduler.submit(TOPIC, image_msg(images[1], 1))
        wait_until(backend.stalling.is_set, "the stall")
        assert scheduler.health(TOPIC, timeout_s=0.5)[0] == cv.OK  # stalled, but not for longer than the timeout
        clock.now += 0.9
        level, message, reason = scheduler.health(TOPIC, timeout_s=0.5)
        assert level == cv.ERROR and message == "backend stalled for 0.9 s" and reason == message
        # frames arriving during the stall replace each other in the slot: one waits, the rest are dropped
        for i in range(5):
            scheduler.submit(TOPIC, image_msg(images[2], 10 + i))
        assert scheduler.cameras[TOPIC].stats.frames_dropped == 4
        backend.release.set()
        wait_until(lambda: done(scheduler) == 3, "the frames after the stall")
        assert scheduler.health(TOPIC, timeout_s=0.5)[0] == cv.OK  # recovered (and input is recent)
        stats = scheduler.cameras[TOPIC].stats
        assert stats.frames_processed == 3 and stats.frames_dropped == 4
        assert scheduler.take_reset(TOPIC)  # the brake history restarts after the gap
    finally:
        backend.release.set()
        scheduler.stop()


def test_no_input_is_stale_and_asks_for_a_reset():
    clock = ManualClock()
    scheduler = LatestFrameScheduler([TOPIC], lambda *a: None, clock=clock)  # type: ignore[arg-type,return-value]
    assert scheduler.health(TOPIC, 1.0)[0] == cv.OK
    clock.now += 1.5
    level, message, reason = scheduler.health(TOPIC, 1.0)
    assert level == cv.STALE and "no input for 1.5 s" in message and reason == message
    assert scheduler.take_reset(TOPIC) and not scheduler.take_reset(TOPIC)


def _instant(camera, msg, received):
    return ProcessedFrame(camera_topics(TOPIC), 0, None, None, BrakeHint(False, 0.0, "clear"), {}, None, {})


def test_a_handler_bug_does_not_stop_the_worker():
    calls = []

    def handler(camera, msg, received):
        calls.append(msg)
        if msg == "boom":
            raise KeyError("bug")
        return _instant(camera, msg, received)

    scheduler = LatestFrameScheduler([TOPIC], handler)
    scheduler.start()
    try:
        for i, msg in enumerate(("boom", "ok")):
            scheduler.submit(TOPIC, msg)
            wait_until(lambda i=i: done(scheduler) == i + 1, repr(msg))
    finally:
        scheduler.stop()
    stats = scheduler.cameras[TOPIC].stats
    assert calls == ["boom", "ok"] and stats.faults == 1 and stats.frames_processed == 1
    assert "internal error: KeyError" in stats.rejections[0].reason


#: Rate limit of the rate-limit tests and the spacing of their frames: powers of two, so test-clock sums are exact.
LIMIT_HZ = 8.0
TICK_S = 1 / 128


def _rate_limited(clock: ManualClock, arrivals: int, every: int) -> tuple[LatestFrameScheduler, list[int]]:
    """Submit ``arrivals`` frames ``every`` test-clock ticks to a scheduler limited to LIMIT_HZ; after each, wait
    until the worker has taken it if the limit lets it. Returns the scheduler (stopped) and the frames handled."""
    handled: list[int] = []
    scheduler = LatestFrameScheduler([TOPIC], lambda c, m, r: handled.append(m) or _instant(c, m, r),
                                     max_rate_hz=LIMIT_HZ, clock=clock)  # fmt: skip
    state = scheduler.cameras[TOPIC]
    scheduler.start()
    try:
        for i in range(arrivals):
            clock.now = 100.0 + i * every * TICK_S
            scheduler.submit(TOPIC, i)
            if clock.now >= state.last_start + 1 / LIMIT_HZ:
                # the worker takes this frame (or, if it woke just before, the one it replaced) at this instant
                wait_until(lambda: state.last_start == clock.now and state.busy_since is None, f"frame {i}")
    finally:
        scheduler.stop()
    return scheduler, handled


def test_rate_limit_keeps_frames_that_come_at_the_limit():
    scheduler, handled = _rate_limited(ManualClock(), 20, round(1 / LIMIT_HZ / TICK_S))
    stats = scheduler.cameras[TOPIC].stats
    assert handled == list(range(20)) and stats.frames_processed == 20 and stats.frames_dropped == 0


def test_rate_limit_drops_frames_above_it():
    arrivals = 256  # 2 s of test clock at 128 frames/s, limited to 8 frames/s
    scheduler, handled = _rate_limited(ManualClock(), arrivals, 1)
    stats = scheduler.cameras[TOPIC].stats
    per_window = round(1 / LIMIT_HZ / TICK_S)
    assert stats.frames_processed == len(handled) == arrivals // per_window  # one frame per 1/8 s window
    assert stats.frames_dropped == arrivals - len(handled) - 1  # the rest, but the last one still in the slot
    # the frame that came as its window opened (or, if the worker woke just before, the one it replaced)
    assert all(index in (k * per_window - 1, k * per_window) for k, index in enumerate(handled))


def test_a_stall_on_one_camera_is_reported_for_every_camera():
    gate, entered = threading.Event(), threading.Event()

    def handler(camera, msg, received):
        if camera == "/a":
            entered.set()
            gate.wait(PROGRESS_TIMEOUT_S)
        return _instant(camera, msg, received)

    clock = ManualClock()
    scheduler = LatestFrameScheduler(["/a", "/b"], handler, clock=clock)
    scheduler.start()
    try:
        scheduler.submit("/a", 0)
        wait_until(entered.is_set, "the stall on /a")
        scheduler.submit("/b", 0)
        clock.now += 0.6
        level, message, reason = scheduler.health("/b", timeout_s=0.5)
        assert level == cv.ERROR and message == "backend stalled for 0.6 s (on /a)" and reason == message
    finally:
        gate.set()
        scheduler.stop()


def test_a_run_of_rejected_frames_is_a_warning():
    rejection = Rejection(TOPIC, 0, "unsupported image encoding 'yuv422'")
    bad = ProcessedFrame(camera_topics(TOPIC), 0, None, None, BrakeHint(False, 1.0, "x", False), {}, rejection)
    good = _instant(TOPIC, None, 0.0)
    scheduler = LatestFrameScheduler([TOPIC], lambda c, m, r: good if m == "good" else bad)
    scheduler.start()
    try:
        for i, m in enumerate(["good"] + ["bad"] * 10):
            scheduler.submit(TOPIC, m)
            wait_until(lambda i=i: done(scheduler) == i + 1, f"frame {i}")
            level, message, reason = scheduler.health(TOPIC, timeout_s=PROGRESS_TIMEOUT_S)
            assert level == (cv.WARN if i == 10 else cv.OK), (i, message)
        assert "10 frame(s) in a row rejected" in message and "yuv422" in message
        assert reason is None  # each rejected frame already carried its own fail-safe brake output
    finally:
        scheduler.stop()
