"""Compiled (numba) kernels behind :mod:`meta_ood_perception.metrics` and :mod:`meta_ood_perception.components`.

All kernels are serial and release the GIL (numba's threading layers are never entered, so Python threads may
call them concurrently); :mod:`meta_ood_perception.pixel_pass` runs them from up to :func:`worker_count` Python
threads, one superband of rows at a time per thread:

1. :func:`gather_rows` walks its rows in bands of a few rows. It streams each band of every class plane once
   (with ``validate``: sums Σ_c p_c and ORs the sign bits, the only full read of ``probs``), copies the C
   probabilities of the band's component pixels (and P + ε) into compact class-major buffers, signs boundary
   ids, and for every pixel outside the components that touches one (the 1-pixel ring) adds its argmax class to
   the neighbour-class counts of each adjacent component pixel's component.
2. numpy takes ``log(P + ε)`` in place (float32 SIMD): E stays bit-identical to the reference, which used it too.
3. :func:`accumulate` adds, per component, the pixel counts, coordinate sums, sums and sums of squares of E, D,
   V (interior / boundary) and the class-probability sums, in float64 from float32 per-pixel values computed
   exactly as the research code does.

:func:`touched_areas` gives the adjusted IoU's union term by flood-filling only the ground-truth regions next to
a component.

Numba caches the compiled kernels (``cache=True``): in ``NUMBA_CACHE_DIR`` when set, else next to this file
(``__pycache__``), else in the user's cache directory (``~/.cache/numba``); when none of these is writable, in
``<tmp>/meta-ood-numba-cache-<uid>``, and without a cache (compiled in every process) as the last resort. The
first compilation in a process logs one INFO line (:data:`COMPILE_NOTICE`; a WARNING when nothing is cached).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import numba
import numba.core.event
import numpy as np

LOG = logging.getLogger("meta_ood_perception.metrics")

#: Cold compile time of all kernels (``compile_kernels`` with an empty cache), seconds: 2.6 s on the idle 2-core dev
#: VM, 8–10 s while other jobs loaded it (docs/PERFORMANCE.md).
COMPILE_SECONDS = 5
#: The INFO line logged before the first kernel compiles in a process (a cache miss).
COMPILE_NOTICE = "compiling the metric kernels once (~%d s; cached for later runs)"
_NO_CACHE_NOTICE = "compiling the metric kernels (~%d s): no writable cache directory, set NUMBA_CACHE_DIR to keep them"

#: Without validation, a band is streamed when at least 1 / STREAM_MIN_DENSITY of its pixels are component pixels.
STREAM_MIN_DENSITY = 32

# Accumulator layout per component (axis -1 of the ``acc`` array).
ACC_N_IN = 0
ACC_N_BD = 1
ACC_SUM_ROW = 2
ACC_SUM_COL = 3
ACC_HEAT = 4  # 12 slots: ACC_HEAT + 6 * region (0 interior, 1 boundary) + 2 * map (E, D, V) + power - 1
ACC_INTER = 16  # pixels in the ``other`` set (ground-truth OoD): the IoU's intersection
ACC_CPROB = 17  # C slots of Σ p_c
N_FIXED = ACC_CPROB

_state = {"cached": True, "announced": False}
# numba's config attributes are set from the environment at import, and its event API is unannotated.
_numba_config: Any = numba.config
_register_listener: Callable[[str, Any], None] = numba.core.event.register


def worker_count() -> int:
    """Threads the metric kernels may run on: ``NUMBA_NUM_THREADS`` (default: the CPUs this process may use), read
    without starting numba's own thread pool, which these serial kernels never use."""
    return max(1, int(_numba_config.NUMBA_NUM_THREADS))


def _fallback_cache_dir() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"meta-ood-numba-cache-{uid}")


def _njit(fn):
    """``numba.njit(cache=True, nogil=True)``, with a temporary cache directory, then no cache, as fallbacks.

    Serial on purpose (no ``parallel=True``): the callers run kernels from several Python threads, which numba's
    threading layers do not allow, and a serial kernel also compiles faster.
    """
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available": nothing writable
        pass
    if not _numba_config.CACHE_DIR:
        _numba_config.CACHE_DIR = _fallback_cache_dir()
        try:
            return numba.njit(cache=True, nogil=True)(fn)
        except (RuntimeError, OSError):
            pass
    _state["cached"] = False
    return numba.njit(nogil=True)(fn)


def _on_compile_start(_listener, event):
    """Log once per process, before the first of these kernels compiles (numba found no cached version)."""
    dispatcher = event.data.get("dispatcher") if isinstance(event.data, dict) else None
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", None)
    if module == __name__ and not _state["announced"]:
        _state["announced"] = True
        if _state["cached"]:
            LOG.info(COMPILE_NOTICE, COMPILE_SECONDS)
        else:
            LOG.warning(_NO_CACHE_NOTICE, COMPILE_SECONDS)


