"""The meta-classification table of a labelled dataset, extracted through the deployed pipeline.

Every component comes from :meth:`AnomalyPipeline.analyze <meta_ood_perception.pipeline.AnomalyPipeline.analyze>`
of the bundle being trained or evaluated — the same pre-processing, backend, metric resolution, threshold and
meta classifier the node runs — inside the target's labelled region (the LostAndFound protocol: void excluded) or,
with ``region_from="deployed"``, inside the region the node uses (the predicted drivable region), the target then
only labelling the components.
:class:`ComponentCollector` turns those analyses into the table (``y`` = iou0, 1 = false positive), the groups, the
ground-truth objects with the components that overlap them, and the pipeline's own P(false positive) and
keep/remove decision; ``meta-ood extract-metrics``, ``meta-ood evaluate``, ``meta-ood results`` and the default
bundle's build all use it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from meta_ood_perception.components import label_components
from meta_ood_perception.errors import InputError
from meta_ood_perception.pipeline import AnomalyPipeline, FrameAnalysis, RegionSource

from .meta_data import MetaDataset, ObjectOverlaps


@dataclass
class ComponentCollector:
    """Accumulates the components of many :class:`FrameAnalysis` (made with a target) into one table."""

    ood_label: int = 1
    _rows: list[npt.NDArray[np.float64]] = field(default_factory=list)
    _y: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _group: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _proba: list[npt.NDArray[np.float64]] = field(default_factory=list)
    _kept: list[npt.NDArray[np.bool_]] = field(default_factory=list)
    _object_group: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _pair_c: list[npt.NDArray[np.int64]] = field(default_factory=list)
    _pair_o: list[npt.NDArray[np.int64]] = field(default_factory=list)
    names: tuple[str, ...] = ()
    n_rows: int = 0
    n_objects: int = 0
    frames: int = 0

    def add(self, analysis: FrameAnalysis, group: int) -> None:
        """Add one frame's components (the analysis must have been made with a target)."""
        table, target = analysis.table, analysis.target
        if table.iou0 is None or target is None:
            raise InputError("ComponentCollector needs analyses made with a target (ground truth)")
        self.names = tuple(table.names)
        n = len(table)
        self._rows.append(table.features)
        self._y.append(table.iou0.astype(np.int64))
        self._group.append(np.full(n, group, dtype=np.int64))
        self._proba.append(analysis.p_false_positive)
        self._kept.append(analysis.kept)
        objects = label_components(target == self.ood_label)
        both = (analysis.labels > 0) & (objects.labels > 0)
        pairs = np.unique(
            np.stack([analysis.labels[both] - 1, objects.labels[both] - 1]).astype(np.int64).reshape(2, -1), axis=1
        )
        self._pair_c.append(pairs[0] + self.n_rows)
        self._pair_o.append(pairs[1] + self.n_objects)
        self._object_group.append(np.full(objects.count, group, dtype=np.int64))
        self.n_rows += n
        self.n_objects += objects.count
        self.frames += 1

    def dataset(self) -> MetaDataset:
        """The table so far: X, y (1 = false positive), names, group, objects."""
        overlaps = ObjectOverlaps(
            self.n_objects, _cat(self._object_group, np.int64), _cat(self._pair_c, np.int64),
            _cat(self._pair_o, np.int64),
        )  # fmt: skip
        x = np.concatenate(self._rows) if self._rows else np.zeros((0, len(self.names)))
        return MetaDataset(x, _cat(self._y, np.int64), self.names, _cat(self._group, np.int64), overlaps)

    @property
    def p_false_positive(self) -> npt.NDArray[np.float64]:
        """(N,) the pipeline's P(false positive) of every collected component."""
        return _cat(self._proba, np.float64)

    @property
    def kept(self) -> npt.NDArray[np.bool_]:
        """(N,) the pipeline's keep decision of every collected component."""
        return _cat(self._kept, np.bool_)


