"""Pixel heat maps from softmax probabilities: anomaly score, entropy E, margin D, variation ratio V, argmax.

Every function takes ``probs`` of shape (C, H, W) (or (B, C, H, W) for torch tensors) holding per-pixel
class probabilities, and works on numpy arrays and on torch tensors. Torch tensors are processed on their
own device (a GPU node never copies full probability maps to the host); torch is only imported when a
tensor is passed in.

Definitions follow the research code (docs/METRICS.md):

* anomaly score ``a`` (the OoD-mask score): Shannon entropy of the renormalized probability vector with
  ``0·log 0 = 0``, divided by ``log C``; in [0, 1].
* ``E`` (metric heat map): ``Σ_c p_c·log(p_c + ε) / log(1/C)`` with ε = float32 machine epsilon, summed over
  classes in float32, in class order, no renormalization.
* ``D`` = 1 − p(1) + p(2) (probability margin), ``V`` = 1 − p(1) (variation ratio), p(1) ≥ p(2) the two
  largest class probabilities, evaluated in float64 and stored as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .errors import InputError

#: float32 machine epsilon, the ε inside the log of the E heat map.
EPS_F32 = np.float32(np.finfo(np.float32).eps)

#: Default anomaly threshold t of the paper: pixels with a ≥ t form OoD components.
DEFAULT_THRESHOLD = 0.7


@dataclass(frozen=True)
class Heatmaps:
    """Per-pixel uncertainty heat maps of one frame.

    Attributes:
        entropy: E, (H, W) float32 in [0, 1] (up to ε effects), normalized entropy as in the metrics.
        margin: D, (H, W) float32 in [0, 1], 1 − p(1) + p(2).
        variation: V, (H, W) float32 in [0, 1 − 1/C], 1 − p(1).
        argmax: (H, W) int64 predicted class (first maximum on ties).

    For torch input the fields are tensors on the input's device (with a leading batch axis if the input
    had one).

    """

    entropy: Any
    margin: Any
    variation: Any
    argmax: Any


def _is_torch(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def as_probs_array(probs: object) -> npt.NDArray[np.float32]:
    """Validate the layout of a (C, H, W) numpy probability array; return it as C-contiguous float32.

    Raises:
        InputError: not a numpy array, not 3-D, not floating point, fewer than 2 classes, empty image.
    """
    if not isinstance(probs, np.ndarray):
        raise InputError(f"probs must be a numpy array or torch tensor, got {type(probs).__name__}")
    if probs.ndim != 3:
        raise InputError(f"probs must have shape (C, H, W), got shape {probs.shape}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise InputError(f"probs must be floating point probabilities, got dtype {probs.dtype}")
    if probs.shape[0] < 2:
        raise InputError(f"probs needs at least 2 classes on axis 0, got shape {probs.shape}")
    if probs.shape[1] == 0 or probs.shape[2] == 0:
        raise InputError(f"probs is an empty image: shape {probs.shape}")
    return np.ascontiguousarray(probs, dtype=np.float32)


def _check_probs_torch(probs: Any) -> Any:
    if probs.ndim not in (3, 4):
        raise InputError(f"probs must have shape (C, H, W) or (B, C, H, W), got shape {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise InputError(f"probs must be floating point probabilities, got dtype {probs.dtype}")
    cdim = probs.ndim - 3
    if probs.shape[cdim] < 2:
        raise InputError(f"probs needs at least 2 classes, got shape {tuple(probs.shape)}")
    if probs.numel() == 0:
        raise InputError(f"probs is an empty image: shape {tuple(probs.shape)}")
    return probs.float()


def anomaly_score(probs: Any) -> Any:
    """Anomaly score a = entropy(softmax) / log C used for the OoD mask.

    Args:
        probs: (C, H, W) numpy array or (C, H, W) / (B, C, H, W) torch tensor of class probabilities
            (any floating dtype; computed in float32). Each pixel's vector is renormalized to sum to 1.

    Returns:
        (H, W) (or (B, H, W)) float32 array / tensor in [0, 1].

    Raises:
        InputError: wrong number of dimensions, non-floating dtype, fewer than 2 classes, empty image.

    """
    if _is_torch(probs):
        import torch

        p = _check_probs_torch(probs)
        cdim = p.ndim - 3
        q = p / p.sum(dim=cdim, keepdim=True)
        h = torch.special.entr(q).sum(dim=cdim)
        return h / math.log(p.shape[cdim])
    p = as_probs_array(probs)
    n_classes = p.shape[0]
    total = np.zeros(p.shape[1:], dtype=np.float32)
    for plane in p:
        total += plane
    h = np.zeros_like(total)
    q = np.empty_like(total)
    logq = np.empty_like(total)
    inv_total = np.float32(1.0) / total
    tiny = np.float32(np.finfo(np.float32).tiny)
    for plane in p:
        np.multiply(plane, inv_total, out=q)
        # 0·log 0 = 0: log is evaluated on max(q, tiny) so that q = 0 contributes exactly 0. OpenCV's log is
        # ~5× faster than numpy's float32 log here and agrees to ~1e-7; the mask only needs a ≥ t.
        np.maximum(q, tiny, out=logq)
        cv2.log(logq, dst=logq)
        np.multiply(q, logq, out=logq)
        h -= logq
    h *= np.float32(1.0 / math.log(n_classes))
    return h


def entropy_map(probs: Any) -> Any:
    """Heat map E: Σ_c p_c·log(p_c + ε) / log(1/C), float32, bit-identical to the research code (numpy 1).

    Args:
        probs: (C, H, W) numpy array or (C, H, W) / (B, C, H, W) torch tensor of class probabilities.

    Returns:
        (H, W) (or (B, H, W)) float32 in [0, 1] (up to ε effects).

    Raises:
        InputError: as for :func:`anomaly_score`.

    """
    if _is_torch(probs):
        p = _check_probs_torch(probs)
        cdim = p.ndim - 3
        n_classes = p.shape[cdim]
        return (p * (p + float(EPS_F32)).log()).sum(dim=cdim) / math.log(1.0 / n_classes)
    p = as_probs_array(probs)
    acc = np.zeros(p.shape[1:], dtype=np.float32)
    tmp = np.empty_like(acc)
    for plane in p:  # class order, float32: the reference's summation order
        np.add(plane, EPS_F32, out=tmp)
        np.log(tmp, out=tmp)
        np.multiply(plane, tmp, out=tmp)
        acc += tmp
    acc /= np.float32(math.log(1.0 / p.shape[0]))
    return acc


def heatmaps(probs: Any) -> Heatmaps:
    """All metric heat maps of one frame: E, D, V and the argmax.

    Args:
        probs: (C, H, W) numpy array or (C, H, W) / (B, C, H, W) torch tensor of class probabilities.

    Returns:
        :class:`Heatmaps` with numpy arrays, or torch tensors on the input's device.

    Raises:
        InputError: as for :func:`anomaly_score`.

    """
    entropy = entropy_map(probs)
    if _is_torch(probs):
        p = _check_probs_torch(probs)
        cdim = p.ndim - 3
        top2 = p.topk(2, dim=cdim).values
        p1 = top2.select(cdim, 0).double()
        p2 = top2.select(cdim, 1).double()
        margin = (1.0 - p1 + p2).float()
        variation = (1.0 - p1).float()
        return Heatmaps(entropy, margin, variation, p.argmax(dim=cdim))
    p = as_probs_array(probs)
    p1 = np.full(p.shape[1:], -np.inf, dtype=np.float32)
    p2 = p1.copy()
    lower = np.empty_like(p1)
    for plane in p:
        np.minimum(p1, plane, out=lower)
        np.maximum(p2, lower, out=p2)
        np.maximum(p1, plane, out=p1)
    p1_64 = p1.astype(np.float64)
    margin = (1.0 - p1_64 + p2).astype(np.float32)
    variation = (1.0 - p1_64).astype(np.float32)
    return Heatmaps(entropy, margin, variation, np.argmax(p, axis=0))