# numba broadcasts "numba:compile" only on a cache miss, right before compiling (numba.core.event).
_CompileNotice = type(
    "_CompileNotice", (numba.core.event.Listener,), {"on_start": _on_compile_start, "on_end": lambda _s, _e: None}
)
_register_listener("numba:compile", _CompileNotice())


@_njit
def sign_boundaries(labels, eroded):
    """Negate, in place, the (H, W) int32 ids of component pixels where the (H, W) uint8 erosion is 0."""
    height, width = labels.shape
    for y in range(height):
        for x in range(width):
            if eroded[y, x] == 0 and labels[y, x] != 0:
                labels[y, x] = -labels[y, x]


@_njit
def _gather_class(plane, c, comp_i, n_comp, o, eps, P, PE, ring_i, n_ring, ring_best, ring_pred):
    """Copy class ``c`` of the band's component pixels into P and P + ε into PE; update the ring's argmax."""
    # Views and range indices: numba adds no negative-index wraparound to these loads and stores (2 ms per frame).
    out_p = P[c, o : o + n_comp]
    out_pe = PE[c, o : o + n_comp]
    for j in range(n_comp):
        v = plane[comp_i[j]]
        out_p[j] = v
        out_pe[j] = v + eps
    if c == 0:
        for j in range(n_ring):
            ring_best[j] = plane[ring_i[j]]
            ring_pred[j] = 0
    else:
        for j in range(n_ring):
            v = plane[ring_i[j]]
            if v > ring_best[j]:  # strict: first maximum on ties, like np.argmax
                ring_best[j] = v
                ring_pred[j] = c


