"""An independent, deliberately plain re-implementation of the MetaSeg metrics, written from docs/METRICS.md.

It uses a breadth-first flood fill and per-component numpy reductions instead of OpenCV and the numba kernels,
so it shares no code with the package. Only for tiny test images.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def label_raster(seg: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components numbered in raster order of their first pixel (BFS flood fill)."""
    h, w = seg.shape
    labels = np.zeros((h, w), np.int64)
    k = 0
    for y, x in zip(*np.nonzero(seg), strict=True):
        if labels[y, x]:
            continue
        k += 1
        labels[y, x] = k
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for dy, dx in NEIGHBOURS:
                ny, nx = cy + dy, cx + dx
                if 0 <= ny < h and 0 <= nx < w and seg[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = k
                    queue.append((ny, nx))
    return labels, k


def window(h: int, w: int, y: int, x: int) -> list[tuple[int, int]]:
    return [(y + dy, x + dx) for dy, dx in NEIGHBOURS if 0 <= y + dy < h and 0 <= x + dx < w]


def marked_map(seg: np.ndarray) -> tuple[np.ndarray, int]:
    labels, n = label_raster(seg)
    h, w = seg.shape
    marked = labels.copy()
    for y, x in zip(*np.nonzero(seg), strict=True):
        if any(not seg[q] for q in window(h, w, y, x)):
            marked[y, x] = -labels[y, x]
    return marked, n


def heat(probs: np.ndarray) -> dict[str, np.ndarray]:
    c = probs.shape[0]
    eps = np.float32(np.finfo(np.float32).eps)
    s = np.zeros(probs.shape[1:], np.float32)
    for plane in probs:
        s += plane * np.log(plane + eps)
    e = s / np.float32(np.log(1.0 / c))
    srt = np.sort(probs, axis=0)
    p1, p2 = srt[-1].astype(np.float64), srt[-2].astype(np.float64)
    return {"E": e, "D": (1.0 - p1 + p2).astype(np.float32), "V": (1.0 - p1).astype(np.float32)}


def adjusted_iou(labels: np.ndarray, k: int, other: np.ndarray) -> float:
    comp = labels == k
    inter = int((comp & other).sum())
    if inter == 0:
        return 0.0
    rest = other & (labels == 0)
    rest_labels, _ = label_raster(rest)
    h, w = labels.shape
    touching = set()
    for y, x in zip(*np.nonzero(comp), strict=True):
        for q in window(h, w, y, x):
            if rest_labels[q]:
                touching.add(int(rest_labels[q]))
    union = int(comp.sum()) + sum(int((rest_labels == t).sum()) for t in touching)
    return inter / union


def component_metrics(probs, ood_mask, gt=None, ood_label=1, void_label=255):
    """{reference key: array} like ``compute_metrics_components`` (float64 accumulation)."""
    c, h, w = probs.shape
    seg = ood_mask.astype(bool)
    if gt is not None:
        seg &= gt != void_label
    marked, n = marked_map(seg)
    labels = np.abs(marked)
    maps = heat(probs)
    pred = np.argmax(probs, axis=0)
    out: dict[str, list[float]] = {}

    def put(key, value):
        out.setdefault(key, []).append(float(value))

    for k in range(1, n + 1):
        comp = labels == k
        inner = marked == k
        bound = marked == -k
        n_all, n_in, n_bd = comp.sum(), inner.sum(), bound.sum()
        s_rel, s_rel_in = n_all / n_bd, n_in / n_bd
        ys, xs = np.nonzero(comp)
        put("mean_x", ys.mean())
        put("mean_y", xs.mean())
        for name, hm in maps.items():
            v = hm.astype(np.float64)
            mean = v[comp].mean()
            mean_in = v[inner].mean() if n_in else 0.0
            mean_bd = v[bound].mean()
            var = (v[comp] ** 2).mean() - mean**2
            var_in = (v[inner] ** 2).mean() - mean_in**2 if n_in else 0.0
            var_bd = (v[bound] ** 2).mean() - mean_bd**2
            for suffix, value in [
                ("", mean), ("_in", mean_in), ("_bd", mean_bd), ("_rel", mean * s_rel),
                ("_rel_in", mean_in * s_rel_in), ("_var", var), ("_var_in", var_in), ("_var_bd", var_bd),
                ("_var_rel", var * s_rel), ("_var_rel_in", var_in * s_rel_in),
            ]:  # fmt: skip
                put(name + suffix, value)
        for key, value in [
            ("S", n_all),
            ("S_in", n_in),
            ("S_bd", n_bd),
            ("S_rel", s_rel),
            ("S_rel_in", s_rel_in),
        ]:
            put(key, value)
        counts = np.zeros(c)
        for y, x in zip(ys, xs, strict=True):
            for q in window(h, w, y, x):
                if not seg[q]:
                    counts[pred[q]] += 1
        for cls in range(c):
            put(f"cprob{cls}", probs[cls][comp].astype(np.float64).mean())
            put(f"ndist{cls}", counts[cls] / max(counts.sum(), 1))
        if gt is not None:
            iou = adjusted_iou(labels, k, gt == ood_label)
            put("iou", iou)
            put("iou0", 1.0 if ((labels == k) & (gt == ood_label)).sum() == 0 else 0.0)
    return {key: np.asarray(v) for key, v in out.items()}, marked
