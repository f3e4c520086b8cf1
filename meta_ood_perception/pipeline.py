"""The per-frame pipeline: camera frame → anomaly score, components with P(false positive), kept mask, brake hint.

One :class:`AnomalyPipeline` is what the ROS node, rosbag replay and offline evaluation all run. Stages (their
wall times in ``FrameResult.timings_ms``):

1. ``preprocess`` — check the frame, resize to the bundle's input size, normalize (:mod:`.preprocessing`);
2. ``inference`` — the backend (torch, ONNX Runtime, TensorRT) → logits at the network's resolution;
3. ``upsample`` — logits resized to the frame's native resolution, softmax (skipped when the graph already returns
   probabilities at that size);
4. ``score`` — anomaly score a = entropy / log C (taken from the graph when it returns it at native size);
5. ``components`` — OoD mask a ≥ t, connected components and their 75 metrics (:mod:`.metrics`);
6. ``meta`` — the meta classifier's P(false positive) per component; components with P < ``max_p_false_positive``
   are kept and form ``mask``;
7. ``brake`` — the :class:`~meta_ood_perception.brake.BrakeHintPolicy` update.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from .backends import Backend, create_backend
from .brake import BrakeConfig, BrakeHint, BrakeHintPolicy
from .bundle import Bundle, load_bundle
from .components import ood_mask
from .metrics import ComponentMetrics, component_metrics
from .preprocessing import check_frame, logits_to_probs, to_network_input
from .scores import anomaly_score

LOG = logging.getLogger(__name__)

STAGES = ("preprocess", "inference", "upsample", "score", "components", "meta", "brake")


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings (validated on construction).

    Attributes:
        threshold: anomaly threshold t; None = the bundle's.
        max_p_false_positive: components with a meta-classifier P(false positive) at or above it are removed.
        brake: brake-hint policy settings.
        road_class: class name of the drivable road (for ``brake.use_road``).
    """

    threshold: float | None = None
    max_p_false_positive: float = 0.5
    brake: BrakeConfig = field(default_factory=BrakeConfig)
    road_class: str = "road"

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {self.threshold}")
        if not 0.0 < self.max_p_false_positive <= 1.0:
            raise ValueError(f"max_p_false_positive must lie in (0, 1], got {self.max_p_false_positive}")


@dataclass(frozen=True)
class ComponentInfo:
    """One connected component of the OoD mask (pixel coordinates at the frame's native resolution).

    Attributes:
        id: label k in ``FrameResult.labels`` (1-based, raster order of first pixel).
        bbox: (x_min, y_min, x_max, y_max), inclusive pixel coordinates.
        area: pixels.
        centroid: (x, y) in pixels.
        p_false_positive: meta-classifier probability that the component is a false positive.
        kept: P(false positive) < the pipeline's ``max_p_false_positive`` (part of ``mask``).
        corridor_area: pixels inside the brake corridor.
    """

    id: int
    bbox: tuple[int, int, int, int]
    area: int
    centroid: tuple[float, float]
    p_false_positive: float
    kept: bool
    corridor_area: int


@dataclass(frozen=True)
class FrameResult:
    """Output of :meth:`AnomalyPipeline.process` for one (H, W, 3) frame.

    Attributes:
        score: (H, W) float32 anomaly score in [0, 1].
        mask: (H, W) uint8, 1 = pixel of a kept anomaly component, 0 otherwise.
        labels: (H, W) int32 component labels (0 = no component, k = ``components[k - 1]``).
        components: every component of the thresholded score, kept or not.
        brake: the brake hint after this frame.
        timings_ms: wall time per stage (:data:`STAGES`) and ``total``, milliseconds.
    """

    score: npt.NDArray[np.float32]
    mask: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int32]
    components: tuple[ComponentInfo, ...]
    brake: BrakeHint
    timings_ms: dict[str, float]

    @property
    def kept(self) -> tuple[ComponentInfo, ...]:
        """The components that survived the meta classifier."""
        return tuple(c for c in self.components if c.kept)


