"""Emergency-brake hint: anomalies that persist inside the drivable corridor, survive the meta classifier and carry
enough risk to be worth braking for.

A frame *hits* when some component has at least ``min_area_px`` pixels (camera pixels) inside the corridor polygon
(optionally intersected with the predicted road) and a meta-classifier probability of being a false positive below
``max_p_false_positive``. A hazard is *seen* once at least ``persistence_k`` of the last ``persistence_n`` frames hit
(only a hit frame turns it on: one-frame flicker is never seen) and stays seen until ``release_frames`` consecutive
frames without a hit (hysteresis: a hazard that flickers out for a frame stays seen).

``risk`` in [0, 1] = (hits in the window / n) × the confidence of the strongest hazard in the window, where a
component's confidence is (1 − P(false positive)) × min(1, A / ``full_risk_area_px``) and A is its area inside the
corridor in camera pixels (labels on a coarser grid count each cell as the camera pixels it covers).

Size and distance: the risk reads no position inside the corridor; distance enters through the apparent size only.
A hazard of physical size w × h at distance d covers about A ≈ f² · w · h / d² camera pixels (f: focal length in
pixels), so A grows with the square of the hazard's nearness and with the camera's resolution: ``min_area_px`` and
``full_risk_area_px`` are camera pixels and scale with the camera's pixel count. A confident hazard (P(FP) ≈ 0) hit
in all n frames reaches ``min_risk`` at A = ``min_risk`` × ``full_risk_area_px`` (500 px at the defaults), i.e. when
it is big enough in the image, which for a given object means near enough, and earlier for a bigger object. A weight
by the image row (nearer = lower) is deliberately not applied: it would fix one braking distance in image rows for
small and big hazards alike, that row depends on the camera's mounting and pitch, and the policy does not know the
speed that a braking distance would need; on the demo drives it removed no false brake event (README).

States (:attr:`BrakeHint.state`): ``clear``; ``candidate`` (a hit, not yet persistent); ``warn`` (seen, risk below
``min_risk`` so far: hazard seen, not yet worth braking); ``brake`` (:attr:`BrakeHint.active`: seen, and on some hit
frame since it was seen the risk reached ``min_risk``); ``unavailable``. An active hint stays active until the
hazard is released (a risk that dips below ``min_risk`` while the hazard is still seen keeps it on), then the state
returns to ``clear``; ``min_risk`` = 0 brakes on every seen hazard. Default 0.25: it never delays a hazard covering
``full_risk_area_px`` with P(FP) < 0.625 (risk (k/n)(1 − P) ≥ 0.25 at the k-th hit with k/n = 2/3); it holds back
only hazards that are small in the image (far or tiny) or doubtful.

The hint also has an explicit fail-safe state: :meth:`BrakeHintPolicy.unavailable` (perception down) gives
``available=False`` — consumers must treat it as "no information", never as "no hazard". :meth:`BrakeHintPolicy.hold`
answers a frame that is no evidence either way (the pipeline's frames outside the bundle's domain, before they make
the hint unavailable): the history does not advance and the previous state is repeated.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from .errors import ConfigError, InputError

#: A trapezoid ahead of the ego vehicle in normalized (x, y) image coordinates (0, 0 = top left, 1, 1 = bottom right).
DEFAULT_CORRIDOR: tuple[tuple[float, float], ...] = ((0.2, 1.0), (0.42, 0.5), (0.58, 0.5), (0.8, 1.0))


def _describe(default: Any, description: str) -> Any:
    """A dataclass field with ``default`` and a one-line ``description`` (units included) in its metadata: the ROS
    parameter table reads defaults and descriptions of ``brake.*`` from here."""
    return field(default=default, metadata={"description": description})


@dataclass(frozen=True)
class BrakeConfig:
    """Brake-hint policy settings (validated on construction; a bad value raises :class:`ConfigError` naming it as
    ``brake.<field>``). Each field's ``metadata["description"]`` is its one-line description.

    Attributes:
        corridor: polygon of ≥ 3 (x, y) vertices in normalized image coordinates, each in [0, 1].
        use_road: intersect the corridor with the pixels the network labels as road.
        min_area_px: pixels a component needs inside the corridor, at native resolution.
        max_p_false_positive: components whose meta-classifier P(false positive) reaches it are ignored (the
            pipeline passes removed components with P = 1, so 1.0 counts exactly the components its mask keeps).
        persistence_k: hits needed among the last ``persistence_n`` frames to turn the hint on.
        persistence_n: length of the persistence window, in frames.
        release_frames: consecutive frames without a hit before an active hint turns off.
        full_risk_area_px: corridor area (pixels) at which a component's confidence stops growing with its size.
        min_risk: risk in [0, 1] a persistent hazard needs to turn the hint active; below it the hint only warns.
    """

    corridor: tuple[tuple[float, float], ...] = _describe(
        DEFAULT_CORRIDOR,
        "corridor polygon ahead of the vehicle: (x, y) vertices in normalized image coordinates [0, 1]",
    )
    use_road: bool = _describe(False, "intersect the corridor with the pixels the network labels as road")
    min_area_px: int = _describe(100, "camera pixels a component needs inside the corridor to count as a hit")
    max_p_false_positive: float = _describe(
        1.0, "components with meta-classifier P(false positive) at or above this are ignored, in [0, 1]"
    )
    persistence_k: int = _describe(2, "hit frames needed among the last persistence_n to report a hazard")
    persistence_n: int = _describe(3, "length of the persistence window, in frames")
    release_frames: int = _describe(5, "consecutive frames without a hit before a reported hazard is released")
    full_risk_area_px: int = _describe(
        2000, "camera pixels inside the corridor at which a component's risk stops growing with its size"
    )
    min_risk: float = _describe(0.25, "risk in [0, 1] a persistent hazard needs to turn the brake hint active")

    def __post_init__(self) -> None:
        corridor = tuple((float(x), float(y)) for x, y in self.corridor)
        if len(corridor) < 3:
            raise ConfigError(f"brake.corridor needs at least 3 vertices, got {len(corridor)}")
        if not all(0.0 <= v <= 1.0 and math.isfinite(v) for xy in corridor for v in xy):
            raise ConfigError(f"brake.corridor vertices must lie in [0, 1] (normalized image coordinates): {corridor}")
        object.__setattr__(self, "corridor", corridor)
        if self.min_area_px < 1:
            raise ConfigError(f"brake.min_area_px must be >= 1, got {self.min_area_px}")
        if not 0.0 <= self.max_p_false_positive <= 1.0:
            raise ConfigError(f"brake.max_p_false_positive must lie in [0, 1], got {self.max_p_false_positive}")
        if self.persistence_n < 1 or not 1 <= self.persistence_k <= self.persistence_n:
            raise ConfigError(
                f"brake.persistence_k / brake.persistence_n need 1 <= k <= n, got k={self.persistence_k}, "
                f"n={self.persistence_n}"
            )
        if self.release_frames < 1:
            raise ConfigError(f"brake.release_frames must be >= 1, got {self.release_frames}")
        if self.full_risk_area_px < 1:
            raise ConfigError(f"brake.full_risk_area_px must be >= 1, got {self.full_risk_area_px}")
        if not 0.0 <= self.min_risk <= 1.0:  # also refuses NaN
            raise ConfigError(f"brake.min_risk must lie in [0, 1], got {self.min_risk}")


#: What a hint says, from most to least severe: ``unavailable`` (perception down: no information), ``brake`` (a
#: persistent hazard with risk ≥ ``min_risk``: brake recommended), ``warn`` (a persistent hazard, risk below
#: ``min_risk`` so far: seen, not yet worth braking), ``candidate`` (a hit, not yet persistent), ``clear``.
BrakeState = Literal["unavailable", "brake", "warn", "candidate", "clear"]
BRAKE_STATES: tuple[BrakeState, ...] = ("unavailable", "brake", "warn", "candidate", "clear")


@dataclass(frozen=True)
class BrakeHint:
    """The hint for one frame.

    Attributes:
        active: brake recommended: a persistent hazard (``seen``) whose risk reached ``min_risk`` (see the module
            docstring); it stays on until the hazard is released.
        risk: in [0, 1] (see the module docstring); 1.0 while perception is unavailable.
        reason: one human-readable line.
        available: False when perception is unavailable (fail-safe: the consumer must not read "no hazard").
        hit: this frame had a qualifying hazard.
        hits_in_window: qualifying frames among the last ``persistence_n``.
        component_ids: ids (1-based labels) of this frame's qualifying components.
        seen: a persistent hazard is reported (``persistence_k`` of ``persistence_n`` frames hit, not yet released),
            whatever its risk; ``seen and not active`` is the warning "hazard seen, not yet worth braking".
    """

    active: bool
    risk: float
    reason: str
    available: bool = True
    hit: bool = False
    hits_in_window: int = 0
    component_ids: tuple[int, ...] = ()
    seen: bool = False

    @property
    def state(self) -> BrakeState:
        """The hint as one of :data:`BrakeState` (``unavailable`` > ``brake`` > ``warn`` > ``candidate`` >
        ``clear``)."""
        if not self.available:
            return "unavailable"
        if self.active:
            return "brake"
        if self.seen:
            return "warn"
        return "candidate" if self.hit else "clear"


@dataclass
class BrakeHintPolicy:
    """Stateful policy: call :meth:`update` once per frame, in stamp order (see the module docstring)."""

    config: BrakeConfig = field(default_factory=BrakeConfig)

    def __post_init__(self) -> None:
        self._window: deque[tuple[bool, float]] = deque(maxlen=self.config.persistence_n)
        self._seen = False
        self._active = False
        self._clear_run = 0
        self._corridor_cache: dict[tuple[int, int], npt.NDArray[np.bool_]] = {}

    def reset(self) -> None:
        """Forget the history (e.g. after a gap in the stream)."""
        self._window.clear()
        self._seen = False
        self._active = False
        self._clear_run = 0

    def corridor_mask(self, height: int, width: int) -> npt.NDArray[np.bool_]:
        """(height, width) bool mask of the corridor polygon at that resolution (cached per size)."""
        key = (height, width)
        if key not in self._corridor_cache:
            if len(self._corridor_cache) >= 8:  # frame sizes change rarely; keep the cache small
                self._corridor_cache.pop(next(iter(self._corridor_cache)))
            pts = np.array([(x * (width - 1), y * (height - 1)) for x, y in self.config.corridor], np.float64)
            mask = np.zeros((height, width), np.uint8)
            cv2.fillPoly(mask, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
            self._corridor_cache[key] = mask.astype(bool)
        return self._corridor_cache[key]

    def corridor_areas(
        self,
        labels: npt.NDArray[np.integer],
        n_components: int,
        road: npt.NDArray[np.bool_] | None = None,
        pixel_area: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.int64]:
        """Pixels of each component 1..n inside the corridor (∩ road if configured): (n,) int64.

        ``pixel_area`` (same shape as ``labels``) counts each label pixel as that many camera pixels, for labels
        computed on a coarser grid than the camera's (the pipeline's metric resolution); default 1 each.
        """
        region = self.corridor_mask(*labels.shape)
        if self.config.use_road and road is not None:
            region = region & road
        inside = labels[region]
        keep = inside > 0
        weights = None if pixel_area is None else pixel_area[region][keep]
        counts = np.bincount(inside[keep], weights=weights, minlength=n_components + 1)[1 : n_components + 1]
        return np.rint(counts).astype(np.int64)

    def update(
        self,
        labels: npt.NDArray[np.integer],
        p_false_positive: npt.ArrayLike,
        road: npt.NDArray[np.bool_] | None = None,
        *,
        areas: npt.NDArray[np.int64] | None = None,
        kept: npt.NDArray[np.bool_] | None = None,
    ) -> BrakeHint:
        """Advance one frame.

        Args:
            labels: (H, W) integer component labels (the pipeline's metric grid), 0 = background, k = component k.
            p_false_positive: (n,) meta-classifier P(false positive) of components 1..n.
            road: (H, W) bool predicted road, used when ``config.use_road``.
            areas: (n,) corridor pixels per component if the caller already has :meth:`corridor_areas`.
            kept: (n,) bool, the components the pipeline's meta-classifier cut keeps (default: all); removed ones
                never count.

        Raises:
            InputError: misshaped labels, road mask, areas or keep flags.
        """
        p_fp = np.asarray(p_false_positive, dtype=np.float64).reshape(-1)
        if labels.ndim != 2:
            raise InputError(f"brake policy: labels must be (H, W), got shape {labels.shape}")
        if road is not None and road.shape != labels.shape:
            raise InputError(f"brake policy: road mask {road.shape} differs from labels {labels.shape}")
        cfg = self.config
        if areas is None:
            areas = self.corridor_areas(labels, len(p_fp), road)
        elif areas.shape != p_fp.shape:
            raise InputError(f"brake policy: {areas.shape[0]} corridor areas for {p_fp.shape[0]} components")
        in_corridor = areas >= cfg.min_area_px
        if kept is None:
            kept = np.ones(p_fp.shape, bool)
        elif kept.shape != p_fp.shape:
            raise InputError(f"brake policy: {kept.shape[0]} keep flags for {p_fp.shape[0]} components")
        qualifies = in_corridor & kept & (p_fp < cfg.max_p_false_positive)
        ids = tuple(int(i) + 1 for i in np.flatnonzero(qualifies))
        hit = bool(qualifies.any())
        confidence = (1.0 - p_fp) * np.minimum(1.0, areas / cfg.full_risk_area_px)
        frame_conf = float(confidence[qualifies].max()) if hit else 0.0
        self._window.append((hit, frame_conf))
        hits, risk = self._evidence()
        self._clear_run = 0 if hit else self._clear_run + 1
        if not self._seen and hit and hits >= cfg.persistence_k:  # only a frame with a hazard turns it on
            self._seen = True
        elif self._seen and self._clear_run >= cfg.release_frames:  # released: the brake goes with the hazard
            self._seen = self._active = False
        if self._seen and hit and risk >= cfg.min_risk:
            self._active = True
        if hit:
            best = ids[int(np.argmax(confidence[qualifies]))]
            what = f"component {best}, {int(areas[best - 1])} px in corridor, P(FP) {p_fp[best - 1]:.2f}"
            if self._active:
                state = "brake"
            elif self._seen:
                state = f"warn (risk {risk:.2f} below min_risk {cfg.min_risk:.2f})"
            else:
                state = f"candidate ({hits}/{cfg.persistence_k} frames needed)"
            reason = f"{state}: hazard in corridor: {what}; {hits} of last {len(self._window)} frames"
        elif self._seen:
            state = "brake" if self._active else "warn"
            reason = f"{state} (holding): no hazard for {self._clear_run} of {cfg.release_frames} frames to release"
        elif (in_corridor & ~qualifies).any():
            j = int(np.flatnonzero(in_corridor & ~qualifies)[0])
            reason = f"clear: component {j + 1} in corridor rejected by the meta classifier (P(FP) {p_fp[j]:.2f})"
        elif len(p_fp):
            reason = f"clear: {len(p_fp)} component(s), none with {cfg.min_area_px} px in the corridor"
        else:
            reason = "clear: no anomaly"
        return BrakeHint(self._active, risk, reason, True, hit, hits, ids, self._seen)

    def _evidence(self) -> tuple[int, float]:
        """(hits in the window, risk in [0, 1]) from the persistence window."""
        hits = sum(h for h, _ in self._window)
        risk = hits / self.config.persistence_n * max((c for _, c in self._window), default=0.0)
        return hits, float(min(max(risk, 0.0), 1.0))

    def hold(self, reason: str) -> BrakeHint:
        """The hint for a frame that adds no evidence either way (e.g. one the domain monitor puts outside the
        bundle's domain): the history does not advance — no hit, no step towards release — and the previous
        frame's state is repeated (brake stays brake, warn stays warn, clear stays clear), with ``reason``."""
        hits, risk = self._evidence()
        state = "brake" if self._active else "warn" if self._seen else "clear"
        return BrakeHint(self._active, risk, f"{state} (held): {reason}", True, False, hits, (), self._seen)

    def unavailable(self, reason: str, *, reset: bool = True) -> BrakeHint:
        """Fail-safe hint for a frame perception could not process.

        ``reset`` forgets the history (a backend failure, an input timeout); a single bad input frame passes
        ``reset=False`` so that one corrupt frame cannot cancel the persistence of a real hazard.
        """
        if reset:
            self.reset()
        return BrakeHint(False, 1.0, f"perception unavailable: {reason}", available=False)
