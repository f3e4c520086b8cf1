"""Newest-frame scheduling for the node, without ROS: one slot per camera, one worker thread.

:meth:`LatestFrameScheduler.submit` (called from the subscription callbacks) stores a frame in its camera's slot;
a frame still waiting there is replaced and counted as dropped, so nothing queues up and latency stays bounded by
about two processing periods under any input rate. The worker takes the waiting frame of the camera served least
recently and calls the handler (decode, pipeline, publish), which returns a
:class:`~meta_ood_perception.ros.processor.ProcessedFrame` for the statistics. :meth:`health` turns the state into a
diagnostic level and, when perception is not live (no input, a stalled or failing backend), the reason for a
fail-safe brake output.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import conversions as cv
from .processor import ProcessedFrame, ProcessingStats, Rejection

LOG = logging.getLogger(__name__)

Handler = Callable[[str, Any, float], ProcessedFrame]


@dataclass
class CameraState:
    """Scheduling state of one camera (times from the scheduler's monotonic clock, seconds).

    Attributes:
        stats: frame counts, rejections, latencies. slot: the waiting (message, received time), if any.
        last_input, last_done, last_start: times of the last arrival, completed frame and started frame.
        busy_since: start time of the frame being processed now, or None.
        arrivals: recent arrival times (input rate). latency_s: received → done, per processed frame.
        last_error: the latest rejection reason. reset_pending: the brake history must restart (gap / fault).
    """

    stats: ProcessingStats
    slot: tuple[Any, float] | None = None
    last_input: float = 0.0
    last_done: float = 0.0
    last_start: float = float("-inf")
    busy_since: float | None = None
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    latency_s: deque[float] = field(default_factory=lambda: deque(maxlen=20000))
    last_error: str = ""
    reset_pending: bool = False


class LatestFrameScheduler:
    """See the module docstring.

    Args:
        cameras: camera names. handler: ``(camera, message, received time) -> ProcessedFrame``, run in the worker.
        max_rate_hz: at most this many frames per second per camera (0 = no limit); frames over it are dropped.
        keep: rejections / latency samples kept per camera. clock: monotonic clock in seconds.
    """

    def __init__(
        self,
        cameras: Sequence[str],
        handler: Handler,
        *,
        max_rate_hz: float = 0.0,
        keep: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.max_rate_hz = max_rate_hz
        self.clock = clock
        now = clock()
        self.cameras = {name: CameraState(ProcessingStats(keep=keep), last_input=now) for name in cameras}
        self._cv = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread."""
        self._running = True
        self._thread = threading.Thread(target=self._work, name="anomaly_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker after its current frame (waits up to ``timeout`` seconds)."""
        with self._cv:
            self._running = False
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(self, camera: str, msg: Any, superseded: int = 0) -> None:
        """Store ``msg`` as the camera's newest frame (replacing and counting a waiting one as dropped).

        ``superseded``: frames the transport dropped before this one reached the callback (a gap in the publisher's
        sequence numbers: the subscription queue keeps only the newest ``qos.depth`` frames); counted apart.
        """
        now = self.clock()
        with self._cv:
            state = self.cameras[camera]
            state.stats.frames_in += 1
            state.stats.frames_superseded += max(superseded, 0)
            state.last_input = now
            state.arrivals.append(now)
            if state.slot is not None:
                state.stats.frames_dropped += 1
            state.slot = (msg, now)
            self._cv.notify()

    def take_reset(self, camera: str) -> bool:
        """True once after a gap or fault: the caller restarts the camera's brake history."""
        with self._cv:
            state = self.cameras[camera]
            pending, state.reset_pending = state.reset_pending, False
            return pending

    def _next(self) -> tuple[str, Any, float] | None:
        with self._cv:
            while self._running:
                now = self.clock()
                ready = [name for name, s in self.cameras.items() if s.slot is not None]
                wait = 0.2
                if ready:
                    name = min(ready, key=lambda n: self.cameras[n].last_start)
                    state = self.cameras[name]
                    early = state.last_start + 1.0 / self.max_rate_hz - now if self.max_rate_hz > 0 else 0.0
                    if early <= 0:
                        assert state.slot is not None
                        msg, received = state.slot
                        state.slot = None
                        state.busy_since = state.last_start = now
                        return name, msg, received
                    wait = min(wait, early)  # rate limit: the frame waits in its slot (a newer one replaces it)
                self._cv.wait(timeout=wait)
        return None

    def _work(self) -> None:
        while (item := self._next()) is not None:
            name, msg, received = item
            try:
                frame: ProcessedFrame | None = self.handler(name, msg, received)
            except Exception as err:  # a bug in the handler must not stop the worker
                LOG.exception("worker: unexpected failure on %s", name)
                frame = None
                reason = f"internal error: {type(err).__name__}: {err}"
            now = self.clock()
            with self._cv:
                state = self.cameras[name]
                state.busy_since = None
                state.last_done = now
                if frame is None:
                    state.stats.reject(Rejection(name, None, reason, "fault"))
                    state.last_error = reason
                    state.reset_pending = True
                    continue
                state.stats.add(frame)
                if frame.error is None:
                    state.latency_s.append(now - received)
                else:
                    state.last_error = frame.error.reason
                    if frame.error.kind == "fault":
                        state.reset_pending = True

    def input_rate(self, camera: str, window_s: float = 5.0) -> float:
        """Frames per second received on ``camera`` over the last ``window_s`` seconds."""
        now = self.clock()
        with self._cv:
            return sum(1 for t in self.cameras[camera].arrivals if now - t <= window_s) / window_s

    def health(self, camera: str, timeout_s: float, reject_run: int = 10) -> tuple[int, str, str | None]:
        """(diagnostic level, message, fail-safe reason or None) of ``camera`` now.

        ERROR with a reason: the worker has been busy on one frame (of any camera: they share it) for more than
        ``timeout_s``, a frame has waited in this camera's slot that long, or the last frames failed; STALE with a
        reason: no input for ``timeout_s``; STALE without one: the domain monitor holds the brake hint unavailable
        (frames keep coming, each with an unavailable brake output); WARN: the last ``reject_run`` frames (or every
        frame so far) were rejected as bad input; OK otherwise. A fail-safe reason also marks the brake history for a
        restart.
        """
        now = self.clock()
        with self._cv:
            s = self.cameras[camera]
            busy = [(n, c.busy_since) for n, c in self.cameras.items() if c.busy_since is not None]
            level, message, reason = cv.OK, "running", None
            if busy and now - busy[0][1] > timeout_s:
                whose = "" if busy[0][0] == camera else f" (on {busy[0][0]})"
                message = reason = f"backend stalled for {now - busy[0][1]:.1f} s{whose}"
                level = cv.ERROR
            elif s.slot is not None and now - s.slot[1] > timeout_s:
                message = reason = f"a frame has waited {now - s.slot[1]:.1f} s for the backend"
                level = cv.ERROR
            elif s.stats.consecutive_faults:
                message = reason = f"{s.stats.consecutive_faults} consecutive failure(s): {s.last_error}"
                level = cv.ERROR
            elif now - s.last_input > timeout_s:
                message = reason = f"no input for {now - s.last_input:.1f} s"
                level = cv.STALE
            elif s.stats.domain_unavailable is not None:
                level, message = cv.STALE, s.stats.domain_unavailable
            elif s.stats.consecutive_rejected >= reject_run or (
                s.stats.frames_rejected and not s.stats.frames_processed
            ):
                level, message = cv.WARN, f"{s.stats.consecutive_rejected} frame(s) in a row rejected: {s.last_error}"
            if reason is not None:
                s.reset_pending = True
            return level, message, reason
