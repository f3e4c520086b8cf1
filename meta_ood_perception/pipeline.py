"""The per-frame pipeline: camera frame → anomaly score, components with P(false positive), kept mask, brake hint.

One :class:`AnomalyPipeline` is the composition root of everything the project measures: the ROS node, rosbag
replay, ``meta-ood evaluate``, ``meta-ood extract-metrics``, ``meta-ood results`` and the default bundle's build all
run its stages, in this order (wall times in ``FrameResult.timings_ms``):

1. ``preprocess`` — check the frame, resize to the bundle's input size, normalize (:mod:`.preprocessing`);
2. ``inference`` — the backend (torch, ONNX Runtime, TensorRT) → logits at the network's resolution;
3. ``upsample`` — logits resized to the bundle's **metric resolution**, softmax (taken from the graph when it
   already returns probabilities at that size);
4. ``score`` — anomaly score a = entropy / log C at the metric resolution;
5. ``components`` — the region (ground truth's labelled region when a target is given, unless
   ``region_from="deployed"``; else the drivable region the network predicts, or the whole frame), OoD mask a ≥ t
   inside it, connected components, their 75 metrics;
6. ``meta`` — the meta classifier's P(false positive) per component; components with P < the cut (the bundle's
   ``max_p_false_positive`` unless configured) are kept;
7. ``domain`` — the domain monitor (:mod:`.domain`): cheap statistics of the network input, the probabilities and
   the score compared with the bundle's calibration; ``domain_patience`` frames in a row outside the bundle's domain
   make the brake hint unavailable, and the frames of a shorter run outside it hold the previous hint (they never
   add a hit);
8. ``brake`` — the :class:`~meta_ood_perception.brake.BrakeHintPolicy` update (areas counted in camera pixels);
9. ``output`` — score, labels and kept mask mapped back to the frame's resolution, component boxes in frame pixels.

Stages 3–8 run on the fixed metric grid whatever the camera size (see :mod:`.resolution`), so the meta classifier
sees the features it was trained on, and a 4K camera costs no more after the network than the metric grid does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .backends import Backend, create_backend
from .brake import BrakeConfig, BrakeHint, BrakeHintPolicy
from .bundle import Bundle, load_bundle
from .components import ood_mask
from .domain import DomainStatus, frame_features, monitor_off
from .errors import ConfigError, FaultError, InputError
from .metrics import ComponentMetrics, compile_kernels, component_metrics
from .preprocessing import check_frame, logits_to_probs, to_network_input
from .resolution import FrameMapping
from .scores import anomaly_score
from .stopwatch import Stopwatch

LOG = logging.getLogger(__name__)

STAGES = ("preprocess", "inference", "upsample", "score", "components", "meta", "domain", "brake", "output")
#: Where components may lie at run time: the drivable region the network predicts, or the whole frame.
Region = Literal["road", "frame"]
REGIONS: tuple[Region, ...] = ("road", "frame")
#: Where the components of a frame analysed with a target may lie: the target's labelled region (``"target"``, the
#: LostAndFound protocol) or the region the pipeline uses without a target (``"deployed"``,
#: :attr:`PipelineConfig.region`: what the car sees); with ``"deployed"`` the target only labels the components (void
#: pixels count as not OoD).
RegionSource = Literal["target", "deployed"]
REGION_SOURCES: tuple[RegionSource, ...] = ("target", "deployed")
#: Relative difference of the frame aspect ratio from the meta classifier's training frames that triggers a warning.
ASPECT_TOLERANCE = 0.1
#: Class name of the drivable road (Cityscapes' name): :attr:`PipelineConfig.road_class` by default, and the class
#: whose share of the bottom third the domain monitor measures.
DEFAULT_ROAD_CLASS = "road"
#: Class name of the sky (Cityscapes' name), whose share of the top third the domain monitor measures.
SKY_CLASS = "sky"
#: Bundle directories already warned about (no domain calibration): the warning comes once per bundle and process.
_WARNED_NO_DOMAIN: set[Path] = set()


@dataclass(frozen=True)
class PipelineConfig:
    """Pipeline settings (validated on construction).

    Attributes:
        threshold: anomaly threshold t; None = the bundle's.
        max_p_false_positive: components with a meta-classifier P(false positive) at or above it are removed;
            None = the bundle's cut (chosen on held-out frames when the bundle was built).
        region: ``"road"``: components only inside the drivable region the network predicts (per image row, from
            the leftmost to the rightmost ``road_class`` pixel: the road and whatever stands on it, the region
            LostAndFound labels); ``"frame"``: anywhere.
        brake: brake-hint policy settings.
        road_class: class name of the drivable road (for ``region`` and ``brake.use_road``).
        domain_patience: frames in a row outside the bundle's domain (:mod:`.domain`) after which the brake hint
            is unavailable (≥ 1); it is available again with the first frame back in the domain. The frames of a
            shorter run outside the domain add no evidence either way: the brake history does not advance and the
            previous frame's hint state is held (:meth:`~.brake.BrakeHintPolicy.hold`), so a foreign frame can never
            turn the hint on (nor release it).
    """

    threshold: float | None = None
    max_p_false_positive: float | None = None
    region: Region = "road"
    brake: BrakeConfig = field(default_factory=BrakeConfig)
    road_class: str = DEFAULT_ROAD_CLASS
    domain_patience: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.domain_patience, bool) or not isinstance(self.domain_patience, int):
            raise ConfigError(f"domain_patience must be an integer, got {self.domain_patience!r}")
        if self.domain_patience < 1:
            raise ConfigError(f"domain_patience must be >= 1, got {self.domain_patience}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must lie in [0, 1], got {self.threshold}")
        if self.max_p_false_positive is not None and not 0.0 < self.max_p_false_positive <= 1.0:
            raise ConfigError(f"max_p_false_positive must lie in (0, 1], got {self.max_p_false_positive}")
        if self.region not in REGIONS:
            raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {self.region!r}")

    def check_classes(self, class_names: list[str]) -> None:
        """Raise :class:`~.errors.ConfigError` when ``road_class`` is needed (region ``road`` or
        ``brake.use_road``) but is not one of ``class_names``."""
        if (self.region == "road" or self.brake.use_road) and self.road_class not in class_names:
            raise ConfigError(f"road_class {self.road_class!r} is not one of the bundle's classes "
                             f"({', '.join(class_names)}); needed by region 'road' and brake.use_road")  # fmt: skip


@dataclass(frozen=True)
class ComponentInfo:
    """One connected component of the OoD mask (pixel coordinates at the frame's native resolution).

    Attributes:
        id: label k in ``FrameResult.labels`` (1-based, raster order of first pixel on the metric grid).
        bbox: (x_min, y_min, x_max, y_max), inclusive pixel coordinates.
        area: pixels.
        centroid: (x, y) in pixels.
        p_false_positive: meta-classifier probability that the component is a false positive (0 without one).
        kept: P(false positive) < the pipeline's cut (part of ``mask``).
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
class FrameAnalysis:
    """Stages 1–6 of one frame on the metric grid: what offline evaluation and metric extraction read.

    Attributes:
        mapping: correspondence of the frame and the metric grid.
        probs: (C, h, w) float32 softmax probabilities at the metric resolution.
        score: (h, w) float32 anomaly score in [0, 1].
        region: (h, w) bool region components may lie in (None = everywhere).
        ood: (h, w) bool OoD mask a ≥ t inside the region.
        table: the components' 75 metrics (with ``iou`` / ``iou0`` when a target was given).
        labels: (h, w) int32 component labels (0 = none, k = row k − 1 of ``table``).
        p_false_positive: (N,) float64 meta-classifier P(false positive) (zeros without a meta classifier).
        kept: (N,) bool, P(false positive) < the cut.
        target: (h, w) uint8 target on the metric grid (None without one).
        network_input: (1, 3, h', w') float32 normalized network input (what the domain monitor reads).
    """

    mapping: FrameMapping
    probs: npt.NDArray[np.float32]
    score: npt.NDArray[np.float32]
    region: npt.NDArray[np.bool_] | None
    ood: npt.NDArray[np.bool_]
    table: ComponentMetrics
    labels: npt.NDArray[np.int32]
    p_false_positive: npt.NDArray[np.float64]
    kept: npt.NDArray[np.bool_]
    target: npt.NDArray[np.uint8] | None
    network_input: npt.NDArray[np.float32] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class FrameResult:
    """Output of :meth:`AnomalyPipeline.process` for one (H, W, 3) frame.

    Attributes:
        score: (H, W) float32 anomaly score in [0, 1] (bilinear from the metric grid).
        mask: (H, W) uint8, 1 = pixel of a kept anomaly component, 0 otherwise.
        labels: (H, W) int32 component labels (0 = no component, k = ``components[k - 1]``).
        components: every component of the thresholded score, kept or not.
        brake: the brake hint after this frame (unavailable after ``domain_patience`` frames outside the domain).
        timings_ms: wall time per stage (:data:`STAGES`) and ``total``, milliseconds.
        analysis: the metric-grid stages (probabilities, table, targets) behind this result.
        domain: the domain monitor's decision for this frame (in domain, score 0.0 and a reason saying so while
            the bundle has no domain calibration).
    """

    score: npt.NDArray[np.float32]
    mask: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int32]
    components: tuple[ComponentInfo, ...]
    brake: BrakeHint
    timings_ms: dict[str, float]
    analysis: FrameAnalysis | None = field(default=None, repr=False, compare=False)
    domain: DomainStatus = field(default_factory=monitor_off)

    @property
    def kept(self) -> tuple[ComponentInfo, ...]:
        """The components that survived the meta classifier."""
        return tuple(c for c in self.components if c.kept)


