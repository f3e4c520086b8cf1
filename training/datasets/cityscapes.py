"""Cityscapes semantic segmentation: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelIds.png``; label ids become train ids through the labels of the
``cityscapesscripts`` package (no preprocessing step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from .base import VOID_LABEL, DatasetError, read_label, read_rgb, require_dir


def _train_id_lut() -> npt.NDArray[np.uint8]:
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, VOID_LABEL, dtype=np.uint8)
    for label in labels:
        if 0 <= label.id < 256 and 0 <= label.trainId < 255:
            lut[label.id] = label.trainId
    return lut


def label_ids_to_train_ids(label_ids: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Map Cityscapes label ids (0…33) to the 19 train ids; everything else becomes 255."""
    return _train_id_lut()[label_ids]


class CityscapesSegmentation:
    """Cityscapes fine annotations of one split ('train', 'val' or 'test'), sorted by file name.

    Raises:
        DatasetError: a missing ``leftImg8bit/<split>`` or ``gtFine/<split>`` folder, no images, or an image
            without its label file.
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        root = Path(root)
        images_dir = require_dir(root / "leftImg8bit" / split, "Cityscapes image folder")
        labels_dir = require_dir(root / "gtFine" / split, "Cityscapes label folder")
        self.images = sorted(images_dir.glob("*/*_leftImg8bit.png"))
        if not self.images:
            raise DatasetError(f"no *_leftImg8bit.png images under {images_dir}")
        self.targets = [
            labels_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png") for p in self.images
        ]
        missing = [t for t in self.targets if not t.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} Cityscapes label file(s) missing, first: {missing[0]}")
        self._lut = _train_id_lut()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB image and (H, W) uint8 train ids (255 = void)."""
        return read_rgb(self.images[index]), self._lut[read_label(self.targets[index])]
