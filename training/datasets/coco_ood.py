"""COCO-OoD: COCO images without any Cityscapes-like object, their objects used as OoD proxies.

``build_coco_ood`` reads ``<coco_root>/annotations/instances_<split>.json`` with ``pycocotools``, keeps the images
that contain no instance of the excluded categories (the paper keeps 46,751 of train2017), and writes for each
kept image a mask ``<out>/masks/<image id>.png`` (254 = pixel of some object instance, 255 = the rest, void for
training) plus ``<out>/index.json`` with each image's file, size and OoD pixel fraction.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from tqdm.auto import tqdm

from .base import OOD_LABEL, VOID_LABEL, DatasetError, read_label, read_rgb, require_dir

LOG = logging.getLogger(__name__)

#: COCO categories that overlap Cityscapes' classes: images with any of them are dropped.
COCO_EXCLUDED_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "bus", "truck", "traffic light", "stop sign",
)  # fmt: skip


def build_coco_ood(
    coco_root: str | Path,
    out_dir: str | Path,
    split: str = "train2017",
    *,
    excluded: tuple[str, ...] = COCO_EXCLUDED_CATEGORIES,
    min_side: int = 0,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Write the COCO-OoD masks and index; returns the index entries.

    Args:
        coco_root: folder with ``annotations/`` and ``<split>/``.
        out_dir: output folder (``masks/`` and ``index.json``).
        split: COCO split name.
        excluded: category names whose presence drops an image.
        min_side: drop images whose shorter side is below this (e.g. the 480-pixel training crop); 0 keeps all.
        progress: show a progress bar.

    Annotated images whose file is missing on disk are skipped (counted in one warning).

    Raises:
        DatasetError: a missing annotation file or image folder, or no image left because their files are missing.
    """
    from pycocotools.coco import COCO

    coco_root, out = Path(coco_root), Path(out_dir)
    ann_file = coco_root / "annotations" / f"instances_{split}.json"
    if not ann_file.is_file():
        raise DatasetError(f"COCO annotation file not found: {ann_file}")
    image_dir = require_dir(coco_root / split, "COCO image folder")
    coco = COCO(str(ann_file))
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    unknown = set(excluded) - set(names.values())
    if unknown:
        LOG.warning("excluded categories not in %s: %s", ann_file.name, sorted(unknown))
    excluded_ids = {cid for cid, name in names.items() if name in excluded}
    (out / "masks").mkdir(parents=True, exist_ok=True)
    index = []
    missing: list[str] = []
    for image_id in tqdm(sorted(coco.getImgIds()), desc="COCO-OoD", disable=not progress):
        info = coco.loadImgs(image_id)[0]
        if not (image_dir / info["file_name"]).is_file():  # e.g. a partial download of the split
            missing.append(info["file_name"])
            continue
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None))
        if not anns or any(a["category_id"] in excluded_ids for a in anns):
            continue
        if min(info["height"], info["width"]) < min_side:
            continue
        mask = np.full((info["height"], info["width"]), VOID_LABEL, dtype=np.uint8)
        for ann in anns:
            mask[coco.annToMask(ann) > 0] = OOD_LABEL
        mask_file = out / "masks" / f"{image_id:012d}.png"
        Image.fromarray(mask).save(mask_file)
        index.append(
            {
                "image": str((image_dir / info["file_name"]).resolve()),
                "mask": mask_file.name,
                "height": info["height"],
                "width": info["width"],
                "ood_fraction": float((mask == OOD_LABEL).mean()),
            }
        )
    total = len(coco.getImgIds())
    if missing:
        if not index:
            rest = "" if len(missing) == total else ", the others show excluded categories or no object"
            raise DatasetError(f"no COCO-OoD image left: {len(missing)} of the {total} images of {ann_file.name} are "
                               f"missing under {image_dir} (first: {missing[0]}){rest}")  # fmt: skip
        LOG.warning("COCO-OoD: skipped %d of %d annotated %s images whose file is missing under %s (first: %s)",
                    len(missing), total, split, image_dir, missing[0])  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, indent=0))
    LOG.info("COCO-OoD: kept %d of %d %s images -> %s", len(index), total, split, out)
    return index


def informative_subset(
    index: list[dict[str, Any]], *, max_fraction: float | None = None, min_fraction: float | None = None
) -> list[dict[str, Any]]:
    """Entries with OoD pixel fraction ≤ ``max_fraction`` (informative, paper: 0.2) and/or ≥ ``min_fraction``
    (non-informative, paper: 0.8)."""
    return [
        e
        for e in index
        if (max_fraction is None or e["ood_fraction"] <= max_fraction)
        and (min_fraction is None or e["ood_fraction"] >= min_fraction)
    ]


@dataclass
class CocoOoD:
    """COCO-OoD images and masks (254 = OoD proxy, 255 = void) from a folder written by :func:`build_coco_ood`.

    ``entries`` may be a subset of the index (see :func:`informative_subset`).
    """

    root: Path
    entries: list[dict[str, Any]]

    @classmethod
    def from_folder(cls, root: str | Path) -> CocoOoD:
        """Read ``<root>/index.json``; raises :class:`DatasetError` if it is missing."""
        root = Path(root)
        index_file = root / "index.json"
        if not index_file.is_file():
            raise DatasetError(
                f"COCO-OoD index not found: {index_file} (write it with `meta-ood build-coco-ood --coco-root COCO "
                f"--out {root}` from the official COCO layout)"
            )
        return cls(root, json.loads(index_file.read_text()))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """(H, W, 3) uint8 RGB image and (H, W) uint8 mask."""
        entry = self.entries[index]
        return read_rgb(Path(entry["image"])), read_label(self.root / "masks" / entry["mask"])
