"""Datasets of the method, read from their official folder layouts (nothing is preprocessed in place).

Every dataset yields ``(image, target)`` pairs: (H, W, 3) uint8 RGB and (H, W) uint8 labels. Segmentation sets use
Cityscapes train ids (255 = void) plus ``OOD_LABEL`` (254) for OoD-proxy pixels; OoD test sets use
0 = in-distribution, 1 = OoD, 255 = void.
"""

from __future__ import annotations

from .base import OOD_LABEL, VOID_LABEL, DatasetError, read_label, read_rgb
from .cityscapes import CITYSCAPES_CLASSES, CityscapesSegmentation, label_ids_to_train_ids
from .coco_ood import COCO_EXCLUDED_CATEGORIES, CocoOoD, build_coco_ood, informative_subset
from .road_anomaly import FishyscapesStatic, LostAndFound
from .sampling import MixedSampler

__all__ = [
    "CITYSCAPES_CLASSES",
    "COCO_EXCLUDED_CATEGORIES",
    "OOD_LABEL",
    "VOID_LABEL",
    "CityscapesSegmentation",
    "CocoOoD",
    "DatasetError",
    "FishyscapesStatic",
    "LostAndFound",
    "MixedSampler",
    "build_coco_ood",
    "informative_subset",
    "label_ids_to_train_ids",
    "read_label",
    "read_rgb",
]