class AnomalyPipeline:
    """Frame → :class:`FrameResult` (see the module docstring). Not thread-safe: one pipeline per stream."""

    def __init__(
        self, bundle: Bundle, backend: Backend, config: PipelineConfig | None = None, *, warn_uncalibrated: bool = True
    ) -> None:
        """``warn_uncalibrated``: log (once per bundle and process) that a bundle without a domain calibration runs
        with the domain monitor off; the calibration itself, about to write one, passes False."""
        self.bundle = bundle
        self.backend = backend
        self._warned: set[str] = set()
        self._mappings: dict[tuple[int, int], FrameMapping] = {}
        if bundle.meta_classifier is None:
            self._warn_once("no-meta", f"bundle {bundle.root} has no meta classifier: every component is kept")
        names = bundle.class_names
        self._domain_classes = tuple(names.index(c) if c in names else -1 for c in (DEFAULT_ROAD_CLASS, SKY_CLASS))
        self._domain_run = 0
        root = bundle.root.resolve()
        if bundle.domain is None and warn_uncalibrated and root not in _WARNED_NO_DOMAIN:
            _WARNED_NO_DOMAIN.add(root)
            LOG.warning("bundle %s has no domain calibration ('domain' in bundle.json): the domain monitor is off "
                        "(frames from another world are not detected; calibrate it with "
                        "meta_ood_training.domain_calibration or make-bundle --calibration)", bundle.root)  # fmt: skip
        self.configure(config or PipelineConfig())

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | str | Path,
        backend: str = "onnxruntime",
        *,
        config: PipelineConfig | None = None,
        warn_uncalibrated: bool = True,
        **options: Any,
    ) -> AnomalyPipeline:
        """Load ``bundle`` (a :class:`Bundle`, a directory or ``"default"``) and create ``backend`` with ``options``
        (``warn_uncalibrated``: see the constructor)."""
        loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        return cls(loaded, create_backend(backend, loaded, **options), config, warn_uncalibrated=warn_uncalibrated)

    @property
    def metric_size(self) -> tuple[int, int]:
        """(h, w) of the metric grid (the bundle's)."""
        return self.bundle.metric_size

    def configure(self, config: PipelineConfig) -> None:
        """Apply new settings (threshold, meta-classifier cut, region, brake policy, road class); the brake history
        restarts.

        Raises:
            ConfigError: ``config.road_class`` is not a class of the bundle while region ``road`` or
                ``brake.use_road`` needs it (nothing is changed then).
        """
        config.check_classes(self.bundle.class_names)
        self.config = config
        self.threshold = self.bundle.threshold if config.threshold is None else config.threshold
        cut = config.max_p_false_positive
        self.max_p_false_positive = self.bundle.max_p_false_positive if cut is None else cut
        names = self.bundle.class_names
        self.road_index = names.index(config.road_class) if config.road_class in names else -1
        self.brake_policy = BrakeHintPolicy(config.brake)
        self._domain_run = 0
        self._check_regime()

    def reset(self) -> None:
        """Forget the brake history and the run of frames outside the domain (new drive, gap in the stream)."""
        self.brake_policy.reset()
        self._domain_run = 0

    def warm_up(self, height: int | None = None, width: int | None = None) -> float:
        """Run one grey frame (default: the bundle's input size) so that the first real frame does not pay for
        loading kernels and allocating buffers (the grey frame has no components: :func:`compile_kernels` loads
        or compiles the component kernels too); the brake history is reset afterwards. Returns its milliseconds."""
        compile_kernels()
        h, w = height or self.bundle.input_size[0], width or self.bundle.input_size[1]
        result = self.process(np.full((h, w, 3), 128, np.uint8))
        self.reset()
        return result.timings_ms["total"]

    # ----------------------------------------------------------------------------------------------- the stages

    def preprocess(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Stage 1: the (1, 3, h', w') float32 network input of an (H, W, 3) uint8 RGB frame (the bundle's input
        size, mean and std).

        Raises:
            InputError: a bad frame (not an array, empty, wrong shape or dtype, too large).
        """
        frame = check_frame(image)
        return to_network_input(frame, self.bundle.input_size, self.bundle.mean, self.bundle.std)

    def network(self, image: npt.NDArray[np.uint8]) -> dict[str, npt.NDArray[Any]]:
        """Stages 1–2: the backend's outputs (``logits`` (1, C, h', w'), optionally ``probs`` / ``score``)."""
        return self.backend.run(self.preprocess(image))

    def probabilities(self, outputs: Mapping[str, Any]) -> npt.NDArray[np.float32]:
        """Stage 3: (C, h, w) float32 softmax at the metric resolution.

        Raises:
            FaultError: network output of the wrong shape or with non-finite values.
        """
        size = self.metric_size
        probs = outputs.get("probs")
        if probs is not None and tuple(probs.shape[2:]) == size:
            if probs.ndim != 4 or probs.shape[1] != self.bundle.num_classes:
                raise FaultError(f"network output 'probs' has shape {probs.shape}, expected "
                                 f"(1, {self.bundle.num_classes}, {size[0]}, {size[1]})")  # fmt: skip
            p = np.asarray(probs[0], np.float32)
            if not np.isfinite(p).all():
                raise FaultError("network output holds non-finite probabilities (NaN / inf)")
            return p
        logits = outputs["logits"]
        if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[1] != self.bundle.num_classes:
            raise FaultError(
                f"network output 'logits' has shape {logits.shape}, expected (1, {self.bundle.num_classes}, h, w)"
            )
        return logits_to_probs(np.asarray(logits[0], np.float32), size)

    def anomaly_score(self, outputs: Mapping[str, Any], probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Stage 4: (h, w) float32 anomaly score a = entropy / log C in [0, 1] (the graph's, when it returns one at
        the metric resolution).

        Raises:
            FaultError: a non-finite score from the graph (NaN would read as "no anomaly").
        """
        score = outputs.get("score")
        if score is not None and tuple(score.shape[1:]) == self.metric_size:
            s = np.asarray(score[0], np.float32)
            if not np.isfinite(s).all():
                raise FaultError(f"network output holds {int((~np.isfinite(s)).sum())} non-finite score values")
            return np.clip(s, 0.0, 1.0)
        return np.asarray(anomaly_score(probs), np.float32)

    def region(
        self, probs: npt.NDArray[np.float32], target: npt.NDArray[np.uint8] | None = None, void_label: int = 255
    ) -> npt.NDArray[np.bool_] | None:
        """Stage 5a: (h, w) bool region components may lie in — the target's labelled region (``!= void_label``)
        when a target is given (the LostAndFound protocol), else :func:`drivable_region` for ``region="road"``, else
        None (everywhere)."""
        if target is not None:
            return np.asarray(target != void_label)
        if self.config.region == "road":
            return drivable_region(probs, self.road_index)
        return None

    def components(
        self,
        probs: npt.NDArray[np.float32],
        score: npt.NDArray[np.float32],
        region: npt.NDArray[np.bool_] | None,
        target: npt.NDArray[np.uint8] | None = None,
        *,
        ood_label: int = 1,
        void_label: int = 255,
    ) -> tuple[npt.NDArray[np.bool_], ComponentMetrics]:
        """Stage 5b: the OoD mask a ≥ t inside ``region`` and its component table (with targets from ``target``)."""
        mask = ood_mask(score, self.threshold, region)
        table = component_metrics(probs, mask, target, ood_label=ood_label, void_label=void_label, validate=False)
        return mask, table

    def classify(self, table: ComponentMetrics) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Stage 6: (N,) float64 P(false positive) and (N,) bool kept (P < the cut). Without a meta classifier
        every component is kept with P = 0."""
        n = len(table)
        meta = self.bundle.meta_classifier
        p_fp = meta.predict_proba(table) if n and meta is not None else np.zeros(n)
        return p_fp, np.asarray(p_fp < self.max_p_false_positive)

    def domain_status(self, analysis: FrameAnalysis) -> DomainStatus:
        """Stage 7: the domain monitor's decision for one analysed frame (:mod:`.domain`; statistics of the network
        input, the probabilities and the score). Stateless: the run of frames outside the domain is counted by
        :meth:`process`."""
        if analysis.network_input is None:
            raise InputError("the domain monitor needs the analysis' network input")
        road, sky = self._domain_classes
        features = frame_features(analysis.network_input, self.bundle.mean, self.bundle.std, analysis.probs,
                                  analysis.score, road_index=road, sky_index=sky,
                                  frame_size=analysis.mapping.frame_size)  # fmt: skip
        calibration = self.bundle.domain
        return monitor_off(features) if calibration is None else calibration.check(features)

    def analyze(
        self,
        image: npt.NDArray[np.uint8],
        target: npt.NDArray[np.integer[Any]] | None = None,
        *,
        ood_label: int = 1,
        void_label: int = 255,
        stopwatch: Stopwatch | None = None,
        region_from: RegionSource = "target",
    ) -> FrameAnalysis:
        """Stages 1–6 of one (H, W, 3) uint8 RGB frame on the metric grid.

        Args:
            image: the camera frame, any size.
            target: optional (H, W) integer ground truth at the frame's resolution (``ood_label`` = anomaly,
                ``void_label`` = outside the labelled region); it is sampled onto the metric grid (nearest
                neighbour), restricts the components to its labelled region (``region_from="target"``) and gives
                the ``iou`` / ``iou0`` targets of the table.
            stopwatch: receives the wall time of stages 1–6 (:data:`STAGES`); None = not timed.
            region_from: with a target, where components may lie: ``"target"`` — its labelled region (the
                LostAndFound protocol); ``"deployed"`` — the region the pipeline uses without a target
                (``PipelineConfig.region``, what the node runs), the target only labelling the components (a
                component without an ``ood_label`` pixel is a false positive, void pixels included). Without a
                target the region is always the deployed one.

        Raises:
            ConfigError: ``region_from`` is neither ``"target"`` nor ``"deployed"``.
            InputError: a bad frame or a target of another size or dtype.
            FaultError: bad network output (misshaped, non-finite); the backend's own
                :class:`~.backends.BackendError` when it fails.
        """
        if region_from not in REGION_SOURCES:
            raise ConfigError(f"region_from must be one of {', '.join(REGION_SOURCES)}, got {region_from!r}")
        sw = stopwatch or Stopwatch()
        with sw.stage("preprocess"):
            frame = check_frame(image)
            mapping = self._mapping(frame.shape[:2])
            if target is not None:
                target = np.asarray(target)
                if target.shape != frame.shape[:2]:
                    raise InputError(f"target has shape {target.shape}, the frame {frame.shape[:2]}")
                if target.dtype.kind not in "ui" or (target.size and (target.min() < 0 or target.max() > 255)):
                    raise InputError("target must hold integer labels in 0..255 (ood_label, void_label, classes)")
            batch = self.preprocess(frame)
        with sw.stage("inference"):
            outputs = self.backend.run(batch)
        with sw.stage("upsample"):
            probs = self.probabilities(outputs)
        with sw.stage("score"):
            score = self.anomaly_score(outputs, probs)
        with sw.stage("components"):
            grid_target = None if target is None else np.asarray(mapping.to_metric(target), np.uint8)
            deployed = grid_target is not None and region_from == "deployed"
            region = self.region(probs, None if deployed else grid_target, void_label)
            table_target = grid_target
            if deployed:  # the target labels the components only: no pixel of it is void
                inside = np.uint8(_not_label(ood_label, void_label))
                table_target = np.where(grid_target == ood_label, np.uint8(ood_label), inside)
            ood, table = self.components(probs, score, region, table_target, ood_label=ood_label,
                                         void_label=void_label)  # fmt: skip
            labels = np.abs(table.components).astype(np.int32, copy=False)
        with sw.stage("meta"):
            p_fp, kept = self.classify(table)
        return FrameAnalysis(mapping, probs, score, region, ood, table, labels, p_fp, kept, grid_target, batch)

    def process(
        self,
        image: npt.NDArray[np.uint8],
        target: npt.NDArray[np.integer[Any]] | None = None,
        *,
        ood_label: int = 1,
        void_label: int = 255,
        region_from: RegionSource = "target",
    ) -> FrameResult:
        """Run all stages on an (H, W, 3) uint8 RGB frame (``target``, ``region_from``: see :meth:`analyze`;
        offline evaluation).

        Raises:
            ConfigError: a bad ``region_from``.
            InputError: a bad frame (not an array, empty, wrong shape or dtype, too large) or target.
            FaultError: the backend failed (:class:`~.backends.BackendError`) or its output is misshaped or
                non-finite. Either way the brake history is left as it was.
        """
        sw = Stopwatch()
        analysis = self.analyze(image, target, ood_label=ood_label, void_label=void_label, stopwatch=sw,
                                region_from=region_from)  # fmt: skip
        self._check_aspect(analysis.mapping)
        mapping, labels, kept, p_fp = analysis.mapping, analysis.labels, analysis.kept, analysis.p_false_positive
        n = len(analysis.table)
        with sw.stage("domain"):
            domain = self.domain_status(analysis)
            self._domain_run = 0 if domain.in_domain else self._domain_run + 1
        with sw.stage("brake"):
            road = None
            if self.config.brake.use_road:
                road = np.argmax(analysis.probs, axis=0) == self.road_index
            pixel_area = None if mapping.identity else mapping.pixel_area()
            corridor = self.brake_policy.corridor_areas(labels, n, road, pixel_area)
            patience = self.config.domain_patience
            if self._domain_run >= patience:  # fail-safe: no brake decision on a foreign world
                hint = self.brake_policy.unavailable(f"{domain.reason} ({self._domain_run} frames in a row)")
            elif self._domain_run:  # outside, but not yet for long: no evidence either way, the previous state is held
                hint = self.brake_policy.hold(f"frame outside the bundle's domain ({self._domain_run} of {patience} "
                                              "in a row before the hint is unavailable) adds no evidence")  # fmt: skip
            else:
                hint = self.brake_policy.update(labels, p_fp, road, areas=corridor, kept=kept)  # removed never count
        with sw.stage("output"):
            frame_labels = mapping.to_frame_labels(labels)
            kept_mask = np.concatenate([np.zeros(1, np.uint8), kept.astype(np.uint8)])[frame_labels]
            score = mapping.to_frame_score(analysis.score)
            components = _component_infos(mapping, labels, n, p_fp, kept, corridor)
        return FrameResult(score, kept_mask, frame_labels, components, hint, sw.with_total(), analysis, domain)

    # ------------------------------------------------------------------------------------------------- helpers

    def _mapping(self, frame_size: tuple[int, int]) -> FrameMapping:
        mapping = self._mappings.get(frame_size)
        if mapping is None:
            if len(self._mappings) >= 8:  # camera sizes change rarely; keep the cache small
                self._mappings.pop(next(iter(self._mappings)))
            mapping = self._mappings[frame_size] = FrameMapping.create(frame_size, self.metric_size)
        return mapping

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            LOG.warning("%s", message)

    def _check_regime(self) -> None:
        """Warn once when the configuration leaves the regime the meta classifier was trained in."""
        regime = self.bundle.meta_training
        if self.bundle.meta_classifier is None or regime is None:
            return
        trained_t = regime.get("threshold")
        if isinstance(trained_t, float | int) and abs(float(trained_t) - self.threshold) > 1e-9:
            self._warn_once(
                "threshold", f"threshold {self.threshold:g} differs from the {float(trained_t):g} the bundle's meta "
                "classifier was trained with: its decisions are outside their regime",
            )  # fmt: skip
        trained_size = regime.get("metric_size")
        if isinstance(trained_size, list) and tuple(trained_size) != self.metric_size:
            self._warn_once("metric_size", f"the bundle computes metrics at {self.metric_size[0]}×{self.metric_size[1]}"
                            f" but its meta classifier was trained at {trained_size[0]}×{trained_size[1]}")  # fmt: skip
        trained_input = regime.get("input_size")
        if isinstance(trained_input, list) and tuple(trained_input) != self.bundle.input_size:
            self._warn_once("input_size", f"the bundle runs its network at {self.bundle.input_size[0]}×"
                            f"{self.bundle.input_size[1]} but its meta classifier was trained on components of a "
                            f"network run at {trained_input[0]}×{trained_input[1]}: its decisions are outside their "
                            "regime")  # fmt: skip
        trained_region = regime.get("region")
        if trained_region == "frame" and self.config.region != "frame":
            self._warn_once("region", "the meta classifier was trained on components anywhere in the frame, the "
                            f"pipeline restricts them to region {self.config.region!r}")  # fmt: skip

    def _check_aspect(self, mapping: FrameMapping) -> None:
        regime = self.bundle.meta_training
        if regime is None or self.bundle.meta_classifier is None or "aspect_ratio" not in regime:
            return
        h, w = mapping.frame_size
        trained = float(regime["aspect_ratio"])
        if abs(w / h - trained) > ASPECT_TOLERANCE * trained:
            self._warn_once(
                "aspect", f"{h}×{w} frames (aspect {w / h:.2f}) differ from the aspect {trained:.2f} the bundle's "
                "meta classifier was trained on: the network sees the scene stretched",
            )  # fmt: skip


def drivable_region(probs: npt.NDArray[np.float32], road_index: int) -> npt.NDArray[np.bool_]:
    """(h, w) bool: in every row, the pixels from the leftmost to the rightmost pixel predicted as class
    ``road_index`` (the road and whatever stands on it); rows without road are empty.

    Args:
        probs: (C, h, w) float32 class probabilities.
        road_index: channel of the road class.
    """
    road = np.argmax(probs, axis=0) == road_index
    w = road.shape[1]
    any_road = road.any(axis=1)
    first = np.argmax(road, axis=1)
    last = w - 1 - np.argmax(road[:, ::-1], axis=1)
    cols = np.arange(w)
    region: npt.NDArray[np.bool_] = (cols >= first[:, None]) & (cols <= last[:, None]) & any_road[:, None]
    return region


def _not_label(*labels: int) -> int:
    """The smallest label in 0..255 that is none of ``labels`` (an in-distribution label for component targets)."""
    return next(v for v in range(256) if v not in labels)


def _component_infos(
    mapping: FrameMapping,
    labels: npt.NDArray[np.int32],
    n: int,
    p_fp: npt.NDArray[np.float64],
    kept: npt.NDArray[np.bool_],
    corridor: npt.NDArray[np.int64],
) -> tuple[ComponentInfo, ...]:
    """One :class:`ComponentInfo` per component, geometry in frame pixels (:meth:`FrameMapping.component_geometry`)."""
    bboxes, areas, centroids = mapping.component_geometry(labels, n)
    return tuple(
        ComponentInfo(
            id=k + 1, bbox=bboxes[k], area=int(areas[k]), centroid=(float(centroids[k, 0]), float(centroids[k, 1])),
            p_false_positive=float(p_fp[k]), kept=bool(kept[k]), corridor_area=int(corridor[k]),
        )
        for k in range(n)
    )  # fmt: skip
