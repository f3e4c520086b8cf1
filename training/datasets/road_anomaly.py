"""OoD test sets with 0 = in-distribution, 1 = OoD, 255 = void targets.

* LostAndFound (``leftImg8bit/<split>/<sequence>/*_leftImg8bit.png`` and
  ``gtCoarse/<split>/<sequence>/*_gtCoarse_labelIds.png``), the paper's protocol: free road (label id 1) is
  in-distribution, hazards (ids 2…43 except the non-hazards) are OoD, non-hazards and everything else are void.
* Fishyscapes Static (``<root>/Static/<name>.jpg`` with ``<name>.png`` labels already in 0 / 1 / 255).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from .base import VOID_LABEL, DatasetError, paired_files, read_label, read_rgb, require_dir

#: LostAndFound object ids that are not hazards (marker poles, posts, timber, wheel cap, wood): void.
LAF_NON_HAZARD_IDS = (31, 33, 34, 36, 37, 38, 39)
LAF_FREE_SPACE_ID = 1


def _laf_lut() -> npt.NDArray[np.uint8]:
    lut = np.full(256, VOID_LABEL, dtype=np.uint8)
    lut[LAF_FREE_SPACE_ID] = 0
    lut[2:44] = 1
    lut[list(LAF_NON_HAZARD_IDS)] = VOID_LABEL
    return lut


class LostAndFound:
    """LostAndFound frames of one split ('test' or 'train'), sorted by file name."""

    def __init__(self, root: str | Path, split: str = "test") -> None:
        root = Path(root)
        self.images, self.targets = paired_files(root, split, "gtCoarse", "_gtCoarse_labelIds.png", "LostAndFound")
        self._lut = _laf_lut()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sequences(self) -> list[int]:
        """Sequence index of every frame (its folder ``leftImg8bit/<split>/<sequence>/``, numbered in sorted order):
        frames of one sequence are near-duplicates and must stay on one side of a cross-validation split."""
        names = sorted({p.parent.name for p in self.images})
        return [names.index(p.parent.name) for p in self.images]

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB and (H, W) uint8 target: 0 free road, 1 hazard, 255 void."""
        return read_rgb(self.images[index]), self._lut[read_label(self.targets[index])]


class FishyscapesStatic:
    """Fishyscapes Static: ``<root>/<split>/<name>.jpg`` images and ``<name>.png`` labels (0 / 1 / 255)."""

    def __init__(self, root: str | Path, split: str = "Static") -> None:
        folder = require_dir(Path(root) / split, "Fishyscapes folder")
        self.targets = sorted(folder.glob("*.png"))
        if not self.targets:
            raise DatasetError(f"no *.png label files under {folder}")
        self.images = [t.with_suffix(".jpg") for t in self.targets]
        missing = [p for p in self.images if not p.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} Fishyscapes image(s) missing, first: {missing[0]}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB and (H, W) uint8 target: 0 in-distribution, 1 OoD, 255 void."""
        target = read_label(self.targets[index]).copy()
        target[(target != 0) & (target != 1)] = VOID_LABEL
        return read_rgb(self.images[index]), target
