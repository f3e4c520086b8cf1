"""Cityscapes semantic segmentation: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelIds.png``; label ids become train ids through the labels of the
``cityscapesscripts`` package (no preprocessing step)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from .base import VOID_LABEL, paired_files, read_label, read_rgb

#: Names of the 19 Cityscapes train ids 0…18, in train-id order (the output classes of every 19-class network of
#: this project: the synthetic world paints them, ``meta-ood make-bundle`` writes them into bundles).
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip


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
        self.root, self.split = Path(root), split
        self.images, self.targets = paired_files(self.root, split, "gtFine", "_gtFine_labelIds.png", "Cityscapes")
        self._lut = _train_id_lut()

    def __len__(self) -> int:
        return len(self.images)

    def identity(self, frames: int | None = None) -> dict[str, object]:
        """What identifies the first ``frames`` frames (all by default), for manifests."""
        n = len(self) if frames is None else min(frames, len(self))
        return {"dataset": "cityscapes", "root": str(self.root.resolve()), "split": self.split, "frames": n}

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB image and (H, W) uint8 train ids (255 = void)."""
        return read_rgb(self.images[index]), self._lut[read_label(self.targets[index])]
