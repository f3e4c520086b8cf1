"""The 75 MetaSeg component metrics (prediction side) and the ground-truth-side metrics.

Definitions, column order and numerics follow the research code (JuricaRuntas/meta-ood @ 8c20194,
``compute_metrics_components`` / ``compute_metrics_mask``); docs/METRICS.md lists them and every
deliberate deviation:

* sums are accumulated in float64 from float32 per-pixel heat-map values, as in the authors' numpy-1 run
  (the numpy-2 run of the reference accumulates in float32; differences are within the tolerances of
  docs/METRICS.md);
* component ids are int32, so more than 32,767 components and images wider than 65,535 px work;
* a component without boundary pixels (it covers the whole image) divides by ``max(n_bd, 1)`` instead of
  raising ``ZeroDivisionError``: its boundary means and variances are 0, ``S_rel = S``, ``S_rel_in = S_in``.

Cost grows with the number of component pixels, not with H·W, apart from one validating read of ``probs``
(``validate=False`` skips it).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from . import _kernels
from .components import _as_mask, eroded_mask, label_components, raster_labels
from .errors import ConfigError, InputError
from .pixel_pass import Frame, pixel_sums
from .scores import as_probs_array
from .stopwatch import Stopwatch

N_CLASSES_REFERENCE = 19
_HEAT_MAPS = ("E", "D", "V")
_HEAT_SUFFIXES = (
    "",
    "_in",
    "_bd",
    "_rel",
    "_rel_in",
    "_var",
    "_var_in",
    "_var_bd",
    "_var_rel",
    "_var_rel_in",
)
_KERNEL_3X3 = np.ones((3, 3), dtype=np.uint8)


def feature_names(n_classes: int = N_CLASSES_REFERENCE) -> list[str]:
    """The input-metric names in the reference's column order: ``sorted`` of the keys (code-point order).

    With 19 classes these are the 75 columns of ``metrics_to_dataset``: ``D, D_bd, …, cprob0, cprob1,
    cprob10, …, mean_x, mean_y, ndist0, …``.
    """
    names = [h + suffix for h in _HEAT_MAPS for suffix in _HEAT_SUFFIXES]
    names += ["S", "S_in", "S_bd", "S_rel", "S_rel_in", "mean_x", "mean_y"]
    names += [f"cprob{c}" for c in range(n_classes)] + [f"ndist{c}" for c in range(n_classes)]
    return sorted(names)


def reference_keys(n_classes: int = N_CLASSES_REFERENCE) -> list[str]:
    """All keys of the reference's ``compute_metrics_components`` dict, in its insertion order."""
    keys = ["iou", "iou0", "prc", "mean_x", "mean_y"]
    keys += [h + suffix for h in _HEAT_MAPS for suffix in _HEAT_SUFFIXES]
    keys += ["S", "S_in", "S_bd", "S_rel", "S_rel_in"]
    for c in range(n_classes):
        keys += [f"cprob{c}", f"ndist{c}"]
    return keys


#: The 75 feature names for Cityscapes' 19 train ids, in column order.
FEATURE_NAMES: tuple[str, ...] = tuple(feature_names())


@dataclass(frozen=True)
class ComponentMetrics:
    """Metrics of the predicted OoD components of one frame.

    Attributes:
        names: feature names in column order (75 for 19 classes), see :func:`feature_names`.
        features: (N, len(names)) float64, one row per component in raster order of first pixels.
        components: (H, W) int32, 0 background, +k interior, −k boundary pixel of component k.
        iou: (N,) float64 adjusted IoU with the ground-truth OoD region, or None without ``gt``.
        iou0: (N,) float64, 1.0 where iou = 0 (false-positive component: the meta-classification target),
            or None without ``gt``.

    """

    names: list[str]
    features: npt.NDArray[np.float64]
    components: npt.NDArray[np.int32]
    iou: npt.NDArray[np.float64] | None = None
    iou0: npt.NDArray[np.float64] | None = None

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """(N,) float64 values of one feature; raises KeyError for an unknown name."""
        try:
            return self.features[:, self.names.index(name)]
        except ValueError:
            raise KeyError(f"unknown metric {name!r}; known: {', '.join(self.names)}") from None

    def to_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        """{reference key: (N,) float64} for all keys of the reference dict, in its order.

        Without ground truth, ``iou`` and ``iou0`` are −1 (as the reference); ``prc`` is always 0.
        """
        n = len(self)
        unknown = np.full(n, -1.0)
        extra = {
            "iou": self.iou if self.iou is not None else unknown,
            "iou0": self.iou0 if self.iou0 is not None else unknown.copy(),
            "prc": np.zeros(n),
        }
        n_classes = sum(name.startswith("cprob") for name in self.names)
        return {key: extra[key] if key in extra else self.column(key).copy() for key in reference_keys(n_classes)}


