"""Meta-classification data sets: the component-metric table of many frames, with targets and groups.

File format (``.npz``, read with ``allow_pickle=False``):

* ``X``: (N, F) float, the component metrics (F = 75 for the paper's metrics);
* ``y``: (N,) 0/1, 1 = false-positive component (the reference's ``iou0``);
* ``names``: (F,) str, the feature names in column order;
* ``group`` (optional): (N,) int or str, the frame / sequence each component comes from (for group-kfold);
* ``n_objects``, ``object_group``, ``pair_component``, ``pair_object`` (optional, written by
  ``meta_ood_training.meta_extract``): the ground-truth objects and which component rows overlap which object,
  for false-negative counts before and after removal;
* ``metadata_json`` (optional, a 0-d string array holding a JSON object; written by ``meta-ood extract-metrics``):
  where the components come from — ``data`` (dataset, resolved root, split, frame count, or a synthetic world's
  identity) and ``extraction`` (the bundle's input size, metric grid, threshold, region and frame aspect ratio).
  ``meta-ood meta-train`` copies it into the meta classifier, ``meta-ood make-bundle --meta`` into the bundle's
  ``meta_training``, where ``meta-ood evaluate`` finds it to warn about in-sample test frames.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from meta_ood_perception.errors import InputError


class MetaDataError(InputError):
    """A meta-classification data set that cannot be used, with the reason."""


@dataclass(frozen=True)
class ObjectOverlaps:
    """Ground-truth objects and the predicted components that overlap them.

    Attributes:
        n_objects: number of ground-truth objects (8-connected components of ``gt == ood_label``) in all frames.
        object_group: (n_objects,) frame index of each object.
        pair_component: (P,) row of the component table; pair_object: (P,) object index; one pair per overlap.
    """

    n_objects: int
    object_group: npt.NDArray[np.int64]
    pair_component: npt.NDArray[np.int64]
    pair_object: npt.NDArray[np.int64]

    def missed(self, kept: npt.NDArray[np.bool_]) -> int:
        """Objects that no kept component overlaps (false negatives), given a (N,) mask of kept components."""
        covered = np.zeros(self.n_objects, dtype=bool)
        covered[self.pair_object[kept[self.pair_component]]] = True
        return int((~covered).sum())


@dataclass(frozen=True)
class MetaDataset:
    """Component metrics with their targets.

    Attributes:
        X: (N, F) float64 features.
        y: (N,) int64, 1 = false positive.
        names: F feature names.
        group: (N,) int64 group ids (frames / sequences), or None.
        objects: ground-truth objects and their overlapping components, or None.
        metadata: where the components come from (JSON-serializable; see the module docstring), or None.
    """

    X: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]
    names: tuple[str, ...]
    group: npt.NDArray[np.int64] | None = None
    objects: ObjectOverlaps | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n = self.X.shape[0] if self.X.ndim == 2 else -1
        if self.X.ndim != 2 or self.X.shape[1] != len(self.names):
            raise MetaDataError(f"X must have shape (N, {len(self.names)}) to match names, got {self.X.shape}")
        if self.y.shape != (n,):
            raise MetaDataError(f"y must have shape ({n},) to match X, got {self.y.shape}")
        if not np.isin(self.y, (0, 1)).all():
            raise MetaDataError(f"y must hold 0/1 targets, found {np.unique(self.y)[:5].tolist()}")
        if not np.isfinite(self.X).all():
            raise MetaDataError(f"X holds NaN or inf in {int((~np.isfinite(self.X).all(axis=1)).sum())} row(s)")
        if self.group is not None and self.group.shape != (n,):
            raise MetaDataError(f"group must have shape ({n},) to match X, got {self.group.shape}")
        if self.objects is not None:
            o = self.objects
            if o.pair_component.shape != o.pair_object.shape or o.object_group.shape != (o.n_objects,):
                raise MetaDataError("object overlaps: pair arrays differ in length or object_group != n_objects")
            if len(o.pair_component) and (o.pair_component.max() >= n or o.pair_object.max() >= o.n_objects):
                raise MetaDataError("object overlaps point past the component table or the object list")

    @property
    def n(self) -> int:
        """Number of components N."""
        return int(self.X.shape[0])

    def require_both_classes(self) -> None:
        """Raise :class:`MetaDataError` unless y holds both false and true positives."""
        counts = np.bincount(self.y, minlength=2)
        if counts.min() == 0:
            only = "false positives (y=1)" if counts[1] else "true positives (y=0)"
            raise MetaDataError(f"y holds only {only}: {self.n} components, a classifier needs both classes")

    def subset(self, columns: list[int]) -> MetaDataset:
        """The same components with only the given feature columns, in that order."""
        names = tuple(self.names[c] for c in columns)
        return MetaDataset(self.X[:, columns], self.y, names, self.group, self.objects, self.metadata)

    def save(self, path: str | Path) -> None:
        """Write the ``.npz`` format above."""
        arrays = {"X": self.X, "y": self.y, "names": np.asarray(self.names)}
        if self.group is not None:
            arrays["group"] = self.group
        if self.objects is not None:
            arrays.update(
                n_objects=np.asarray(self.objects.n_objects),
                object_group=self.objects.object_group,
                pair_component=self.objects.pair_component,
                pair_object=self.objects.pair_object,
            )
        if self.metadata is not None:
            arrays["metadata_json"] = np.asarray(json.dumps(self.metadata))
        np.savez(Path(path), **arrays)  # type: ignore[arg-type]  # numeric and str arrays only


def load_features(path: str | Path) -> MetaDataset:
    """Read a meta-classification ``.npz`` file.

    Raises:
        MetaDataError: a missing or unreadable file, missing keys, or arrays whose shapes disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise MetaDataError(f"features file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise MetaDataError(f"cannot read features file {path}: {err}") from err
    missing = [k for k in ("X", "y", "names") if k not in arrays]
    if missing:
        raise MetaDataError(f"{path}: missing array(s) {missing}; expected X (N×F), y (N), names (F), [group (N)]")
    group = arrays.get("group")
    if group is not None:
        group = np.unique(group, return_inverse=True)[1].reshape(-1).astype(np.int64)
    objects = None
    if "n_objects" in arrays:
        objects = ObjectOverlaps(
            int(arrays["n_objects"]),
            *(
                np.asarray(arrays[k]).astype(np.int64).reshape(-1)
                for k in ("object_group", "pair_component", "pair_object")
            ),
        )
    metadata = None
    if "metadata_json" in arrays:
        try:
            metadata = json.loads(str(arrays["metadata_json"]))
        except json.JSONDecodeError as err:
            raise MetaDataError(f"{path}: metadata_json is not valid JSON: {err}") from None
        if not isinstance(metadata, dict):
            raise MetaDataError(f"{path}: metadata_json must hold a JSON object")
    raw_y = np.asarray(arrays["y"]).reshape(-1)
    if raw_y.dtype.kind not in "biuf" or not np.isin(raw_y, (0, 1)).all():
        shown = np.unique(raw_y)[:5].tolist() if raw_y.dtype.kind in "biuf" else raw_y.dtype
        raise MetaDataError(f"{path}: y must hold 0/1 targets (1 = false positive), found {shown}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(arrays["names"]).reshape(-1).tolist()]
    try:
        return MetaDataset(
            X=np.asarray(arrays["X"], dtype=np.float64),
            y=raw_y.astype(np.int64),
            names=tuple(names),
            group=group,
            objects=objects,
            metadata=metadata,
        )
    except MetaDataError as err:
        raise MetaDataError(f"{path}: {err}") from None
