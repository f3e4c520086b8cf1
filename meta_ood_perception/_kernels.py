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
def sign_boundaries(labels, eroded):
    """Negate, in place, the (H, W) int32 ids of component pixels where the (H, W) uint8 erosion is 0."""
    height, width = labels.shape
    for y in numba.prange(height):
        for x in range(width):
            if eroded[y, x] == 0 and labels[y, x] != 0:
                labels[y, x] = -labels[y, x]


@numba.njit(parallel=True, cache=True, nogil=True)
def gather_touched(
    probs,  # (C, H, W) float32, C-contiguous
    marked,  # (H, W) int32 component ids (0 = none); boundary ids are negated here, in place
    eroded,  # (H, W) uint8 3×3 erosion of the mask (0 on boundary pixels)
    touch,  # (H, W) uint8, 1 on component pixels and their 8-neighbours
    row_offsets,  # (H + 1,) int64, index of each row's first component pixel in the compact buffers
    row_bounds,  # (n_chunks + 1,) int64 row ranges of the chunks
    validate,  # bool
    tol,  # float, allowed |Σ_c p_c − 1|
    P,  # out (C, n) float32 probabilities of component pixels (class-major)
    M,  # out (n,) int32 marked value of component pixels
    Y,  # out (n,) int32 row
    X,  # out (n,) int32 column
    ndist,  # out (n_chunks, K + 1, C) int64 neighbour class counts
    bad_count,  # out (n_chunks,) int64 pixels failing validation
    bad_first,  # out (n_chunks,) int64 flat index of the first failing pixel (-1 if none)
    bad_value,  # out (n_chunks,) float64 Σ_c p_c at that pixel
):
    # Class planes lie a power of two apart, so reading one pixel's C values thrashes cache sets: every
    # loop below is class-outer and reads each plane's row sequentially.
    n_classes, height, width = probs.shape
    n_chunks = row_bounds.shape[0] - 1
    for ch in numba.prange(n_chunks):
        row_sum = np.empty(width, dtype=np.float32)
        row_abs = np.empty(width, dtype=np.float32)
        comp_x = np.empty(width, dtype=np.int64)
        ring_x = np.empty(width, dtype=np.int64)
        ring_best = np.empty(width, dtype=np.float32)
        ring_pred = np.empty(width, dtype=np.int64)
        bad_first[ch] = -1
        for y in range(row_bounds[ch], row_bounds[ch + 1]):
            n_comp = 0
            n_ring = 0
            for x in range(width):
                if touch[y, x] != 0:
                    if marked[y, x] != 0:
                        # Other rows only test ids for zero or take abs(), so signing here is race-free.
                        if eroded[y, x] == 0 and marked[y, x] > 0:
                            marked[y, x] = -marked[y, x]
                        comp_x[n_comp] = x
                        n_comp += 1
                    else:
                        ring_x[n_ring] = x
                        n_ring += 1
            if not validate and n_comp == 0 and n_ring == 0:
                continue
            o = row_offsets[y]
            for j in range(n_comp):
                M[o + j] = marked[y, comp_x[j]]
                Y[o + j] = y
                X[o + j] = comp_x[j]
            for j in range(n_ring):
                ring_best[j] = probs[0, y, ring_x[j]]
                ring_pred[j] = 0
            if validate:
                row_sum[:] = 0.0
                row_abs[:] = 0.0
            for c in range(n_classes):
                plane_row = probs[c, y]
                if validate:  # stream the whole plane row; the gathers below then hit L1
                    for x in range(width):
                        v = plane_row[x]
                        row_sum[x] += v
                        row_abs[x] += abs(v)
                for j in range(n_comp):
                    P[c, o + j] = plane_row[comp_x[j]]
                if c > 0:
                    for j in range(n_ring):
                        v = plane_row[ring_x[j]]
                        if v > ring_best[j]:  # strict: first maximum on ties, like np.argmax
                            ring_best[j] = v
                            ring_pred[j] = c
            if validate:
                for x in range(width):
                    # Negative entries make Σ|p| exceed Σp; NaN fails every comparison.
                    if not (row_sum[x] >= 1.0 - tol and row_abs[x] <= 1.0 + tol):
                        if bad_count[ch] == 0:
                            bad_first[ch] = y * width + x
                            bad_value[ch] = row_sum[x]
                        bad_count[ch] += 1
            for j in range(n_ring):
                x = ring_x[j]
                pred = ring_pred[j]
                for yy in range(max(y - 1, 0), min(y + 2, height)):
                    for xx in range(max(x - 1, 0), min(x + 2, width)):
                        k = marked[yy, xx]
                        if k != 0:
                            ndist[ch, abs(k), pred] += 1


@numba.njit(parallel=True, cache=True, nogil=True)
def accumulate(
    P,  # (C, n) float32 probabilities of component pixels (raster order)
    LG,  # (C, n) float32 log(P + ε) by numpy's float32 log, the reference's own (bit-identical E)
    M,  # (n,) int32 marked values
    Y,  # (n,) int32 rows
    X,  # (n,) int32 columns
    bounds,  # (n_chunks + 1,) int64 pixel ranges of the chunks
    log_inv_c,  # float32 log(1 / C)
    acc,  # out (n_chunks, K + 1, N_FIXED + C) float64, zero-initialized
):
    n_classes = P.shape[0]
    n_chunks = bounds.shape[0] - 1
    block = 2048
    for ch in numba.prange(n_chunks):
        ent = np.empty(block, dtype=np.float32)
        p1 = np.empty(block, dtype=np.float32)
        p2 = np.empty(block, dtype=np.float32)
        run_start = np.empty(block + 1, dtype=np.int64)
        run_k = np.empty(block, dtype=np.int64)
        heat = np.empty(12, dtype=np.float64)
        for b0 in range(bounds[ch], bounds[ch + 1], block):
            nb = min(block, bounds[ch + 1] - b0)
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
                    total = 0.0
                    for j in range(run_start[r], run_start[r + 1]):
                        total += pc[j]
                    acc[ch, run_k[r], ACC_CPROB + c] += total
            for r in range(n_runs):
                n_in = 0.0
                n_bd = 0.0
                rows = 0.0
                cols = 0.0
                heat[:] = 0.0
                for j in range(run_start[r], run_start[r + 1]):
                    i = b0 + j
                    e = np.float64(ent[j] / log_inv_c)
                    d = np.float64(np.float32(1.0 - np.float64(p1[j]) + np.float64(p2[j])))
                    v = np.float64(np.float32(1.0 - np.float64(p1[j])))
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
                acc[ch, k, ACC_N_IN] += n_in
                acc[ch, k, ACC_N_BD] += n_bd
                acc[ch, k, ACC_SUM_ROW] += rows
                acc[ch, k, ACC_SUM_COL] += cols
                for a in range(12):
                    acc[ch, k, ACC_HEAT + a] += heat[a]