@dataclass(frozen=True)
class GroundTruthMetrics:
    """Metrics of the ground-truth OoD components (connected components of ``gt == ood_label``).

    Attributes:
        components: (H, W) int32 signed map of the ground-truth components, as in :class:`ComponentMetrics`.
        iou: (N,) float64 adjusted IoU with the predicted OoD region.
        iou0: (N,) float64, 1.0 where the object is missed completely (false negative).
        rec: (N,) float64 fraction of the object's pixels that are predicted OoD.
        mean_x: (N,) float64 mean row index; mean_y: (N,) mean column index (the reference's naming).
        S, S_in, S_bd: (N,) float64 pixel counts (all, interior, boundary).
        class_pixels: (N, C) float64 number of pixels per predicted (argmax) class.
        class_probs: (N, C) float64 mean class probabilities.
        label_class: (N,) float64 ``gt_label`` at each component's first raster pixel, or None.

    """

    components: npt.NDArray[np.int32]
    iou: npt.NDArray[np.float64]
    iou0: npt.NDArray[np.float64]
    rec: npt.NDArray[np.float64]
    mean_x: npt.NDArray[np.float64]
    mean_y: npt.NDArray[np.float64]
    S: npt.NDArray[np.float64]
    S_in: npt.NDArray[np.float64]
    S_bd: npt.NDArray[np.float64]
    class_pixels: npt.NDArray[np.float64]
    class_probs: npt.NDArray[np.float64]
    label_class: npt.NDArray[np.float64] | None = field(default=None)

    def __len__(self) -> int:
        return int(self.S.shape[0])

    def to_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        """{reference key: (N,) float64}: iou, iou0, rec, train_class (always 255), label_class (when
        ``gt_label`` was given), mean_x, mean_y, S, S_in, S_bd, then S_<c>, cprob<c> per class.
        """
        out: dict[str, npt.NDArray[np.float64]] = {
            "iou": self.iou,
            "iou0": self.iou0,
            "rec": self.rec,
            "train_class": np.full(len(self), 255.0),
        }
        if self.label_class is not None:
            out["label_class"] = self.label_class
        out.update(mean_x=self.mean_x, mean_y=self.mean_y, S=self.S, S_in=self.S_in, S_bd=self.S_bd)
        for c in range(self.class_probs.shape[1]):
            out[f"S_{c}"] = self.class_pixels[:, c]
            out[f"cprob{c}"] = self.class_probs[:, c]
        return out


# --------------------------------------------------------------------------------------------------------------
# input checks


def _probs_array(probs: Any) -> npt.NDArray[np.float32]:
    return as_probs_array(_to_numpy(probs))


def _to_numpy(x: Any) -> Any:
    if type(x).__module__.split(".")[0] == "torch":
        x = x.detach()
        if x.is_floating_point() and str(x.dtype) not in ("torch.float32", "torch.float64"):
            x = x.float()  # bfloat16 has no numpy counterpart
        return x.cpu().numpy()
    return x


def _mask_like(mask: Any, name: str, shape: tuple[int, int]) -> npt.NDArray[np.bool_]:
    m = _as_mask(_to_numpy(mask), name)
    if m.shape != shape:
        raise InputError(f"{name} has shape {m.shape} but probs has spatial shape {shape}")
    return m


