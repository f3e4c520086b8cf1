"""OoD test sets with 0 = in-distribution, 1 = OoD, 255 = void targets.

* LostAndFound (``leftImg8bit/<split>/<sequence>/*_leftImg8bit.png`` and
  ``gtCoarse/<split>/<sequence>/*_gtCoarse_labelIds.png``), the paper's protocol: free road (label id 1) is
  in-distribution, hazards (ids 2…43 except the non-hazards) are OoD, non-hazards and everything else are void.
* Fishyscapes Static, in the research code's layout (``<root>/Static/<name>.jpg`` with ``<name>.png`` labels
  already in 0 / 1 / 255) or the authors' release (``<NNNN>_<id>_labels.png`` with ``_rgb.png`` images or
  ``_rgb.npz`` overlays on Cityscapes validation images); see :class:`FishyscapesStatic`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt

from meta_ood_perception.reports import first_line

from .base import VOID_LABEL, DatasetError, paired_files, read_label, read_rgb

#: LostAndFound object ids that are not hazards (marker poles, posts, timber, wheel cap, wood): void.
LAF_NON_HAZARD_IDS = (31, 33, 34, 36, 37, 38, 39)
LAF_FREE_SPACE_ID = 1
LOG = logging.getLogger(__name__)


def _laf_lut() -> npt.NDArray[np.uint8]:
    lut = np.full(256, VOID_LABEL, dtype=np.uint8)
    lut[LAF_FREE_SPACE_ID] = 0
    lut[2:44] = 1
    lut[list(LAF_NON_HAZARD_IDS)] = VOID_LABEL
    return lut


class LostAndFound:
    """LostAndFound frames of one split ('test' or 'train'), sorted by file name."""

    def __init__(self, root: str | Path, split: str = "test") -> None:
        self.root, self.split = Path(root), split
        self.images, self.targets = paired_files(self.root, split, "gtCoarse", "_gtCoarse_labelIds.png", "LostAndFound")
        self._lut = _laf_lut()

    def __len__(self) -> int:
        return len(self.images)

    def identity(self, frames: int | None = None) -> dict[str, object]:
        """What identifies the first ``frames`` frames (all by default), for manifests and in-sample checks."""
        n = len(self) if frames is None else min(frames, len(self))
        return {"dataset": "lostandfound", "root": str(self.root.resolve()), "split": self.split, "frames": n}

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
    """Fishyscapes Static: targets 0 in-distribution, 1 OoD, 255 void (other label values become void).

    Three layouts, found in ``<root>/<split>`` or, when that folder does not exist, directly under ``<root>``:

    * the research code's: ``<name>.png`` labels beside ``<name>.jpg`` images (in ``<root>/<split>`` and its
      subfolders, or flat in ``<root>``);
    * ``original/<name>.png`` (or ``.jpg``) images with ``labels/<name>.png`` (a common preprocessed copy);
    * the authors' release (``fs_val_v1.zip`` … ``fs_val_v3.zip`` from fishyscapes.com, the files the
      bdl-benchmark ``tfds`` builder reads): flat ``<NNNN>_<cityscapes id>_labels.png`` masks, each with either
      the blended image ``<NNNN>_<cityscapes id>_rgb.png`` (or ``.jpg``) or the overlay
      ``<NNNN>_<cityscapes id>_rgb.npz`` (int array ``rgb``, H×W×3) that is added to the Cityscapes validation
      image ``<cityscapes_root>/leftImg8bit/val/<city>/<cityscapes id>_leftImg8bit.png`` and clipped to 0…255
      (as the benchmark does); the release may sit in a subfolder. Without ``cityscapes_root`` the overlays'
      Cityscapes root is looked for in ``<root>``, its parent and ``<root>/../cityscapes`` (the first with
      ``leftImg8bit/val``).

    The bdl-benchmark's prepared ``tfds`` TFRecords are not read (write their examples out as ``_rgb.png`` /
    ``_labels.png`` pairs).

    Raises:
        DatasetError: no folder, no label files, a label without its image (or overlay, or Cityscapes base
            image), or overlays without a Cityscapes root (given or found).
    """

    def __init__(self, root: str | Path, split: str = "Static", *, cityscapes_root: str | Path | None = None) -> None:
        root = Path(root)
        folder = root / split
        nested = folder.is_dir()
        if not nested:
            if not _has_layout(root):
                raise DatasetError(f"Fishyscapes folder not found: {folder} (nor a layout directly under {root}: "
                                   "labels/ + original/, <name>.jpg + <name>.png, or *_labels.png)")  # fmt: skip
            folder = root
        self.root, self.folder, self.split = root, folder, split
        self.cityscapes_root = Path(cityscapes_root) if cityscapes_root is not None else None
        self.overlays: list[Path | None] = []
        release = sorted(folder.rglob("*_labels.png"))
        if (folder / "labels").is_dir() and (folder / "original").is_dir():
            self.layout = "folders"
            self.targets = sorted((folder / "labels").glob("*.png"))
            if not self.targets:
                raise DatasetError(f"no *.png label files under {folder / 'labels'}")
            self.images = [_image_for(folder / "original", t.stem) for t in self.targets]
            self.overlays = [None] * len(self.targets)
        elif release:
            self.layout = "release"
            self.targets = release
            self.images = [self._release_image(t) for t in release]
        else:
            self.layout = "research"
            self.targets = sorted(folder.rglob("*.png") if nested else folder.glob("*.png"))
            if not self.targets:
                raise DatasetError(f"no *.png or *_labels.png label files under {folder}")
            self.images = [t.with_suffix(".jpg") for t in self.targets]
            self.overlays = [None] * len(self.targets)
            missing = [p for p in self.images if not p.is_file()]
            if missing:
                raise DatasetError(f"{len(missing)} Fishyscapes image(s) missing, first: {missing[0]}")

    def _release_image(self, labels: Path) -> Path:
        """The image of one release label file (appends its overlay, or None, to ``self.overlays``)."""
        stem = labels.name.removesuffix("_labels.png")
        for ext in (".png", ".jpg"):
            image = labels.with_name(f"{stem}_rgb{ext}")
            if image.is_file():
                self.overlays.append(None)
                return image
        overlay = labels.with_name(f"{stem}_rgb.npz")
        if not overlay.is_file():
            raise DatasetError(f"Fishyscapes image missing for {labels.name}: no {stem}_rgb.png, .jpg or .npz")
        index, _, cityscapes_id = stem.partition("_")
        if not index.isdigit() or not cityscapes_id:
            raise DatasetError(f"{overlay}: expected a name <NNNN>_<cityscapes id>_rgb.npz")
        city = cityscapes_id.split("_")[0]
        base = self._cityscapes(overlay) / "leftImg8bit" / "val" / city / f"{cityscapes_id}_leftImg8bit.png"
        if not base.is_file():
            raise DatasetError(f"Cityscapes base image of {overlay.name} not found: {base}")
        self.overlays.append(overlay)
        return base

    def _cityscapes(self, overlay: Path) -> Path:
        """The Cityscapes root of the overlays: the given one, else the first of ``<root>``, its parent and
        ``<root>/../cityscapes`` with ``leftImg8bit/val`` (found once, logged)."""
        if self.cityscapes_root is None:
            base = self.root.resolve()
            candidates = (base, base.parent, base.parent / "cityscapes")
            found = next((c for c in candidates if (c / "leftImg8bit" / "val").is_dir()), None)
            if found is None:
                raise DatasetError(f"Fishyscapes overlays ({overlay.name}) are added to Cityscapes validation images, "
                                   f"and no leftImg8bit/val is in {base}, its parent or {base.parent / 'cityscapes'}: "
                                   "give the Cityscapes root (--cityscapes-root)")  # fmt: skip
            LOG.info("Fishyscapes overlays: Cityscapes validation images of %s (found beside %s; --cityscapes-root "
                     "chooses another)", found, self.root)  # fmt: skip
            self.cityscapes_root = found
        return self.cityscapes_root

    def __len__(self) -> int:
        return len(self.images)

    def identity(self, frames: int | None = None) -> dict[str, object]:
        """What identifies the first ``frames`` frames (all by default), for manifests and in-sample checks."""
        n = len(self) if frames is None else min(frames, len(self))
        return {"dataset": "fishyscapes", "root": str(self.folder.resolve()), "split": self.split, "frames": n,
                "layout": self.layout}  # fmt: skip

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB and (H, W) uint8 target: 0 in-distribution, 1 OoD, 255 void."""
        target = read_label(self.targets[index]).copy()
        target[(target != 0) & (target != 1)] = VOID_LABEL
        image = read_rgb(self.images[index])
        overlay_path = self.overlays[index]
        if overlay_path is not None:
            image = _blend(image, overlay_path)
        if image.shape[:2] != target.shape:
            raise DatasetError(f"{self.targets[index]}: labels {target.shape} and image {image.shape[:2]} differ")
        return image, target


