"""Domain monitor: tells whether a camera frame comes from the world the bundle was trained and calibrated on.

The anomaly score flags *objects* the network does not know inside a scene it does know. A frame from another world
altogether (the embedded default bundle, trained only on :mod:`meta_ood_training.synthetic`, looking at a real
photograph; a real bundle at night, in fog, with a covered or broken camera) makes every later stage meaningless,
and a brake hint computed on it must not be trusted. The monitor compares a few cheap per-frame statistics with
their distribution on in-domain frames, recorded in the bundle (``bundle.json``: ``domain``):

* what the network makes of the frame, on the pipeline's metric grid: the mean anomaly score, the mean confidence
  (largest softmax probability), the fraction of the bottom third predicted as road and of the top third as sky
  (the class layout of a street scene);
* low-level statistics of the network input the pipeline already computed (the frame brought to the bundle's input
  size, un-normalized to RGB in [0, 1]; read at every second pixel): brightness, contrast, sharpness (mean
  difference of neighbouring pixels: fine texture and sensor noise), colour saturation, the black level (2nd
  percentile: fog and glare lift it), the brightness of the top third minus the bottom third (sky above ground) and
  the noise floor (median second difference of neighbouring pixels: the camera's sensor noise, which darkening or
  fogging a frame after capture, blur and lowered contrast shrink and added noise raises, while the scene's content
  moves it little; a camera that is really in the dark keeps or gains its noise).

The noise floor depends on how much the resize to the network input averages (or, for a frame smaller than the
network input, interpolates) the camera's pixels: it is *scale-dependent*. The calibration records the range of the
linear scale factor frame → network input of its frames (``scale_range``), and a scale-dependent statistic is
compared only for frames whose factor lies within that range widened by :data:`SCALE_TOLERANCE` (for the default
bundle, calibrated on 256×512 and 512×1024 frames: 2:1 cameras from about 170×340 to 768×1536); for other sizes it
is left out of the decision rather than flag a camera size the calibration never saw.

Calibration (:func:`fit_calibration`) stores per statistic the median m and robust one-sided scales
``s_low = m − q(p)`` and ``s_high = q(1 − p) − m`` (quantiles q of the calibration frames, p = 1 % by default,
floored at a per-statistic minimum). A frame's deviation in statistic f is ``(x − m) / s_high`` above the median and
``(m − x) / s_low`` below (both sides are limited: a frame too dark is as foreign as one too bright); its score is
the largest deviation over the statistics divided by the calibrated limit T, which is chosen on the calibration
frames (``margin`` × their (1 − ``target_rate``) quantile of the largest deviation). A frame is in domain while its
score is at most 1; the reason of a frame outside names the statistic that deviates most, its value and the
calibrated range ``[m − T·s_low, m + T·s_high]``.

Everything here is pure numpy on arrays the pipeline already holds, sampled sparsely (well under 1 ms per frame
whatever the camera size: ``benchmarks/bench_domain.py``, docs/PERFORMANCE.md); no ROS, no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InputError

#: Identifies the statistics and the decision rule in ``bundle.json`` (a future rule gets a new name).
METHOD = "robust-quantile-v1"
#: Rec. 601 luma weights of R, G, B.
_LUMA = (0.299, 0.587, 0.114)
#: A scale-dependent statistic (:attr:`Statistic.scale_dependent`) is compared only for frames whose scale factor
#: (frame → network input) lies within the calibration's ``scale_range`` widened by this factor on either side.
SCALE_TOLERANCE = 1.5


class DomainError(InputError):
    """Bad domain-monitor input or calibration data, with the bad value in one line (an
    :class:`~meta_ood_perception.errors.InputError`; :func:`~meta_ood_perception.bundle.load_bundle` turns a bad
    calibration in ``bundle.json`` into a :class:`~meta_ood_perception.errors.BundleError`)."""


@dataclass(frozen=True)
class Statistic:
    """One per-frame statistic of the monitor.

    Attributes:
        name: key in ``bundle.json`` and :attr:`DomainFeatures.values`.
        label: what the reason of a frame outside the domain calls it.
        min_scale: smallest scale the calibration gives it (statistics that hardly vary on in-domain frames, e.g. a
            fraction that is always 0, would otherwise flag any change), in the statistic's unit.
        description: definition and unit.
        scale_dependent: its in-domain value depends on the frame's size relative to the network input (compared
            only for frames of a calibrated scale, see the module docstring).
    """

    name: str
    label: str
    min_scale: float
    description: str
    scale_dependent: bool = False


STATISTICS: tuple[Statistic, ...] = (
    Statistic("score_mean", "mean anomaly score", 0.005,
              "mean anomaly score a = entropy / log C over the metric grid (every second row), in [0, 1]"),
    Statistic("confidence", "mean confidence", 0.005,
              "mean largest softmax probability over the metric grid (every 8th row and column), in [1/C, 1]"),
    Statistic("road_bottom", "road in the bottom third", 0.01,
              "fraction of the metric grid's bottom third predicted as the road class (every 8th row and column), "
              "in [0, 1]"),
    Statistic("sky_top", "sky in the top third", 0.01,
              "fraction of the metric grid's top third predicted as the sky class (every 8th row and column), in "
              "[0, 1]"),
    Statistic("brightness", "brightness", 0.01, "mean luma of the network input, RGB in [0, 1]"),
    Statistic("contrast", "contrast", 0.005, "standard deviation of the network input's luma, in [0, 0.5]"),
    Statistic("sharpness", "sharpness", 0.002,
              "mean absolute luma difference of horizontally and vertically neighbouring pixels (every second "
              "pixel of the network input), in [0, 2]"),
    Statistic("saturation", "colour saturation", 0.005, "mean of max(R, G, B) − min(R, G, B) of the network input"),
    Statistic("sky_minus_ground", "top-minus-bottom brightness", 0.01,
              "mean luma of the network input's top third minus that of its bottom third, in [−1, 1]"),
    Statistic("black_level", "black level", 0.01,
              "2nd percentile of the network input's luma (every 4th row and column), in [0, 1]"),
    Statistic("noise_floor", "noise floor", 0.001,
              "median absolute second difference |l(x−2) − 2 l(x) + l(x+2)| of the network input's luma along its "
              "rows (every 4th row, every second pixel), in [0, 2]; compared only for frames of a calibrated scale",
              scale_dependent=True),
)  # fmt: skip
STATISTIC_NAMES: tuple[str, ...] = tuple(s.name for s in STATISTICS)
_BY_NAME = {s.name: s for s in STATISTICS}


@dataclass(frozen=True)
class DomainFeatures:
    """The monitor's statistics of one frame (:data:`STATISTICS`).

    Attributes:
        values: statistic name → value (float; NaN for a statistic the bundle cannot compute, e.g. ``sky_top``
            without a sky class).
        scale: linear scale factor from the frame to the network input, ``sqrt(H·W / (h'·w'))`` (> 1: the resize
            shrinks the frame); NaN when unknown (scale-dependent statistics are then always compared).
    """

    values: dict[str, float]
    scale: float = math.nan

    def vector(self, names: Sequence[str]) -> npt.NDArray[np.float64]:
        """(len(names),) float64 values in the order of ``names`` (NaN for a name this frame lacks)."""
        return np.array([self.values.get(n, math.nan) for n in names], np.float64)


@dataclass(frozen=True)
class DomainStatus:
    """The monitor's decision for one frame.

    Attributes:
        in_domain: the frame looks like the bundle's calibration frames (always True while the monitor is off).
        score: largest deviation of a statistic from its calibrated median in units of the calibrated limit: ≤ 1
            in domain, > 1 outside; 0.0 while the monitor is off.
        reason: one line; outside the domain it names the statistic, its value and its calibrated range, e.g.
            "outside the bundle's domain: mean anomaly score 0.62 vs calibrated ≤ 0.21".
        statistic: name of the statistic that deviates most ("" while the monitor is off).
        features: the frame's statistics (recorded also while the monitor is off: calibration reads them).
    """

    in_domain: bool
    score: float
    reason: str
    statistic: str = ""
    features: DomainFeatures | None = field(default=None, repr=False, compare=False)


def monitor_off(
    features: DomainFeatures | None = None, why: str = "the bundle has no domain calibration"
) -> DomainStatus:
    """The status of a frame while the monitor is off: in domain, score 0.0, a reason saying so."""
    return DomainStatus(True, 0.0, f"domain monitor off: {why}", "", features)


def frame_features(
    network_input: npt.NDArray[np.float32],
    mean: Sequence[float],
    std: Sequence[float],
    probs: npt.NDArray[np.float32],
    score: npt.NDArray[np.float32],
    *,
    road_index: int = -1,
    sky_index: int = -1,
    frame_size: tuple[int, int] | None = None,
) -> DomainFeatures:
    """The monitor's statistics of one frame, from arrays the pipeline already has.

    Args:
        network_input: (1, 3, h', w') float32 normalized network input (RGB, ``(pixel / 255 − mean) / std``).
        mean, std: the bundle's 3 RGB normalization values.
        probs: (C, h, w) float32 softmax probabilities on the metric grid.
        score: (h, w) float32 anomaly score on the metric grid, in [0, 1].
        road_index, sky_index: channels of the road and sky classes (−1: the bundle has none; the statistic is NaN).
        frame_size: (H, W) of the camera frame the network input was made from (gives
            :attr:`DomainFeatures.scale`; None: unknown).

    Returns:
        :class:`DomainFeatures` with every statistic of :data:`STATISTICS`.

    Raises:
        DomainError: arrays of the wrong rank.
    """
    if network_input.ndim != 4 or network_input.shape[:2] != (1, 3):
        raise DomainError(f"domain monitor: network input must be (1, 3, h, w), got {network_input.shape}")
    if probs.ndim != 3 or score.ndim != 2:
        raise DomainError(f"domain monitor: probs must be (C, h, w) and score (h, w), got {probs.shape}, {score.shape}")
    x = network_input[0, :, ::2, ::2]
    std_ = np.asarray(std, np.float32)
    mean_ = np.asarray(mean, np.float32)
    r, g, b = (x[c] * std_[c] + mean_[c] for c in range(3))  # RGB in [0, 1], half the input resolution
    luma = _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b
    third = max(luma.shape[0] // 3, 1)
    sharpness = float(np.abs(np.diff(luma, axis=1)).mean()) if luma.shape[1] > 1 else 0.0
    sharpness += float(np.abs(np.diff(luma, axis=0)).mean()) if luma.shape[0] > 1 else 0.0
    saturation = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    coarse = luma[::2, ::2].ravel()
    k = int(0.02 * (coarse.size - 1))
    black = float(np.partition(coarse, k)[k])
    rows = luma[::2]
    second = np.abs(rows[:, 2:] - 2 * rows[:, 1:-1] + rows[:, :-2]).ravel() if rows.shape[1] > 2 else np.zeros(1)
    noise = float(np.partition(second, second.size // 2)[second.size // 2])
    sampled = np.ascontiguousarray(probs[:, ::8, ::8])  # every 8th row and column: little memory traffic
    top = sampled.max(axis=0)  # a class is predicted where its probability is the largest (cheaper than argmax)
    band = max(top.shape[0] // 3, 1)
    values = {
        "score_mean": float(np.mean(score[::2], dtype=np.float64)),
        "confidence": float(top.mean(dtype=np.float64)),
        "road_bottom": float((sampled[road_index, -band:] >= top[-band:]).mean()) if road_index >= 0 else math.nan,
        "sky_top": float((sampled[sky_index, :band] >= top[:band]).mean()) if sky_index >= 0 else math.nan,
        "brightness": float(luma.mean(dtype=np.float64)),
        "contrast": float(luma.std(dtype=np.float64)),
        "sharpness": sharpness,
        "saturation": float(saturation.mean(dtype=np.float64)),
        "sky_minus_ground": float(luma[:third].mean(dtype=np.float64) - luma[-third:].mean(dtype=np.float64)),
        "black_level": black,
        "noise_floor": noise,
    }
    scale = math.nan
    if frame_size is not None:
        scale = math.sqrt(frame_size[0] * frame_size[1] / (network_input.shape[2] * network_input.shape[3]))
    return DomainFeatures(values, scale)


@dataclass(frozen=True)
class DomainCalibration:
    """Statistics of in-domain frames and the limit beyond which a frame is outside the domain (module docstring).

    Attributes:
        statistics: names of the statistics used (a subset of :data:`STATISTIC_NAMES`, in that order).
        center: per statistic, the median m over the calibration frames.
        scale_low, scale_high: per statistic, ``max(m − q(p), min_scale)`` and ``max(q(1 − p) − m, min_scale)``.
        threshold: the limit T on the largest deviation (in scales) of an in-domain frame.
        quantile: p.
        frames: number of calibration frames.
        flagged_fraction: fraction of the calibration frames above the limit (in-sample false alarms).
        data: what the calibration frames were (builder's description: data set, seeds, counts, sizes, ...).
        method: :data:`METHOD`.
        scale_range: (smallest, largest) scale factor frame → network input of the calibration frames
            (:attr:`DomainFeatures.scale`); scale-dependent statistics are compared only for frames within it,
            widened by :data:`SCALE_TOLERANCE`. None (calibrations written before it existed): always compared.
    """

    statistics: tuple[str, ...]
    center: tuple[float, ...]
    scale_low: tuple[float, ...]
    scale_high: tuple[float, ...]
    threshold: float
    quantile: float
    frames: int
    flagged_fraction: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    method: str = METHOD
    scale_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        n = len(self.statistics)
        if n == 0:
            raise DomainError(f"domain calibration needs at least one statistic, got {list(self.statistics)!r}")
        unknown = [s for s in self.statistics if s not in _BY_NAME]
        if unknown:
            raise DomainError(f"unknown domain statistic(s) {', '.join(map(repr, unknown))} (known: "
                             f"{', '.join(STATISTIC_NAMES)})")  # fmt: skip
        if len(set(self.statistics)) != n:
            raise DomainError(f"domain statistics listed twice: {list(self.statistics)}")
        for name in ("center", "scale_low", "scale_high"):
            values = getattr(self, name)
            if len(values) != n or not all(_finite(v) for v in values):
                raise DomainError(f"domain {name} needs {n} finite numbers, got {values!r}")
        if not all(v > 0 for v in (*self.scale_low, *self.scale_high)):
            raise DomainError(
                f"domain scale_low / scale_high must be > 0, got {list(self.scale_low)!r} / {list(self.scale_high)!r}"
            )
        if not (_finite(self.threshold) and self.threshold > 0):
            raise DomainError(f"domain threshold must be a finite number > 0, got {self.threshold!r}")
        if not (_finite(self.quantile) and 0.0 <= self.quantile < 0.5):
            raise DomainError(f"domain quantile must lie in [0, 0.5), got {self.quantile!r}")
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames < 1:
            raise DomainError(f"domain frames must be a positive integer, got {self.frames!r}")
        if not (_finite(self.flagged_fraction) and 0.0 <= self.flagged_fraction <= 1.0):
            raise DomainError(f"domain flagged_fraction must lie in [0, 1], got {self.flagged_fraction!r}")
        if self.method != METHOD:
            raise DomainError(f"domain method {self.method!r} is not known to this code (reads {METHOD!r})")
        if not isinstance(self.data, dict):
            raise DomainError(f"domain data must be an object, got {type(self.data).__name__}")
        if self.scale_range is not None:
            pair = tuple(self.scale_range)
            if len(pair) != 2 or not all(_finite(v) and v > 0 for v in pair) or pair[0] > pair[1]:
                raise DomainError(f"domain scale_range must be two finite numbers 0 < low <= high, got "
                                 f"{self.scale_range!r}")  # fmt: skip
            object.__setattr__(self, "scale_range", (float(pair[0]), float(pair[1])))
        object.__setattr__(self, "statistics", tuple(self.statistics))
        for name in ("center", "scale_low", "scale_high"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "quantile", float(self.quantile))
        object.__setattr__(self, "flagged_fraction", float(self.flagged_fraction))

    def limits(self, statistic: str) -> tuple[float, float]:
        """The calibrated in-domain range (low, high) of ``statistic``: ``m − T·s_low``, ``m + T·s_high``."""
        i = self.statistics.index(statistic)
        return self.center[i] - self.threshold * self.scale_low[i], self.center[i] + self.threshold * self.scale_high[i]

    def compared(self, scale: float) -> tuple[bool, ...]:
        """Per statistic of :attr:`statistics`, whether it is compared for a frame of this scale factor (False only
        for a scale-dependent statistic and a known scale outside the widened :attr:`scale_range`)."""
        if self.scale_range is None or math.isnan(scale):
            return (True,) * len(self.statistics)
        low, high = self.scale_range[0] / SCALE_TOLERANCE, self.scale_range[1] * SCALE_TOLERANCE
        inside = low <= scale <= high
        return tuple(inside or not _BY_NAME[name].scale_dependent for name in self.statistics)

    def deviations(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """(..., F) deviations in scales (0 at the median) of (..., F) statistic values in :attr:`statistics`
        order; NaN values give +inf (a statistic that cannot be computed is not in domain)."""
        center = np.asarray(self.center, np.float64)
        up = (values - center) / np.asarray(self.scale_high)
        down = (center - values) / np.asarray(self.scale_low)
        dev = np.maximum(up, down)
        return np.where(np.isnan(dev), np.inf, dev)

    def check(self, features: DomainFeatures) -> DomainStatus:
        """The decision for one frame (see the module docstring)."""
        values = features.vector(self.statistics)
        dev = np.where(self.compared(features.scale), self.deviations(values), 0.0)
        worst = int(np.argmax(dev))
        score = float(dev[worst] / self.threshold)
        name = self.statistics[worst]
        if score <= 1.0:
            return DomainStatus(True, score, f"in domain (largest deviation {score:.2f} of the calibrated limit, "
                                f"{_BY_NAME[name].label})", name, features)  # fmt: skip
        label, value = _BY_NAME[name].label, float(values[worst])
        low, high = self.limits(name)
        if math.isnan(value):
            what = f"{label} cannot be computed"
        elif value > high:
            what = f"{label} {_fmt(value)} vs calibrated ≤ {_fmt(high)}"
        else:
            what = f"{label} {_fmt(value)} vs calibrated ≥ {_fmt(low)}"
        return DomainStatus(False, score, f"outside the bundle's domain: {what}", name, features)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object stored as ``bundle.json`` ``domain`` (per statistic: median, scales, calibrated range)."""
        return {
            "method": self.method,
            "threshold": self.threshold,
            "quantile": self.quantile,
            "frames": self.frames,
            "flagged_fraction": self.flagged_fraction,
            "scale_range": None if self.scale_range is None else list(self.scale_range),
            "statistics": {
                name: {
                    "center": self.center[i], "scale_low": self.scale_low[i], "scale_high": self.scale_high[i],
                    "range": list(self.limits(name)), "description": _BY_NAME[name].description,
                }
                for i, name in enumerate(self.statistics)
            },
            "data": dict(self.data),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, obj: Any) -> DomainCalibration:
        """Parse :meth:`to_dict`'s object (``range`` and ``description`` are informative and ignored).

        Raises:
            DomainError: one line naming the missing or bad field.
        """
        if not isinstance(obj, Mapping):
            raise DomainError(f"domain calibration must be an object, got {type(obj).__name__}")
        for key in ("method", "threshold", "quantile", "frames", "statistics"):
            if key not in obj:
                raise DomainError(f"domain calibration: missing field {key!r}")
        stats = obj["statistics"]
        if not isinstance(stats, Mapping) or not stats:
            raise DomainError(f"domain calibration: 'statistics' must be a non-empty object, got {stats!r:.80}")
        names, center, low, high = [], [], [], []
        for name, entry in stats.items():
            if not isinstance(entry, Mapping) or not all(k in entry for k in ("center", "scale_low", "scale_high")):
                raise DomainError(f"domain calibration: statistic {name!r} needs center, scale_low and scale_high")
            for key in ("center", "scale_low", "scale_high"):
                if not _finite(entry[key]):
                    raise DomainError(f"domain calibration: {name}.{key} must be a finite number, got {entry[key]!r}")
            names.append(str(name))
            center.append(float(entry["center"]))
            low.append(float(entry["scale_low"]))
            high.append(float(entry["scale_high"]))
        for key in ("threshold", "quantile", "flagged_fraction"):
            if key in obj and not _finite(obj[key]):
                raise DomainError(f"domain calibration: {key} must be a finite number, got {obj[key]!r}")
        data = obj.get("data", {})
        if not isinstance(data, Mapping):
            raise DomainError(f"domain calibration: 'data' must be an object, got {type(data).__name__}")
        scale_range = obj.get("scale_range")
        if scale_range is not None and (not isinstance(scale_range, list | tuple) or len(scale_range) != 2
                                        or not all(_finite(v) for v in scale_range)):  # fmt: skip
            raise DomainError(
                f"domain calibration: scale_range must be null or two finite numbers, got {scale_range!r}"
            )
        return cls(
            statistics=tuple(names), center=tuple(center), scale_low=tuple(low), scale_high=tuple(high),
            threshold=float(obj["threshold"]), quantile=float(obj["quantile"]), frames=obj["frames"],
            flagged_fraction=float(obj.get("flagged_fraction", 0.0)), data=dict(data), method=obj["method"],
            scale_range=None if scale_range is None else (float(scale_range[0]), float(scale_range[1])),
        )  # fmt: skip


def fit_calibration(
    values: npt.ArrayLike,
    statistics: Sequence[str] = STATISTIC_NAMES,
    *,
    quantile: float = 0.01,
    target_rate: float = 0.005,
    margin: float = 1.25,
    data: Mapping[str, Any] | None = None,
    scales: npt.ArrayLike | None = None,
) -> DomainCalibration:
    """Calibrate the monitor on the statistics of in-domain frames.

    Args:
        values: (N, F) statistic values of N in-domain frames, columns in the order of ``statistics``.
        statistics: the F statistic names; a column with a non-finite value (e.g. ``sky_top`` for a bundle without
            a sky class) is left out of the calibration.
        quantile: p of the robust scales (module docstring).
        target_rate: fraction of calibration frames allowed beyond ``threshold / margin``.
        margin: factor on that quantile of the largest deviation (headroom for in-domain frames the calibration did
            not see); the limit T is never below 1 (never tighter than the [q(p), q(1 − p)] band).
        data: the builder's description of the frames, stored with the calibration.
        scales: (N,) scale factors frame → network input of the frames (:attr:`DomainFeatures.scale`); their
            range becomes :attr:`DomainCalibration.scale_range` (None, or none finite: no range, scale-dependent
            statistics are always compared).

    Raises:
        DomainError: fewer than 20 frames, a wrong shape, an unknown statistic, bad p / rate / margin.
    """
    x = np.asarray(values, np.float64)
    names = list(statistics)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise DomainError(f"domain calibration: values must be (N, {len(names)}), got {x.shape}")
    if x.shape[0] < 20:
        raise DomainError(f"domain calibration needs at least 20 in-domain frames, got {x.shape[0]}")
    if not 0.0 <= quantile < 0.5 or not 0.0 < target_rate < 1.0 or not margin >= 1.0:
        raise DomainError(f"domain calibration: need 0 <= quantile < 0.5, 0 < target_rate < 1, margin >= 1; got "
                         f"{quantile}, {target_rate}, {margin}")  # fmt: skip
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise DomainError(f"unknown domain statistic(s) {', '.join(unknown)}")
    scale_range = None
    if scales is not None:
        s = np.asarray(scales, np.float64).reshape(-1)
        if s.shape[0] != x.shape[0]:
            raise DomainError(f"domain calibration: {s.shape[0]} scales for {x.shape[0]} frames")
        s = s[np.isfinite(s) & (s > 0)]
        scale_range = (float(s.min()), float(s.max())) if s.size else None
    keep = [j for j in range(len(names)) if np.isfinite(x[:, j]).all()]
    if not keep:
        raise DomainError(f"domain calibration: no statistic of {list(names)!r} is finite on every calibration frame")
    x = x[:, keep]
    kept = [names[j] for j in keep]
    floors = np.array([_BY_NAME[n].min_scale for n in kept])
    center = np.median(x, axis=0)
    low = np.maximum(center - np.quantile(x, quantile, axis=0), floors)
    high = np.maximum(np.quantile(x, 1.0 - quantile, axis=0) - center, floors)
    probe = DomainCalibration(tuple(kept), tuple(center), tuple(low), tuple(high), 1.0, quantile, int(x.shape[0]))
    worst = probe.deviations(x).max(axis=1)  # every calibration frame lies within the scale range it spans
    threshold = max(1.0, margin * float(np.quantile(worst, 1.0 - target_rate)))
    return DomainCalibration(
        tuple(kept), tuple(center), tuple(low), tuple(high), threshold, quantile, int(x.shape[0]),
        float(np.mean(worst > threshold)), dict(data or {}), scale_range=scale_range,
    )  # fmt: skip


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 0.01 and value != 0 else f"{value:.2f}"