def _label_map(gt: Any, shape: tuple[int, int], name: str = "gt") -> npt.NDArray[np.integer[Any]]:
    arr = np.asarray(_to_numpy(gt))
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) label map, got shape {arr.shape}")
    if arr.shape != shape:
        raise InputError(f"{name} has shape {arr.shape} but probs has spatial shape {shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise InputError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr


def _check_labels(ood_label: int, void_label: int) -> None:
    if ood_label == void_label:
        raise ConfigError(f"ood_label and void_label must differ, both are {ood_label}")


# --------------------------------------------------------------------------------------------------------------
# shared geometry


def _adjusted_iou(
    marked: npt.NDArray[np.int32],
    sizes: npt.NDArray[np.float64],
    other: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """MetaSeg's adjusted IoU of each component of ``marked`` ((H, W) int32 ids, signed or not) with ``other``.

    I = |K ∩ other|; U = |K| + |L|, L = the 8-components of ``other`` outside all components that touch K's
    3×3 neighbourhood. ``sizes`` are the (K,) component sizes. Returns (iou, I), both (K,) float64; iou = 0
    where I = 0.
    """
    count = len(sizes)
    inside = marked != 0
    inter = np.bincount(np.abs(marked[other]), minlength=count + 1)[1:].astype(np.float64)
    near = np.flatnonzero(cv2.dilate(inside.view(np.uint8), _KERNEL_3X3).view(np.bool_) & other & ~inside)
    rest = np.array(other, dtype=np.uint8).reshape(-1)  # consumed by the kernel
    return _iou_from_parts(marked, rest, sizes, inter, near)


def _iou_from_parts(
    marked: npt.NDArray[np.int32],
    other: npt.NDArray[np.uint8],
    sizes: npt.NDArray[np.float64],
    inter: npt.NDArray[np.float64],
    near: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(iou, I) from the (K,) sizes and intersections and the ``near`` pixels of the (H·W,) uint8 set ``other``,
    which is consumed (see :func:`_kernels.touched_areas`)."""
    count = len(inter)
    extra = np.zeros(count + 1)
    _kernels.touched_areas(marked, other, near, extra)
    union = sizes + extra[1:]
    iou = np.divide(inter, union, out=np.zeros(count), where=inter > 0)
    return iou, inter


def _check_sums(p: npt.NDArray[np.float32], sum_tolerance: float) -> None:
    """Raise InputError naming the first pixel whose probabilities are not finite, ≥ 0 and summing to 1.

    Runs only when the gather kernel flagged a band; the sums are the kernel's (float32, class order).
    """
    total = np.add.reduce(p, axis=0).astype(np.float64)
    total_abs = np.add.reduce(np.abs(p), axis=0).astype(np.float64)
    # Negative entries make Σ|p| exceed Σp; NaN fails every comparison.
    bad = ~((total >= 1.0 - sum_tolerance) & (total_abs <= 1.0 + sum_tolerance))
    if not bad.any():
        return  # the band held −0.0 (a set sign bit) and nothing else wrong
    first = int(np.flatnonzero(bad)[0])
    y, x = divmod(first, p.shape[2])
    raise InputError(
        f"probs must be finite, non-negative and sum to 1 over classes (±{sum_tolerance}): "
        f"{int(bad.sum())} pixel(s) fail, first at (row {y}, col {x}) "
        f"with sum {total.flat[first]:.6g} and values {p[:, y, x][:4].tolist()}..."
    )


# --------------------------------------------------------------------------------------------------------------
# public API


def component_metrics(
    probs: Any,
    ood_mask: Any,
    gt: Any = None,
    *,
    ood_label: int = 1,
    void_label: int = 255,
    valid: Any = None,
    validate: bool = True,
    sum_tolerance: float = 1e-3,
    timings_ms: dict[str, float] | None = None,
) -> ComponentMetrics:
    """The 75 MetaSeg metrics of every 8-connected component of the OoD mask.

    Args:
        probs: (C, H, W) softmax probabilities, floating (computed from float32), numpy array or torch tensor
            (copied to the host). Each pixel must be finite, non-negative and sum to 1 within
            ``sum_tolerance``.
        ood_mask: (H, W) 0/1 (or bool) mask of predicted OoD pixels, e.g. ``anomaly_score(probs) >= 0.7``.
        gt: optional (H, W) integer ground truth: ``ood_label`` = OoD, ``void_label`` = void (outside the
            region of interest), anything else in-distribution. Void pixels are removed from the
            prediction; with ``gt`` the adjusted IoU and the false-positive target are computed.
        ood_label: value of OoD pixels in ``gt``.
        void_label: value of void pixels in ``gt``.
        valid: optional (H, W) 0/1 mask of the region of interest (0 acts like void), usable without ``gt``.
        validate: check finiteness and Σ_c p_c = 1 (one read of ``probs``); False skips it.
        sum_tolerance: allowed |Σ_c p_c − 1| per pixel.
        timings_ms: if given, receives the wall time in milliseconds of each internal stage
            (``components``, ``gather``, ``log``, ``accumulate``, ``assemble``, ``iou``).

    Returns:
        :class:`ComponentMetrics` with N rows in raster order of the components' first pixels.

    Raises:
        InputError: naming the argument: wrong number of dimensions, shapes that disagree, non-floating
            probabilities, NaN/inf or probabilities that do not sum to 1, empty images, masks other than
            0/1, non-integer ground truth.
        ConfigError: equal ood/void labels, a sum_tolerance that is not positive.

    """
    p = _probs_array(probs)
    n_classes, height, width = p.shape
    shape = (height, width)
    seg = _mask_like(ood_mask, "ood_mask", shape)
    if not sum_tolerance > 0:
        raise ConfigError(f"sum_tolerance must be positive, got {sum_tolerance}")
    gt_arr = None
    if gt is not None:
        _check_labels(ood_label, void_label)
        gt_arr = _label_map(gt, shape)
        seg = seg & (gt_arr != void_label)
    valid_mask = None
    if valid is not None:
        valid_mask = _mask_like(valid, "valid", shape)
        seg = seg & valid_mask

    clock = Stopwatch()
    seg_u8 = np.ascontiguousarray(seg).view(np.uint8)
    marked, count = raster_labels(seg_u8)  # signed in place by the gather kernel
    touch = cv2.dilate(seg_u8, _KERNEL_3X3) if count else np.zeros(shape, np.uint8)
    eroded = eroded_mask(seg_u8)
    row_offsets = np.zeros(height + 1, dtype=np.int64)
    np.cumsum(cv2.reduce(seg_u8, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel(), out=row_offsets[1:])
    n_px = int(row_offsets[-1])
    clock.lap("components")

    truth = np.zeros(1, dtype=np.uint8)  # a placeholder without ground truth
    if gt_arr is not None:
        truth_mask = gt_arr == ood_label  # never void: ood_label != void_label
        if valid_mask is not None:
            truth_mask &= valid_mask  # outside the valid region nothing is ground-truth OoD, as for void
        truth = truth_mask.reshape(-1).view(np.uint8)
    frame = Frame(
        probs=p.reshape(n_classes, height * width),
        marked=marked,
        eroded=eroded,
        touch=np.asarray(touch, dtype=np.uint8).reshape(-1),
        other=truth,
        has_other=gt_arr is not None,
        validate=validate,
        lo=1.0 - float(sum_tolerance),
        hi=1.0 + float(sum_tolerance),
        log_inv_c=np.float32(math.log(1.0 / n_classes)),
    )
    n_ring = int(cv2.countNonZero(touch)) - n_px if frame.has_other else 0
    sums = pixel_sums(frame, row_offsets, count, n_ring)
    clock.lap("pixels")
    if sums.suspect:
        _check_sums(p, sum_tolerance)
    totals = sums.acc[1:]
    neighbours = sums.ndist[1:].astype(np.float64)
    features = _assemble_features(totals, neighbours, n_classes)
    clock.lap("assemble")

    iou = iou0 = None
    if frame.has_other:
        sizes = totals[:, _kernels.ACC_N_IN] + totals[:, _kernels.ACC_N_BD]
        iou, inter = _iou_from_parts(marked, truth, sizes, totals[:, _kernels.ACC_INTER].copy(), sums.near)
        iou0 = (inter == 0).astype(np.float64)
        clock.lap("iou")
    if timings_ms is not None:
        timings_ms.update(clock.timings_ms)
    return ComponentMetrics(feature_names(n_classes), features, marked, iou, iou0)


def _assemble_features(
    totals: npt.NDArray[np.float64], neighbours: npt.NDArray[np.float64], n_classes: int
) -> npt.NDArray[np.float64]:
    """(N, n_acc) per-component sums + (N, C) neighbour counts → (N, n_features) in column order."""
    k = _kernels
    n_in = totals[:, k.ACC_N_IN]
    n_bd = totals[:, k.ACC_N_BD]
    n = n_in + n_bd
    has_in = n_in > 0
    n_in_safe = np.maximum(n_in, 1.0)
    n_bd_safe = np.maximum(n_bd, 1.0)  # only a whole-image component has no boundary (documented fix)
    s_rel = n / n_bd_safe
    s_rel_in = n_in / n_bd_safe
    cols: dict[str, npt.NDArray[np.float64]] = {
        "S": n,
        "S_in": n_in,
        "S_bd": n_bd,
        "S_rel": s_rel,
        "S_rel_in": s_rel_in,
        "mean_x": totals[:, k.ACC_SUM_ROW] / n,
        "mean_y": totals[:, k.ACC_SUM_COL] / n,
    }
    for j, h in enumerate(_HEAT_MAPS):
        sum_in, sq_in = totals[:, k.ACC_HEAT + 2 * j], totals[:, k.ACC_HEAT + 2 * j + 1]
        sum_bd, sq_bd = totals[:, k.ACC_HEAT + 6 + 2 * j], totals[:, k.ACC_HEAT + 7 + 2 * j]
        mean = (sum_in + sum_bd) / n
        mean_in = np.where(has_in, sum_in / n_in_safe, 0.0)
        mean_bd = sum_bd / n_bd_safe
        var = (sq_in + sq_bd) / n - mean**2
        var_in = np.where(has_in, sq_in / n_in_safe - mean_in**2, 0.0)
        var_bd = np.where(n_bd > 0, sq_bd / n_bd_safe - mean_bd**2, 0.0)
        cols.update(
            {
                h: mean,
                h + "_in": mean_in,
                h + "_bd": mean_bd,
                h + "_var": var,
                h + "_var_in": var_in,
                h + "_var_bd": var_bd,
                h + "_rel": mean * s_rel,
                h + "_rel_in": mean_in * s_rel_in,
                h + "_var_rel": var * s_rel,
                h + "_var_rel_in": var_in * s_rel_in,
            }
        )
    cprob = totals[:, k.ACC_CPROB : k.ACC_CPROB + n_classes] / n[:, None]
    ndist = neighbours / np.maximum(neighbours.sum(axis=1, keepdims=True), 1.0)
    for c in range(n_classes):
        cols[f"cprob{c}"] = cprob[:, c]
        cols[f"ndist{c}"] = ndist[:, c]
    names = feature_names(n_classes)
    if not len(n):
        return np.zeros((0, len(names)), dtype=np.float64)
    return np.stack([cols[name] for name in names], axis=1)


def ground_truth_metrics(
    probs: Any,
    ood_mask: Any,
    gt: Any,
    *,
    ood_label: int = 1,
    void_label: int = 255,
    gt_label: Any = None,
) -> GroundTruthMetrics:
    """Metrics of the ground-truth OoD objects: how well each is covered by the predicted OoD mask.

    Args:
        probs: (C, H, W) class probabilities (numpy or torch), as for :func:`component_metrics`.
        ood_mask: (H, W) 0/1 predicted OoD mask.
        gt: (H, W) integer ground truth with ``ood_label`` = OoD and ``void_label`` = void.
        ood_label: value of OoD pixels in ``gt``.
        void_label: value of void pixels in ``gt``.
        gt_label: optional (H, W) integer instance / class ids (LostAndFound style); each component takes the
            id at its first raster pixel as ``label_class``.

    Returns:
        :class:`GroundTruthMetrics` with one row per 8-connected component of ``gt == ood_label``.

    Raises:
        InputError: as for :func:`component_metrics` (finiteness and sums are not checked here).

    """
    p = _probs_array(probs)
    n_classes, height, width = p.shape
    shape = (height, width)
    _check_labels(ood_label, void_label)
    seg = _mask_like(ood_mask, "ood_mask", shape)
    gt_arr = _label_map(gt, shape)
    labels_arr = _label_map(gt_label, shape, "gt_label") if gt_label is not None else None

    truth = gt_arr == ood_label
    predicted = seg & (gt_arr != void_label)
    comps = label_components(truth)
    count = comps.count
    labels = comps.labels
    ys, xs = np.nonzero(truth)
    lab = labels[ys, xs]
    boundary = comps.marked[ys, xs] < 0
    S = np.bincount(lab, minlength=count + 1)[1:].astype(np.float64)
    S_bd = np.bincount(lab[boundary], minlength=count + 1)[1:].astype(np.float64)
    mean_x = np.bincount(lab, weights=ys, minlength=count + 1)[1:] / np.maximum(S, 1)
    mean_y = np.bincount(lab, weights=xs, minlength=count + 1)[1:] / np.maximum(S, 1)
    gathered = p[:, ys, xs]
    class_probs = (
        np.stack([np.bincount(lab, weights=gathered[c], minlength=count + 1)[1:] for c in range(n_classes)], axis=1)
        / np.maximum(S, 1)[:, None]
    )
    pred = np.argmax(gathered, axis=0) if len(lab) else np.zeros(0, np.int64)
    class_pixels = (
        np.bincount(lab * n_classes + pred, minlength=(count + 1) * n_classes)
        .reshape(count + 1, n_classes)[1:]
        .astype(np.float64)
    )
    iou, inter = _adjusted_iou(comps.marked, S, predicted)
    label_class = None
    if labels_arr is not None:
        _, first = np.unique(lab, return_index=True)
        label_class = labels_arr[ys[first], xs[first]].astype(np.float64)
    return GroundTruthMetrics(
        components=comps.marked,
        iou=iou,
        iou0=(inter == 0).astype(np.float64),
        rec=inter / np.maximum(S, 1),
        mean_x=mean_x,
        mean_y=mean_y,
        S=S,
        S_in=S - S_bd,
        S_bd=S_bd,
        class_pixels=class_pixels,
        class_probs=class_probs,
        label_class=label_class,
    )


def compile_kernels() -> float:
    """Compile every metric kernel now (or load it from numba's on-disk cache) by running the metrics once on a
    tiny synthetic frame, so that the first real frame is not slow.

    The first compilation after an install or an upgrade takes about :data:`_kernels.COMPILE_SECONDS` seconds and
    logs one INFO line; later processes load the cached kernels (well under a second). Run it at install time::

        python -c "from meta_ood_perception.metrics import compile_kernels; compile_kernels()"

    Returns:
        The wall time it took, in seconds.

    """
    start = time.perf_counter()
    probs = np.full((3, 8, 12), 1.0 / 3.0, dtype=np.float32)
    mask = np.zeros((8, 12), dtype=bool)
    mask[2:6, 2:6] = True
    mask[1, 9] = True
    gt = np.zeros((8, 12), dtype=np.uint8)
    gt[3:7, 4:9] = 1
    component_metrics(probs, mask, gt)
    ground_truth_metrics(probs, mask, gt)
    label_components(mask)
    return time.perf_counter() - start