class AnomalyPipeline:
    """Frame → :class:`FrameResult` (see the module docstring). Not thread-safe: one pipeline per stream."""

    def __init__(self, bundle: Bundle, backend: Backend, config: PipelineConfig | None = None) -> None:
        self.bundle = bundle
        self.backend = backend
        self.configure(config or PipelineConfig())

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | str | Path,
        backend: str = "onnxruntime",
        *,
        config: PipelineConfig | None = None,
        **options: Any,
    ) -> AnomalyPipeline:
        """Load ``bundle`` (a :class:`Bundle`, a directory or ``"default"``) and create ``backend`` with ``options``."""
        loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        return cls(loaded, create_backend(backend, loaded, **options), config)

    def configure(self, config: PipelineConfig) -> None:
        """Apply new settings (threshold, meta-classifier cut, brake policy, road class); the brake history restarts.

        Raises:
            ValueError: ``config.road_class`` is not a class of the bundle (nothing is changed then).
        """
        if config.road_class not in self.bundle.class_names:
            raise ValueError(f"road_class {config.road_class!r} is not one of the bundle's classes")
        self.config = config
        self.threshold = self.bundle.threshold if config.threshold is None else config.threshold
        self.road_index = self.bundle.class_names.index(config.road_class)
        self.brake_policy = BrakeHintPolicy(config.brake)

    def reset(self) -> None:
        """Forget the brake history (new drive, gap in the stream)."""
        self.brake_policy.reset()

    def warm_up(self, height: int | None = None, width: int | None = None) -> float:
        """Run one grey frame (default: the bundle's input size) so that the first real frame does not pay for
        loading kernels and allocating buffers; the brake history is reset afterwards. Returns its milliseconds."""
        h, w = height or self.bundle.input_size[0], width or self.bundle.input_size[1]
        result = self.process(np.full((h, w, 3), 128, np.uint8))
        self.reset()
        return result.timings_ms["total"]

    def process(self, image: npt.NDArray[np.uint8]) -> FrameResult:
        """Run all stages on an (H, W, 3) uint8 RGB frame.

        Raises:
            ValueError: a bad frame (not an array, empty, wrong shape or dtype, NaN) or non-finite network output;
                the brake history is left as it was.
        """
        timings: dict[str, float] = {}
        t_start = t = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal t
            now = time.perf_counter()
            timings[stage] = (now - t) * 1e3
            t = now

        frame = check_frame(image)
        size = frame.shape[:2]
        batch = to_network_input(frame, self.bundle.input_size, self.bundle.mean, self.bundle.std)
        lap("preprocess")
        outputs = self.backend.run(batch)
        lap("inference")
        probs = self._probabilities(outputs, size)
        lap("upsample")
        score = self._score(outputs, probs, size)
        lap("score")
        mask = ood_mask(score, self.threshold)
        table = component_metrics(probs, mask, validate=False)
        labels = np.abs(table.components).astype(np.int32, copy=False)
        lap("components")
        n = len(table)
        p_fp = self.bundle.meta_classifier.predict_proba(table) if n else np.zeros(0)
        kept = p_fp < self.config.max_p_false_positive
        kept_mask = np.concatenate([[0], kept.astype(np.uint8)])[labels]
        lap("meta")
        road = None
        if self.config.brake.use_road:
            road = np.argmax(probs, axis=0) == self.road_index
        corridor = self.brake_policy.corridor_areas(labels, n, road)
        # the brake only counts components the mask keeps (removed ones enter with P(FP) = 1)
        hint = self.brake_policy.update(labels, np.where(kept, p_fp, 1.0), road, areas=corridor)
        components = _component_infos(labels, table, p_fp, kept, corridor)
        lap("brake")
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return FrameResult(score, kept_mask.astype(np.uint8, copy=False), labels, components, hint, timings)

    def _probabilities(self, outputs: Mapping[str, Any], size: tuple[int, int]) -> npt.NDArray[np.float32]:
        probs = outputs.get("probs")
        if probs is not None and tuple(probs.shape[2:]) == size:
            if probs.ndim != 4 or probs.shape[1] != self.bundle.num_classes:
                raise ValueError(f"network output 'probs' has shape {probs.shape}, expected "
                                 f"(1, {self.bundle.num_classes}, {size[0]}, {size[1]})")  # fmt: skip
            p = np.asarray(probs[0], np.float32)
            if not np.isfinite(p).all():
                raise ValueError("network output holds non-finite probabilities (NaN / inf)")
            return p
        logits = outputs["logits"]
        if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != self.bundle.num_classes:
            raise ValueError(
                f"network output 'logits' has shape {logits.shape}, expected (1, {self.bundle.num_classes}, h, w)"
            )
        return logits_to_probs(np.asarray(logits[0], np.float32), size)

    @staticmethod
    def _score(
        outputs: Mapping[str, Any], probs: npt.NDArray[np.float32], size: tuple[int, int]
    ) -> npt.NDArray[np.float32]:
        score = outputs.get("score")
        if score is not None and tuple(score.shape[1:]) == size:
            s = np.asarray(score[0], np.float32)
            if not np.isfinite(s).all():  # NaN would read as "no anomaly"
                raise ValueError(f"network output holds {int((~np.isfinite(s)).sum())} non-finite score values")
            return np.clip(s, 0.0, 1.0)
        return np.asarray(anomaly_score(probs), np.float32)


def _component_infos(
    labels: npt.NDArray[np.int32],
    table: ComponentMetrics,
    p_fp: npt.NDArray[np.float64],
    kept: npt.NDArray[np.bool_],
    corridor: npt.NDArray[np.int64],
) -> tuple[ComponentInfo, ...]:
    """One :class:`ComponentInfo` per row of ``table``; area and centroid come from its S / mean_x / mean_y columns."""
    n = len(table)
    if n == 0:
        return ()
    area = table.column("S")
    rows_mean, cols_mean = table.column("mean_x"), table.column("mean_y")  # the reference's naming: x = row
    slices = ndimage.find_objects(labels, max_label=n)
    out = []
    for k in range(n):
        rows, cols = slices[k]
        out.append(
            ComponentInfo(
                id=k + 1, bbox=(cols.start, rows.start, cols.stop - 1, rows.stop - 1), area=int(area[k]),
                centroid=(float(cols_mean[k]), float(rows_mean[k])), p_false_positive=float(p_fp[k]),
                kept=bool(kept[k]), corridor_area=int(corridor[k]),
            )
        )  # fmt: skip
    return tuple(out)
