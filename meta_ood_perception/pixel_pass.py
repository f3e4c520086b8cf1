"""The per-pixel pass of the component metrics: superbands of rows, shared by the caller and helper threads.

:func:`pixel_sums` cuts the image into superbands (whole bands of rows, about :data:`SUPERBAND_PIXELS` pixels) and
runs, per superband, the gather kernel, numpy's float32 ``log`` and the accumulate kernel (see
:mod:`meta_ood_perception._kernels`), so that the compact per-pixel buffers stay in cache. The calling thread takes
superbands from a shared queue, and so do up to :func:`_kernels.worker_count` − 1 helper threads (a small pool,
created on first use): the kernels are serial and release the GIL, and numba's threading layer, which two Python
threads must not enter at once, is never used. The caller never waits for a helper that has not started, so a
helper held up by another process costs nothing. Every superband keeps its own sums, added in superband order at
the end: the result does not depend on which thread ran which superband, nor on the number of threads.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from . import _kernels
from .scores import EPS_F32

LOG = logging.getLogger(__name__)

#: Pixels per band of the gather kernel (16 rows at 2048 px): a band of each class plane stays in L2.
BAND_PIXELS = 32768
#: Pixels per superband (whole bands): the unit of work of one thread, whose compact buffers stay in cache.
SUPERBAND_PIXELS = 65536
#: Below this many probability values (C·H·W) the caller works alone (waking helpers would cost more).
PARALLEL_MIN_VALUES = 2**23
#: Most memory for the per-superband sums; beyond it superbands grow (fewer of them).
SUMS_BUDGET_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Frame:
    """The per-frame inputs of the pixel kernels (see :func:`_kernels.gather_rows`)."""

    probs: npt.NDArray[np.float32]  # (C, H·W) C-contiguous
    marked: npt.NDArray[np.int32]  # (H, W), boundary ids negated by the kernels
    eroded: npt.NDArray[np.uint8]  # (H, W)
    touch: npt.NDArray[np.uint8]  # (H·W,)
    other: npt.NDArray[np.uint8]  # (H·W,) ground-truth OoD, or (1,) without
    has_other: bool
    validate: bool
    lo: float  # smallest valid Σ_c p_c
    hi: float  # largest valid Σ_c p_c
    log_inv_c: np.float32

    @property
    def n_classes(self) -> int:
        return int(self.probs.shape[0])


@dataclass(frozen=True)
class PixelSums:
    """What the pixel pass found.

    Attributes:
        acc: (K + 1, N_FIXED + C) float64 per-component sums (layout: ``_kernels.ACC_*``).
        ndist: (K + 1, C) int64 neighbour class counts.
        suspect: a band may hold invalid probabilities (the caller re-checks exactly).
        near: flat indices of the ``other`` pixels outside the components next to one.

    """

    acc: npt.NDArray[np.float64]
    ndist: npt.NDArray[np.int64]
    suspect: bool
    near: npt.NDArray[np.int64]


def band_rows(width: int) -> int:
    """Rows per band of the gather kernel: about :data:`BAND_PIXELS` pixels, at least one row."""
    return max(1, BAND_PIXELS // width)


def superbands(height: int, width: int, max_count: int) -> list[tuple[int, int]]:
    """At most ``max_count`` row ranges (whole bands) of about :data:`SUPERBAND_PIXELS` pixels."""
    band = band_rows(width)
    rows = max(band, SUPERBAND_PIXELS // width // band * band)
    if math.ceil(height / rows) > max_count:
        rows = math.ceil(math.ceil(height / max_count) / band) * band
    return [(y, min(y + rows, height)) for y in range(0, height, rows)]


@dataclass
class _Job:
    """One frame's superbands: who takes which next, and the per-superband results."""

    frame: Frame
    bands: list[tuple[int, int]]
    cap: int  # most component pixels in one superband
    n_ring: int
    acc: npt.NDArray[np.float64]  # (S, K + 1, N_FIXED + C)
    ndist: npt.NDArray[np.int64]  # (S, K + 1, C)
    suspect: npt.NDArray[np.bool_]  # (S,)
    near: list[npt.NDArray[np.int64]]
    errors: list[BaseException] = field(default_factory=list)
    next_band: int = 0
    done: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)

    def take(self) -> int | None:
        with self.cond:
            if self.next_band >= len(self.bands) or self.errors:
                return None
            self.next_band += 1
            return self.next_band - 1

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.done += 1
            if error is not None:
                self.errors.append(error)
            self.cond.notify_all()

    def wait(self) -> None:
        """Until every superband that was taken is finished (none is left untaken once the caller returns)."""
        with self.cond:
            self.cond.wait_for(lambda: self.done == self.next_band)