@_njit
def gather_rows(
    probs,  # (C, H·W) float32, C-contiguous: the (C, H, W) tensor with each class plane flattened
    bits,  # (C, H·W) int32 view of the same memory (sign bits: negative values)
    marked,  # (H, W) int32 component ids (0 = none); boundary ids are negated here, in place
    eroded,  # (H, W) uint8 3×3 erosion of the mask (0 on boundary pixels)
    touch,  # (H·W,) uint8, 1 on component pixels and their 8-neighbours
    touch_words,  # (H·W // 8,) uint64 view of touch's first bytes (skips untouched pixels 8 at a time)
    y_lo,  # first row
    y_hi,  # end row (exclusive)
    band,  # rows per band (each class plane is streamed one band at a time)
    validate,  # bool
    lo,  # float, smallest valid Σ_c p_c
    hi,  # float, largest valid Σ_c p_c
    eps,  # float32 ε of log(p + ε)
    P,  # out (C, cap) float32 probabilities of the rows' component pixels (class-major, raster order)
    PE,  # out (C, cap) float32 P + ε (numpy takes its log in place)
    M,  # out (cap,) int32 marked value of component pixels
    Y,  # out (cap,) int32 row
    X,  # out (cap,) int32 column
    ndist,  # in/out (K + 1, C) int64 neighbour class counts
    other,  # (H·W,) uint8 0/1 ground-truth OoD pixels (a dummy when ``has_other`` is False)
    has_other,  # bool
    acc,  # in/out (K + 1, N_FIXED + C) float64; ACC_INTER gets the component pixels in ``other``
    near,  # out (cap_near,) int64 flat indices of ``other`` pixels outside the components next to one
):
    """Gather the component pixels of rows [y_lo, y_hi).

    Returns (number of component pixels, whether a band may be invalid, number of ``near`` pixels).
    """
    # Class planes lie a power of two apart and component pixels are sparse: gathering them straight from
    # memory is latency-bound. Each band of the planes is streamed first, two classes at a time (validation:
    # one sequential read that the hardware prefetches), and the gathers that follow hit the cache.
    n_classes = probs.shape[0]
    height, width = marked.shape
    cap = band * width
    band_sum = np.empty(cap, dtype=np.float32)
    comp_i = np.empty(cap, dtype=np.uint64)  # unsigned: no wraparound on the gathers
    ring_i = np.empty(cap, dtype=np.uint64)
    ring_y = np.empty(cap, dtype=np.int64)
    ring_x = np.empty(cap, dtype=np.int64)
    ring_best = np.empty(cap, dtype=np.float32)
    ring_pred = np.empty(cap, dtype=np.int64)
    o = 0
    n_near = 0
    suspect = False
    for y0 in range(y_lo, y_hi, band):
        y1 = min(y0 + band, y_hi)
        base = y0 * width
        n_el = (y1 - y0) * width
        n_comp = 0
        n_ring = 0
        for y in range(y0, y1):
            row = y * width
            x = 0
            while x < width:
                i = row + x
                if i & 7 == 0 and x + 8 <= width and touch_words[i >> 3] == 0:
                    x += 8
                    continue
                if touch[i] != 0:
                    k = marked[y, x]
                    if k != 0:
                        # Other threads only test ids for zero or take abs(), so signing here is race-free.
                        if eroded[y, x] == 0 and k > 0:
                            k = -k
                            marked[y, x] = k
                        M[o + n_comp] = k
                        Y[o + n_comp] = y
                        X[o + n_comp] = x
                        comp_i[n_comp] = i
                        n_comp += 1
                        if has_other and other[i] != 0:
                            acc[abs(k), ACC_INTER] += 1.0
                    else:
                        ring_i[n_ring] = i
                        ring_y[n_ring] = y
                        ring_x[n_ring] = x
                        n_ring += 1
                        if has_other and other[i] != 0:
                            near[n_near] = i
                            n_near += 1
                x += 1
        # Without validation, streaming pays off once component pixels are dense enough to touch most lines.
        stream = validate or n_comp * STREAM_MIN_DENSITY >= n_el
        if not stream and n_ring == 0:
            continue
        sign = np.int32(0)
        c = 0
        if stream:
            band_sum[:n_el] = 0.0
            while c + 2 <= n_classes:
                a = probs[c, base : base + n_el]
                b = probs[c + 1, base : base + n_el]
                a_bits = bits[c, base : base + n_el]
                b_bits = bits[c + 1, base : base + n_el]
                for e in range(n_el):
                    band_sum[e] = (band_sum[e] + a[e]) + b[e]  # class order, as np.add.reduce(probs, 0)
                    sign |= a_bits[e] | b_bits[e]
                _gather_class(probs[c], c, comp_i, n_comp, o, eps, P, PE, ring_i, n_ring, ring_best, ring_pred)
                _gather_class(probs[c + 1], c + 1, comp_i, n_comp, o, eps, P, PE, ring_i, n_ring, ring_best, ring_pred)
                c += 2
            if c < n_classes:
                a = probs[c, base : base + n_el]
                a_bits = bits[c, base : base + n_el]
                for e in range(n_el):
                    band_sum[e] += a[e]
                    sign |= a_bits[e]
        while c < n_classes:
            _gather_class(probs[c], c, comp_i, n_comp, o, eps, P, PE, ring_i, n_ring, ring_best, ring_pred)
            c += 1
        if validate:
            # A set sign bit (a negative value, −0 or a negative NaN) or a sum outside [lo, hi] (NaN fails
            # every comparison) marks the band; the caller then finds the exact pixels.
            bad = sign < 0
            for e in range(n_el):
                total = band_sum[e]
                bad |= not (total >= lo and total <= hi)
            if bad:
                suspect = True
        for j in range(n_ring):
            y = ring_y[j]
            x = ring_x[j]
            pred = ring_pred[j]
            for yy in range(max(y - 1, 0), min(y + 2, height)):
                for xx in range(max(x - 1, 0), min(x + 2, width)):
                    k = marked[yy, xx]
                    if k != 0:
                        ndist[abs(k), pred] += 1
        o += n_comp
    return o, suspect, n_near


@_njit
def touched_areas(
    marked,  # (H, W) int32 component ids, signed or not (0 = none)
    other,  # (H·W,) uint8 0/1 pixel set L (ground-truth OoD, or the prediction); CONSUMED: filled pixels set to 0
    near,  # (m,) int64 flat indices of the L pixels outside all components that have one among their 8 neighbours
    extra,  # in/out (K + 1,) float64
):
    """Add to ``extra[k]`` the area of every 8-connected component of L outside all components that touches
    component k (MetaSeg's adjusted-IoU union term). Those components are flood-filled from ``near`` only, so
    the cost grows with their area, not with H·W."""
    height, width = marked.shape
    flat_marked = marked.reshape(height * width)
    stamp = np.zeros(extra.shape[0], dtype=np.int64)  # stamp[k] = the fill that last counted component k
    touched = np.empty(extra.shape[0], dtype=np.int64)
    stack = np.empty(height * width, dtype=np.int32)  # only the pages it uses are ever touched
    fill = 0
    for q in near:
        if other[q] == 0:
            continue  # filled from an earlier near pixel
        fill += 1
        n_touched = 0
        other[q] = 0
        stack[0] = q
        top = 1
        area = 0
        while top > 0:
            top -= 1
            t = stack[top]
            ty = t // width
            tx = t - ty * width
            area += 1
            for sy in range(max(ty - 1, 0), min(ty + 2, height)):
                for sx in range(max(tx - 1, 0), min(tx + 2, width)):
                    u = sy * width + sx
                    k = flat_marked[u]
                    if k != 0:
                        k = abs(k)
                        if stamp[k] != fill:
                            stamp[k] = fill
                            touched[n_touched] = k
                            n_touched += 1
                    elif other[u] != 0:
                        other[u] = 0
                        stack[top] = u
                        top += 1
        for j in range(n_touched):
            extra[touched[j]] += area


