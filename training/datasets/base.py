"""Shared pieces of the dataset loaders: labels, errors, image reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

OOD_LABEL = 254  # OoD-proxy pixels in segmentation targets (the loss's ood_label)
VOID_LABEL = 255


class DatasetError(FileNotFoundError):
    """A dataset folder or file that is missing or unreadable; the message names it."""


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else :class:`DatasetError` naming ``what`` and the path."""
    if not path.is_dir():
        raise DatasetError(f"{what} not found: {path}")
    return path


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB image."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"image not found: {path}") from None
    except OSError as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err


def read_label(path: Path) -> npt.NDArray[np.uint8]:
    """(H, W) uint8 label image (single channel)."""
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except FileNotFoundError:
        raise DatasetError(f"label image not found: {path}") from None
    except OSError as err:
        raise DatasetError(f"cannot read label image {path}: {err}") from err
    if arr.ndim != 2:
        raise DatasetError(f"label image {path} must have one channel, got shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)