def _cat(parts: list[npt.NDArray[Any]], dtype: Any) -> npt.NDArray[Any]:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


def dataset_identity(dataset: Any, frames: int | None = None) -> dict[str, Any]:
    """What identifies the first ``frames`` items of ``dataset`` (its ``identity()``: dataset name, resolved root,
    split, frame count, or a synthetic world's seed and options); ``{"dataset": <type name>, "frames": n}`` for a
    dataset without one."""
    count = len(dataset) if frames is None else min(frames, len(dataset))
    method = getattr(dataset, "identity", None)
    if method is None:
        return {"dataset": type(dataset).__name__, "frames": count}
    takes_frames = bool(inspect.signature(method).parameters)  # SyntheticWorld.identity(): its n is the count
    identity = dict(method(frames) if takes_frames else method())
    identity["frames"] = count
    return identity


def extraction_region(pipeline: AnomalyPipeline, region_from: RegionSource = "target") -> str:
    """The region name recorded for components extracted with ``region_from``: ``"labelled"`` (the target's) or
    the pipeline's deployed region (``"road"`` / ``"frame"``)."""
    return "labelled" if region_from == "target" else pipeline.config.region


def extraction_metadata(
    pipeline: AnomalyPipeline, dataset: Any, frames: int | None = None, region_from: RegionSource = "target"
) -> dict[str, Any]:
    """The ``metadata`` of a features file extracted through ``pipeline`` from ``dataset``: ``data`` (see
    :func:`dataset_identity`) and ``extraction`` (bundle, network input size, metric grid, threshold, region
    (:func:`extraction_region`), frame aspect ratio of the first frame, the network's SHA-256)."""
    bundle = pipeline.bundle
    extraction: dict[str, Any] = {
        "bundle": str(bundle.root.resolve()), "architecture": bundle.manifest["model"]["architecture"],
        "input_size": list(bundle.input_size), "metric_size": list(pipeline.metric_size),
        "threshold": float(pipeline.threshold), "region": extraction_region(pipeline, region_from),
        "network_sha256": bundle.manifest["checksums"].get(bundle.manifest["model"]["files"].get("torch", "")),
    }  # fmt: skip
    if len(dataset):
        image, _ = dataset[0]
        extraction["aspect_ratio"] = float(image.shape[1]) / float(image.shape[0])
    return {"data": dataset_identity(dataset, frames), "extraction": extraction}


def extract(
    pipeline: AnomalyPipeline,
    dataset: Any,
    *,
    frames: int | None = None,
    groups: Sequence[int] | None = None,
    ood_label: int = 1,
    void_label: int = 255,
    progress: bool = True,
    desc: str = "component metrics",
    region_from: RegionSource = "target",
) -> ComponentCollector:
    """Run ``pipeline`` over the first ``frames`` items ``(RGB uint8 image, target)`` of ``dataset``.

    Args:
        groups: group id per item (e.g. the LostAndFound sequence); default the item index (frame).
        region_from: where components may lie (:meth:`AnomalyPipeline.analyze
            <meta_ood_perception.pipeline.AnomalyPipeline.analyze>`): the target's labelled region (``"target"``)
            or the pipeline's deployed region (``"deployed"``).

    Returns:
        the collector: ``.dataset()`` is the meta-classification table, ``.p_false_positive`` / ``.kept`` the
        pipeline's decisions on it.
    """
    count = len(dataset) if frames is None else min(frames, len(dataset))
    if groups is not None and len(groups) < count:
        raise InputError(f"{len(groups)} group ids for {count} frames")
    collector = ComponentCollector(ood_label)
    for index in tqdm(range(count), desc=desc, disable=not progress):
        image, target = dataset[index]
        analysis = pipeline.analyze(image, target, ood_label=ood_label, void_label=void_label,
                                    region_from=region_from)  # fmt: skip
        collector.add(analysis, index if groups is None else int(groups[index]))
    return collector