@_njit
def accumulate(
    P,  # (C, cap) float32 probabilities of component pixels (raster order)
    LG,  # (C, cap) float32 log(P + ε) by numpy's float32 log, the reference's own (bit-identical E)
    M,  # (cap,) int32 marked values
    Y,  # (cap,) int32 rows
    X,  # (cap,) int32 columns
    n,  # number of valid pixels (the first n of each buffer)
    log_inv_c,  # float32 log(1 / C)
    acc,  # in/out (K + 1, N_FIXED + C) float64 per-component sums
):
    """Add the per-component sums of the first n compact pixels to ``acc``."""
    n_classes = P.shape[0]
    block = 2048
    ent = np.empty(block, dtype=np.float32)
    p1 = np.empty(block, dtype=np.float32)
    p2 = np.empty(block, dtype=np.float32)
    run_start = np.empty(block + 1, dtype=np.int64)
    run_k = np.empty(block, dtype=np.int64)
    heat = np.empty(12, dtype=np.float64)
    for b0 in range(0, n, block):
        nb = min(block, n - b0)
        ent[:nb] = 0.0
        p1[:nb] = -1.0
        p2[:nb] = -1.0
        # Per-pixel E = Σ_c p·log(p + ε) in float32, summed in class order (the reference's order), and
        # the top-2 probabilities; slices and selects (no min/max calls) let LLVM vectorize over pixels.
        for c in range(n_classes):
            pc = P[c, b0 : b0 + nb]
            lc = LG[c, b0 : b0 + nb]
            for j in range(nb):
                p = pc[j]
                ent[j] += p * lc[j]
                top = p1[j]
                lo = p if p < top else top
                p1[j] = top if p < top else p
                second = p2[j]
                p2[j] = second if lo < second else lo
        # Runs of consecutive pixels of one component (raster order makes them long).
        n_runs = 0
        k_prev = -1
        for j in range(nb):
            k = abs(M[b0 + j])
            if k != k_prev:
                run_start[n_runs] = j
                run_k[n_runs] = k
                n_runs += 1
                k_prev = k
        run_start[n_runs] = nb
        for c in range(n_classes):
            pc = P[c, b0 : b0 + nb]
            for r in range(n_runs):
                # Four partial sums break the float64 add chain (latency-bound otherwise).
                t0 = 0.0
                t1 = 0.0
                t2 = 0.0
                t3 = 0.0
                j = run_start[r]
                end = run_start[r + 1]
                # Unsigned indices: numba adds no negative-index wraparound (the bounds are loaded values).
                while j + 4 <= end:
                    u = np.uint64(j)
                    t0 += pc[u]
                    t1 += pc[u + np.uint64(1)]
                    t2 += pc[u + np.uint64(2)]
                    t3 += pc[u + np.uint64(3)]
                    j += 4
                while j < end:
                    t0 += pc[np.uint64(j)]
                    j += 1
                acc[np.uint64(run_k[r]), ACC_CPROB + c] += (t0 + t1) + (t2 + t3)
        for r in range(n_runs):
            n_in = 0.0
            n_bd = 0.0
            rows = 0.0
            cols = 0.0
            heat[:] = 0.0
            for j in range(run_start[r], run_start[r + 1]):
                i = np.uint64(b0 + j)
                u = np.uint64(j)
                e = np.float64(ent[u] / log_inv_c)
                d = np.float64(np.float32(1.0 - np.float64(p1[u]) + np.float64(p2[u])))
                v = np.float64(np.float32(1.0 - np.float64(p1[u])))
                base = 0
                if M[i] > 0:
                    n_in += 1.0
                else:
                    n_bd += 1.0
                    base = 6
                rows += Y[i]
                cols += X[i]
                heat[base] += e
                heat[base + 1] += e * e
                heat[base + 2] += d
                heat[base + 3] += d * d
                heat[base + 4] += v
                heat[base + 5] += v * v
            k = run_k[r]
            acc[k, ACC_N_IN] += n_in
            acc[k, ACC_N_BD] += n_bd
            acc[k, ACC_SUM_ROW] += rows
            acc[k, ACC_SUM_COL] += cols
            for a in range(12):
                acc[k, ACC_HEAT + a] += heat[a]
