"""Frame checks, network input and back to the camera's resolution — exactly as the models are trained.

Pre-processing (training: ``meta_ood_training.default_bundle`` / ``ood_training``): an (H, W, 3) uint8 **RGB** frame
is resized to the bundle's input size (``cv2.INTER_AREA`` when shrinking — anti-aliased, ``cv2.INTER_LINEAR`` when
enlarging; unchanged when the size already matches), scaled to [0, 1] (``pixel / 255``), centred with the bundle's
RGB ``mean`` and divided by its ``std``, and laid out as a (1, 3, h, w) float32 NCHW tensor.

Post-processing: the network's (C, h, w) logits are resized bilinearly (half-pixel centres, the same as
``torch.nn.functional.interpolate(..., mode="bilinear", align_corners=False)``) to the frame's native (H, W) and a
float32 softmax over classes gives the (C, H, W) probabilities every later stage works on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .errors import FaultError, InputError

#: Largest frame side accepted (pixels): bigger "images" are corrupt headers, not cameras.
MAX_SIDE = 16_384
#: Largest frame, pixels (8K UHD is 33 M): decoding, copying and resizing bigger "frames" costs seconds and gigabytes.
MAX_PIXELS = 36_000_000


def check_frame(image: Any) -> npt.NDArray[np.uint8]:
    """Validate one camera frame; returns it as a C-contiguous (H, W, 3) uint8 array.

    Raises:
        InputError: not an array, empty, not (H, W, 3), not uint8 (with a note on NaN / inf for float data), or a
            side larger than :data:`MAX_SIDE` or more than :data:`MAX_PIXELS` pixels.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}")
    if image.size == 0:
        raise InputError(f"frame is empty (shape {image.shape})")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"frame must have shape (H, W, 3) RGB, got {image.shape}")
    if image.dtype != np.uint8:
        note = ""
        if np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
            note = " (it also holds NaN / inf values)"
        raise InputError(f"frame must be uint8 RGB, got dtype {image.dtype}{note}")
    if max(image.shape[:2]) > MAX_SIDE:
        raise InputError(f"frame of {image.shape[0]}×{image.shape[1]} pixels exceeds the {MAX_SIDE}-pixel limit")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise InputError(f"frame of {image.shape[0]}×{image.shape[1]} pixels exceeds the {MAX_PIXELS}-pixel limit")
    return np.ascontiguousarray(image)


def resize_image(image: npt.NDArray[np.uint8], size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """Resize an (H, W, 3) frame to ``size`` = (height, width) with the policy of the module docstring."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return np.asarray(cv2.resize(image, (width, height), interpolation=interpolation), dtype=np.uint8)


def to_network_input(
    image: npt.NDArray[np.uint8],
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> npt.NDArray[np.float32]:
    """(1, 3, h, w) float32 normalized network input of an (H, W, 3) uint8 RGB frame (``size`` = (h, w))."""
    resized = resize_image(image, size).astype(np.float32)
    scale = np.float32(1.0 / 255.0)
    mean_ = np.asarray(mean, np.float32)
    inv_std = (1.0 / np.asarray(std, np.float64)).astype(np.float32)
    normalized = (resized * scale - mean_) * inv_std
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None])


def resize_maps(maps: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear (half-pixel centres) resize of (C, h, w) float32 maps to (C, H, W); a no-op at equal size."""
    height, width = size
    if maps.shape[1:] == (height, width):
        return maps
    out = np.empty((maps.shape[0], height, width), np.float32)
    for channel, plane in enumerate(maps):  # per plane into its slot: no HWC transposes (those cost 3× the resize)
        cv2.resize(np.ascontiguousarray(plane), (width, height), dst=out[channel], interpolation=cv2.INTER_LINEAR)
    return out


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Softmax over axis 0 of (C, H, W) float32 logits (max-subtracted), float32 out."""
    shifted: npt.NDArray[np.float32] = logits - logits.max(axis=0, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=0, keepdims=True)
    return shifted


def logits_to_probs(logits: npt.NDArray[np.float32], size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """(C, h, w) logits → (C, H, W) float32 probabilities at ``size`` (the pipeline's metric grid); non-finite logits
    raise :class:`~.errors.FaultError` (the network failed on this frame)."""
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).sum())
        raise FaultError(f"network output holds {bad} non-finite logits (NaN / inf)")
    probs: npt.NDArray[np.float32] = softmax(resize_maps(np.asarray(logits, np.float32), size))
    return probs