def pixel_sums(frame: Frame, row_offsets: npt.NDArray[np.int64], count: int, n_ring: int) -> PixelSums:
    """Run the pixel pass over a frame with ``count`` components.

    Args:
        frame: the inputs.
        row_offsets: (H + 1,) int64 index of each row's first component pixel in raster order.
        count: number of components K.
        n_ring: number of pixels outside the components next to one (bounds the ``near`` pixels).

    """
    height, width = frame.marked.shape
    n_classes = frame.n_classes
    per_band = (count + 1) * (_kernels.N_FIXED + 2 * n_classes) * 8
    bands = superbands(height, width, max(1, SUMS_BUDGET_BYTES // per_band))
    n = len(bands)
    job = _Job(
        frame=frame,
        bands=bands,
        cap=max(1, *(int(row_offsets[b] - row_offsets[a]) for a, b in bands)),
        n_ring=n_ring,
        acc=np.zeros((n, count + 1, _kernels.N_FIXED + n_classes)),
        ndist=np.zeros((n, count + 1, n_classes), dtype=np.int64),
        suspect=np.zeros(n, dtype=bool),
        near=[np.zeros(0, dtype=np.int64)] * n,
    )
    if frame.probs.size >= PARALLEL_MIN_VALUES and n > 1:
        _HELPERS.run(lambda: _work(job), min(_kernels.worker_count(), n) - 1)
    _work(job)
    job.wait()
    if job.errors:
        raise job.errors[0]
    return PixelSums(job.acc.sum(axis=0), job.ndist.sum(axis=0), bool(job.suspect.any()), np.concatenate(job.near))


def _work(job: _Job) -> None:
    """Gather, log and accumulate superbands from the job until none is left, with buffers reused between them."""
    s = job.take()
    if s is None:  # a helper that started late: nothing left, allocate nothing
        return
    frame = job.frame
    n_classes = frame.n_classes
    P = np.empty((n_classes, job.cap), dtype=np.float32)
    LG = np.empty_like(P)
    M = np.empty(job.cap, dtype=np.int32)
    Y = np.empty_like(M)
    X = np.empty_like(M)
    words = frame.touch[: frame.touch.size // 8 * 8].view(np.uint64)
    bits = frame.probs.view(np.int32)
    band = band_rows(frame.marked.shape[1])
    near = np.empty(job.n_ring if frame.has_other else 1, dtype=np.int64)
    while s is not None:
        try:
            y_lo, y_hi = job.bands[s]
            n, bad, n_near = _kernels.gather_rows(
                frame.probs, bits, frame.marked, frame.eroded, frame.touch, words, y_lo, y_hi, band,
                frame.validate, frame.lo, frame.hi, EPS_F32, P, LG, M, Y, X, job.ndist[s],
                frame.other, frame.has_other, job.acc[s], near,
            )  # fmt: skip
            job.suspect[s] = bad
            job.near[s] = near[:n_near].copy()
            if n:
                # numpy's float32 log is what the reference used: E stays bit-identical to the research code.
                logs = LG[:, :n]
                np.log(logs, out=logs)
                _kernels.accumulate(P, LG, M, Y, X, n, frame.log_inv_c, job.acc[s])
        except BaseException as exc:  # reported to the caller, which re-raises it
            job.finish(exc)
            return
        job.finish()
        s = job.take()


class _Helpers:
    """Daemon threads that run submitted tasks; started on first use, grown on demand, forgotten after a fork."""

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._count = 0
        self._lock = threading.Lock()

    def run(self, task: Callable[[], None], copies: int) -> None:
        """Queue ``copies`` runs of ``task`` (which must not raise) without waiting for them."""
        with self._lock:
            while self._count < copies:
                self._count += 1
                threading.Thread(target=self._loop, name=f"metrics-helper-{self._count}", daemon=True).start()
        for _ in range(copies):
            self._tasks.put(task)

    def _loop(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task()
            except Exception:  # a task reports its errors to its caller; this one escaped: keep the helper alive
                LOG.exception("metrics helper task failed")


_HELPERS = _Helpers()


def _forget_helpers() -> None:
    global _HELPERS
    _HELPERS = _Helpers()  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)
