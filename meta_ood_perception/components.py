"""OoD mask and its 8-connected components, numbered and split into interior / boundary like MetaSeg.

Conventions (docs/METRICS.md §3–4):

* A component is a maximal 8-connected set of mask pixels (3×3 neighbourhood, diagonals included).
* Components are numbered 1, 2, … in the raster order (row outer, column inner) of their first pixel.
* A component pixel is a *boundary* pixel iff its 3×3 window, clipped at the image edge, holds a pixel
  outside the mask (not predicted, or void). The image edge itself does not make a boundary.
* The "marked" map holds 0 outside all components, +k on interior and −k on boundary pixels of
  component k, as int32 (the reference's int16 overflows beyond 32,767 components).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from . import _kernels
from .errors import ConfigError, InputError
from .scores import DEFAULT_THRESHOLD

_KERNEL_3X3 = np.ones((3, 3), dtype=np.uint8)


@dataclass(frozen=True)
class Components:
    """Connected components of a binary mask.

    Attributes:
        marked: (H, W) int32; 0 background, +k interior, −k boundary pixel of component k (1-based).
        count: number of components N.

    """

    marked: npt.NDArray[np.int32]
    count: int

    @property
    def labels(self) -> npt.NDArray[np.int32]:
        """(H, W) int32 component id per pixel (0 = background), without the boundary sign."""
        return np.abs(self.marked)


def _as_mask(mask: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D (H, W) mask, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{name} is empty: shape {arr.shape}")
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name} must hold 0/1 values (bool or numeric), got dtype {arr.dtype}")
    is_one = arr == 1
    if not np.logical_or(is_one, arr == 0).all():
        bad = np.unique(arr[~np.logical_or(is_one, arr == 0)])[:5]
        raise InputError(f"{name} must hold only 0 and 1, found values {bad.tolist()}")
    return np.asarray(is_one, dtype=np.bool_)


def ood_mask(
    score: npt.ArrayLike,
    threshold: float = DEFAULT_THRESHOLD,
    valid: npt.ArrayLike | None = None,
) -> npt.NDArray[np.bool_]:
    """OoD mask ``score ≥ threshold`` restricted to the valid region.

    Args:
        score: (H, W) anomaly score a in [0, 1] (see :func:`meta_ood_perception.scores.anomaly_score`).
        threshold: t; pixels with a ≥ t are OoD candidates. Must lie in [0, 1].
        valid: optional (H, W) 0/1 mask of pixels to consider (1 = valid; void is 0).

    Returns:
        (H, W) bool mask.

    Raises:
        InputError: bad shapes or a valid mask that is not 0/1.
        ConfigError: a threshold outside [0, 1].

    """
    a = np.asarray(score)
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"score must be a non-empty (H, W) array, got shape {a.shape}")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must lie in [0, 1], got {threshold}")
    mask = a >= threshold
    if valid is not None:
        v = _as_mask(valid, "valid")
        if v.shape != a.shape:
            raise InputError(f"valid has shape {v.shape} but score has shape {a.shape}")
        mask &= v
    return mask


def label_components(mask: npt.ArrayLike) -> Components:
    """8-connected components of a binary mask, numbered in raster order, with interior/boundary sign.

    Args:
        mask: (H, W) mask, bool or 0/1 numeric. Any size (no 16-bit limits).

    Returns:
        :class:`Components` with the signed ``marked`` map and the component count.

    Raises:
        InputError: not 2-D, empty, or values other than 0/1.

    """
    seg = _as_mask(mask, "mask").view(np.uint8)
    labels, count = raster_labels(seg)
    _kernels.sign_boundaries(labels, eroded_mask(seg))
    return Components(marked=labels, count=count)


def raster_labels(seg: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int32], int]:
    """Unsigned 8-connected component ids of a C-contiguous (H, W) uint8 0/1 mask, in raster order.

    Returns the (H, W) int32 id map (0 = background) and the number of components.
    """
    # CCL_WU (SAUF) is the OpenCV algorithm that numbers labels in raster order of first pixels.
    n_labels, labels = cv2.connectedComponentsWithAlgorithm(seg, 8, cv2.CV_32S, cv2.CCL_WU)
    return np.ascontiguousarray(labels, dtype=np.int32), int(n_labels) - 1


def boundary_mask(mask: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Mask pixels whose clipped 3×3 window holds a non-mask pixel.

    Args:
        mask: (H, W) bool or 0/1 mask.

    Returns:
        (H, W) bool, True on boundary pixels of the mask.

    """
    seg = _as_mask(mask, "mask").view(np.uint8)
    return seg > eroded_mask(seg)


def eroded_mask(seg: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(H, W) uint8 3×3 erosion of a 0/1 mask; pixels outside the image count as inside the mask.

    A mask pixel is a boundary pixel iff its erosion is 0: the image edge never makes a boundary.
    """
    return np.asarray(cv2.erode(seg, _KERNEL_3X3, borderType=cv2.BORDER_CONSTANT, borderValue=1), dtype=np.uint8)