def _has_layout(root: Path) -> bool:
    """Whether ``root`` itself holds a Fishyscapes layout: ``labels/`` + ``original/``, ``*_labels.png`` (anywhere
    below), or ``<name>.png`` labels with ``<name>.jpg`` images."""
    if not root.is_dir():
        return False
    if (root / "labels").is_dir() and (root / "original").is_dir():
        return True
    return any(root.rglob("*_labels.png")) or any(p.with_suffix(".jpg").is_file() for p in root.glob("*.png"))


def _image_for(folder: Path, stem: str) -> Path:
    """``<folder>/<stem>.png`` / ``.jpg`` / ``.jpeg`` (``_labels`` in the stem may read ``_rgb`` or nothing)."""
    base = stem.removesuffix("_labels")
    for name in dict.fromkeys((stem, f"{base}_rgb", base)):
        for ext in (".png", ".jpg", ".jpeg"):
            if (folder / f"{name}{ext}").is_file():
                return folder / f"{name}{ext}"
    raise DatasetError(f"Fishyscapes image missing for label {stem}.png: no {folder / stem}.png, .jpg or .jpeg")


def _blend(base: npt.NDArray[np.uint8], overlay_path: Path) -> npt.NDArray[np.uint8]:
    """``clip(base + overlay, 0, 255)`` with the release's int overlay array ``rgb``."""
    try:
        with np.load(overlay_path, allow_pickle=False) as data:
            overlay = np.asarray(data["rgb"])
    except (OSError, ValueError, KeyError) as err:
        raise DatasetError(f"cannot read Fishyscapes overlay {overlay_path}: {first_line(err)}") from err
    if overlay.shape != base.shape:
        raise DatasetError(f"{overlay_path}: overlay {overlay.shape} does not fit its base image {base.shape}")
    return np.clip(base.astype(np.int32) + overlay.astype(np.int32), 0, 255).astype(np.uint8)
