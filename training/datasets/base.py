"""Shared pieces of the dataset loaders: labels, errors, image reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from meta_ood_perception.errors import InputError

OOD_LABEL = 254  # OoD-proxy pixels in segmentation targets (the loss's ood_label)
VOID_LABEL = 255


class DatasetError(InputError):
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


def paired_files(
    root: Path, split: str, label_folder: str, label_suffix: str, what: str
) -> tuple[list[Path], list[Path]]:
    """Images ``<root>/leftImg8bit/<split>/<sub>/*_leftImg8bit.png`` and their labels
    ``<root>/<label_folder>/<split>/<sub>/*<label_suffix>`` (the Cityscapes layout), sorted.

    Raises:
        DatasetError: a missing folder, no images, or an image without its label file.
    """
    images_dir = require_dir(root / "leftImg8bit" / split, f"{what} image folder")
    labels_dir = require_dir(root / label_folder / split, f"{what} label folder")
    images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise DatasetError(f"no *_leftImg8bit.png images under {images_dir}")
    targets = [labels_dir / p.parent.name / p.name.replace("_leftImg8bit.png", label_suffix) for p in images]
    missing = [t for t in targets if not t.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} {what} label file(s) missing, first: {missing[0]}")
    return images, targets
