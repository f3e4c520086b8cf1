"""Build the meta-classification table from frames: component metrics, targets, groups, and which predicted
component overlaps which ground-truth object (for false-negative counts after removal)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from meta_ood_perception.components import ood_mask
from meta_ood_perception.metrics import component_metrics, ground_truth_metrics
from meta_ood_perception.scores import DEFAULT_THRESHOLD, anomaly_score

from .meta_data import MetaDataset, ObjectOverlaps


@dataclass(frozen=True)
class Frame:
    """One evaluated frame: (C, H, W) float32 softmax ``probs`` and (H, W) ground truth ``gt`` (``ood_label`` =
    OoD object, ``void_label`` = outside the region of interest)."""

    probs: npt.NDArray[np.float32]
    gt: npt.NDArray[np.integer[Any]]


def extract(
    frames: Iterable[Frame],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    ood_label: int = 1,
    void_label: int = 255,
) -> MetaDataset:
    """Component metrics of every frame (OoD mask a ≥ ``threshold`` inside the non-void region), y = iou0.

    Returns the table with ``group`` = frame index and ``objects`` = the ground-truth objects and their overlaps.
    """
    rows, targets, groups = [], [], []
    object_group, pair_c, pair_o = [], [], []
    names: list[str] = []
    n_rows = n_objects = 0
    for index, frame in enumerate(frames):
        mask = ood_mask(anomaly_score(frame.probs), threshold, frame.gt != void_label)
        table = component_metrics(frame.probs, mask, frame.gt, ood_label=ood_label, void_label=void_label)
        truth = ground_truth_metrics(frame.probs, mask, frame.gt, ood_label=ood_label, void_label=void_label)
        names = table.names
        assert table.iou0 is not None
        rows.append(table.features)
        targets.append(table.iou0.astype(np.int64))
        groups.append(np.full(len(table), index, dtype=np.int64))
        both = (table.components != 0) & (truth.components != 0)
        pairs = np.unique(
            np.stack([np.abs(table.components[both]) - 1, np.abs(truth.components[both]) - 1]).astype(np.int64),
            axis=1,
        )
        pair_c.append(pairs[0] + n_rows)
        pair_o.append(pairs[1] + n_objects)
        object_group.append(np.full(len(truth), index, dtype=np.int64))
        n_rows += len(table)
        n_objects += len(truth)
    overlaps = ObjectOverlaps(
        n_objects,
        np.concatenate(object_group) if object_group else np.zeros(0, np.int64),
        np.concatenate(pair_c) if pair_c else np.zeros(0, np.int64),
        np.concatenate(pair_o) if pair_o else np.zeros(0, np.int64),
    )
    return MetaDataset(
        np.concatenate(rows) if rows else np.zeros((0, len(names))),
        np.concatenate(targets) if targets else np.zeros(0, np.int64),
        tuple(names),
        np.concatenate(groups) if groups else np.zeros(0, np.int64),
        overlaps,
    )


def model_frames(
    model: Any,
    dataset: Any,
    *,
    device: str = "cpu",
    limit: int | None = None,
) -> Iterable[Frame]:
    """Run a segmentation ``model`` (torch, logits at input size) over ``dataset`` items ``(RGB uint8, target)``.

    Yields :class:`Frame` with float32 softmax probabilities and the dataset's target (0 / 1 / 255); the input is
    normalized with the ImageNet statistics the models are trained with.
    """
    import torch

    from meta_ood_perception.models import MEAN_RGB, STD_RGB

    mean = torch.tensor(MEAN_RGB, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB, device=device).view(1, 3, 1, 1)
    model = model.to(device).eval()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    with torch.no_grad():
        for index in range(count):
            image, target = dataset[index]
            x = torch.from_numpy(np.array(image, dtype=np.uint8)).to(device).permute(2, 0, 1)[None].float() / 255.0
            probs = torch.softmax(model((x - mean) / std), dim=1)[0]
            yield Frame(probs.float().cpu().numpy(), target)
