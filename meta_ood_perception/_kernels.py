"""Compiled (numba) kernels behind :mod:`meta_ood_perception.metrics`.

Two passes, both parallel over chunks with private accumulators (no atomics):

1. :func:`gather_touched` walks the image row by row. With ``validate`` it sums each row's class planes
   (one read of ``probs``, the only full pass) to check finiteness and Σ_c p_c = 1. It copies the C
   probabilities of every component pixel into a compact (n, C) buffer in raster order, and for every
   pixel outside the components that touches one (the 1-pixel ring) adds its argmax class to the
   neighbour-class counts of each adjacent component pixel's component.
2. :func:`accumulate` runs over the compact buffer and accumulates, per component, the pixel counts,
   coordinate sums, sums and sums of squares of E, D, V (interior / boundary) and the class-probability sums,
   all in float64 from float32 per-pixel values computed exactly as the research code does.

The per-pixel ``log(p + ε)`` between the two passes is taken by numpy (float32 SIMD) so that E is
bit-identical to the reference, which also used numpy's float32 log.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

# Accumulator layout per component (axis -1 of the ``acc`` array).
ACC_N_IN = 0
ACC_N_BD = 1
ACC_SUM_ROW = 2
ACC_SUM_COL = 3
ACC_HEAT = 4  # 12 slots: ACC_HEAT + 6 * region (0 interior, 1 boundary) + 2 * map (E, D, V) + power - 1
ACC_CPROB = 16  # C slots of Σ p_c
N_FIXED = ACC_CPROB

# numba's default (workqueue) threading layer must not be entered from two Python threads at once.
KERNEL_LOCK = threading.Lock()


@numba.njit(parallel=True, cache=True, nogil=True)
def gather_touched(
    probs,  # (C, H, W) float32, C-contiguous
    marked,  # (H, W) int32, 0 / +k / -k
    touch,  # (H, W) uint8, 1 on component pixels and their 8-neighbours
    row_offsets,  # (H + 1,) int64, index of each row's first component pixel in the compact buffers
    row_bounds,  # (n_chunks + 1,) int64 row ranges of the chunks
    validate,  # bool
    tol,  # float, allowed |Σ_c p_c − 1|
    P,  # out (n, C) float32 probabilities of component pixels
    M,  # out (n,) int32 marked value of component pixels
    Y,  # out (n,) int32 row
    X,  # out (n,) int32 column
    ndist,  # out (n_chunks, K + 1, C) int64 neighbour class counts
    bad_count,  # out (n_chunks,) int64 pixels failing validation
    bad_first,  # out (n_chunks,) int64 flat index of the first failing pixel (-1 if none)
    bad_value,  # out (n_chunks,) float64 Σ_c p_c at that pixel
):
    n_classes, height, width = probs.shape
    n_chunks = row_bounds.shape[0] - 1
    for ch in numba.prange(n_chunks):
        row_sum = np.empty(width, dtype=np.float32)
        row_abs = np.empty(width, dtype=np.float32)
        bad_first[ch] = -1
        for y in range(row_bounds[ch], row_bounds[ch + 1]):
            if validate:
                row_sum[:] = 0.0
                row_abs[:] = 0.0
                for c in range(n_classes):
                    for x in range(width):
                        v = probs[c, y, x]
                        row_sum[x] += v
                        row_abs[x] += abs(v)
                for x in range(width):
                    # Negative entries make Σ|p| exceed Σp; NaN fails every comparison.
                    if not (row_sum[x] >= 1.0 - tol and row_abs[x] <= 1.0 + tol):
                        if bad_count[ch] == 0:
                            bad_first[ch] = y * width + x
                            bad_value[ch] = row_sum[x]
                        bad_count[ch] += 1
            o = row_offsets[y]
            for x in range(width):
                if touch[y, x] == 0:
                    continue
                m = marked[y, x]
                if m != 0:
                    for c in range(n_classes):
                        P[o, c] = probs[c, y, x]
                    M[o] = m
                    Y[o] = y
                    X[o] = x
                    o += 1
                else:
                    best = probs[0, y, x]
                    pred = 0
                    for c in range(1, n_classes):
                        v = probs[c, y, x]
                        if v > best:
                            best = v
                            pred = c
                    for yy in range(max(y - 1, 0), min(y + 2, height)):
                        for xx in range(max(x - 1, 0), min(x + 2, width)):
                            k = marked[yy, xx]
                            if k != 0:
                                ndist[ch, abs(k), pred] += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def accumulate(
    P,  # (n, C) float32 probabilities of component pixels
    LG,  # (n, C) float32 log(P + eps), numpy's float32 log
    M,  # (n,) int32 marked values
    Y,  # (n,) int32 rows
    X,  # (n,) int32 columns
    bounds,  # (n_chunks + 1,) int64 pixel ranges of the chunks
    log_inv_c,  # float32 log(1 / C)
    acc,  # out (n_chunks, K + 1, N_FIXED + C) float64, zero-initialized
):
    n_classes = P.shape[1]
    n_chunks = bounds.shape[0] - 1
    for ch in numba.prange(n_chunks):
        for i in range(bounds[ch], bounds[ch + 1]):
            s = np.float32(0.0)
            p1 = np.float32(-1.0)
            p2 = np.float32(-1.0)
            m = M[i]
            k = abs(m)
            for c in range(n_classes):
                p = P[i, c]
                s += p * LG[i, c]
                if p > p1:
                    p2 = p1
                    p1 = p
                elif p > p2:
                    p2 = p
                acc[ch, k, ACC_CPROB + c] += np.float64(p)
            e = np.float64(s / log_inv_c)
            d = np.float64(np.float32(1.0 - np.float64(p1) + np.float64(p2)))
            v = np.float64(np.float32(1.0 - np.float64(p1)))
            region = 0 if m > 0 else 1
            base = ACC_HEAT + 6 * region
            acc[ch, k, ACC_N_IN + region] += 1.0
            acc[ch, k, ACC_SUM_ROW] += Y[i]
            acc[ch, k, ACC_SUM_COL] += X[i]
            acc[ch, k, base] += e
            acc[ch, k, base + 1] += e * e
            acc[ch, k, base + 2] += d
            acc[ch, k, base + 3] += d * d
            acc[ch, k, base + 4] += v
            acc[ch, k, base + 5] += v * v
