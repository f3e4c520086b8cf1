"""A procedural driving world: street scenes in Cityscapes' 19 train ids, OoD proxies and road hazards.

Three kinds of frames, all seeded and deterministic (``np.random.default_rng([seed, index, kind])``), each under
its own lighting (day, overcast, dusk, low sun):

* ``closed``: a street scene — perspective road with asphalt grain, wheel tracks and lane marks, sidewalks, terrain,
  vegetation and trees, buildings, walls, fences, sky, poles with traffic lights and signs, cars, trucks, buses, a
  train, people, riders, bicycles and motorcycles — and in-distribution *look-alikes* on the road (tar seams,
  patches, puddles, shadows of poles and trees, manhole covers, painted arrows and words, leaves, kerb damage,
  :mod:`.lookalikes`), all labelled with their class. Target: train ids 0…18, every pixel labelled.
* ``proxy``: a street scene with pasted OoD proxies (:mod:`.proxies`), labelled as the project's COCO-OoD:
  proxy pixels ``OOD_LABEL`` (254), everything else void (255). OoD pixel fraction and edge softness as requested.
* ``hazard``: a street scene with traffic, look-alikes and road hazards of natural materials (:mod:`.hazards`), an
  appearance family disjoint from the proxies, partly occluded by nearer traffic. Target LostAndFound-style:
  0 = road (look-alikes included), 1 = hazard, 255 = everything else.

``drive(seed, n_frames)`` renders a sequence on one road in which a hazard and look-alikes approach.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from meta_ood_perception.errors import ConfigError

from ..datasets.base import OOD_LABEL, VOID_LABEL
from .canvas import CLASS_NAMES, HAZARD_PAINT_LABEL, ROAD, Canvas, camera, draw_lighting, finish, row_at_depth
from .hazards import ALL_HAZARDS, COMMON_HAZARDS, HELD_OUT_HAZARDS, hazard_item
from .lookalikes import LOOKALIKES, PAINTERS, paint_lookalikes
from .proxies import paste_proxies
from .street import ground, paint_items, roadside, sky, skyline, traffic_items

__all__ = [
    "ALL_HAZARDS", "CLASS_NAMES", "COMMON_HAZARDS", "HELD_OUT_HAZARDS", "LOOKALIKES", "ROAD", "Kind", "SyntheticWorld",
    "drive", "iter_drive", "render",
]  # fmt: skip

Kind = Literal["closed", "proxy", "hazard"]
KINDS: tuple[Kind, ...] = ("closed", "proxy", "hazard")
Frame = tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]


def _check(kind: str, height: int, width: int, proxy_fraction: tuple[float, float], n_hazards: tuple[int, int],
           n_lookalikes: tuple[int, int], hazard_shapes: tuple[str, ...]) -> None:  # fmt: skip
    if kind not in KINDS:
        raise ConfigError(f"kind must be 'closed', 'proxy' or 'hazard', got {kind!r}")
    if height < 32 or width < 32:
        raise ConfigError(f"frames must be at least 32×32 pixels, got {height}×{width}")
    lo, hi = proxy_fraction
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"proxy_fraction must satisfy 0 < low <= high <= 1, got {proxy_fraction}")
    for name, (a, b) in (("n_hazards", n_hazards), ("n_lookalikes", n_lookalikes)):
        if not 0 <= a <= b:
            raise ConfigError(f"{name} must satisfy 0 <= low <= high, got {(a, b)}")
    unknown = set(hazard_shapes) - set(ALL_HAZARDS)
    if not hazard_shapes or unknown:
        raise ConfigError(f"hazard_shapes must be a non-empty subset of {', '.join(ALL_HAZARDS)}, got {hazard_shapes}")


def render(
    kind: Kind,
    seed: int,
    index: int,
    height: int = 256,
    width: int = 512,
    *,
    proxy_fraction: tuple[float, float] = (0.02, 0.2),
    boundary: float = 1.0,
    n_hazards: tuple[int, int] = (1, 3),
    n_lookalikes: tuple[int, int] = (0, 4),
    hazard_shapes: tuple[str, ...] = ALL_HAZARDS,
) -> Frame:
    """One frame of the world: (H, W, 3) uint8 RGB and its (H, W) uint8 target (see the module docstring).

    Args:
        kind: ``closed``, ``proxy`` or ``hazard``.
        seed, index: the frame's identity; the same pair gives the same frame at any size.
        height, width: frame size in pixels (at least 32 × 32); the layout scales with it.
        proxy_fraction: range of the OoD pixel fraction of proxy frames.
        boundary: proxy edge sharpness, 1 = sharp, 0 = soft.
        n_hazards: range of the number of hazards in hazard frames (0 allowed: frames without hazards).
        n_lookalikes: range of the number of road look-alikes per frame.
        hazard_shapes: the hazard shapes to draw from (:data:`COMMON_HAZARDS`, :data:`HELD_OUT_HAZARDS`).

    Raises:
        ConfigError: an unknown kind or shape, frames smaller than 32 × 32, bad ranges.
    """
    _check(kind, height, width, proxy_fraction, n_hazards, n_lookalikes, hazard_shapes)
    rng = np.random.default_rng([seed, index, KINDS.index(kind)])
    canvas = Canvas(height, width, rng, draw_lighting(rng))
    cam = camera(rng, height, width)
    sky(canvas, cam)
    skyline(canvas, cam)
    ground(canvas, cam, lane_phase=float(rng.uniform(0, 1)))
    paint_lookalikes(canvas, cam, int(rng.integers(n_lookalikes[0], n_lookalikes[1] + 1)))
    roadside(canvas, cam)
    items = traffic_items(canvas, cam, (0, 3) if kind == "hazard" else (1, 5))
    if kind == "hazard":
        for _ in range(int(rng.integers(n_hazards[0], n_hazards[1] + 1))):
            y = row_at_depth(cam, height, float(rng.uniform(0.08, 0.9)))
            shape = str(hazard_shapes[int(rng.integers(0, len(hazard_shapes)))])
            items.append((y, hazard_item(canvas, cam, y, float(rng.uniform(-0.75, 0.75)), shape,
                                         float(rng.uniform(0.04, 0.2)))))  # fmt: skip
    paint_items(items)
    if kind == "proxy":
        proxies = paste_proxies(canvas, cam, proxy_fraction, boundary)
        target = np.full((height, width), VOID_LABEL, np.uint8)
        target[proxies] = OOD_LABEL
        return finish(canvas), target
    if kind == "hazard":
        target = np.full((height, width), VOID_LABEL, np.uint8)
        target[canvas.labels == ROAD] = 0
        target[canvas.labels == HAZARD_PAINT_LABEL] = 1
        return finish(canvas), target
    return finish(canvas), canvas.labels


def drive(seed: int, n_frames: int, height: int = 256, width: int = 512) -> list[Frame]:
    """A straight drive: the same street, lane marks moving by, one hazard and a few look-alikes approaching.

    Returns ``n_frames`` (image, target) pairs with LostAndFound-style targets (0 road, 1 hazard, 255 void).
    """
    return list(iter_drive(seed, n_frames, height, width))


def iter_drive(seed: int, n_frames: int, height: int = 256, width: int = 512) -> Iterator[Frame]:
    """:func:`drive` rendered one frame at a time (long drives without holding every frame in memory)."""
    scene = np.random.default_rng([seed, 0, 3])
    light = draw_lighting(scene)
    shape = str(COMMON_HAZARDS[int(scene.integers(0, len(COMMON_HAZARDS)))])
    lateral, size = float(scene.uniform(-0.25, 0.25)), float(scene.uniform(0.1, 0.16))
    spots = [(float(scene.uniform(-0.7, 0.8)), float(scene.uniform(-0.7, 0.7))) for _ in range(5)]  # (depth0, u)
    for frame in range(n_frames):
        progress = frame / max(n_frames - 1, 1)
        canvas = Canvas(height, width, np.random.default_rng([seed, 0, 3]), light)
        cam = camera(canvas.rng, height, width)
        sky(canvas, cam)
        skyline(canvas, cam)
        ground(canvas, cam, lane_phase=(frame * 0.35) % 1.0)
        for k, (depth0, u) in enumerate(spots):  # look-alikes keep their look and move with the road
            depth = depth0 + 0.9 * progress
            if 0.04 < depth < 1.0:
                canvas.rng = np.random.default_rng([seed, 10 + k])
                kind = LOOKALIKES[int(canvas.rng.integers(0, len(LOOKALIKES)))]
                PAINTERS[kind](canvas, cam, depth, u)
        canvas.rng = np.random.default_rng([seed, 0, 5])
        roadside(canvas, cam)
        canvas.rng = np.random.default_rng([seed, 1])
        y = row_at_depth(cam, height, 0.05 + 0.9 * progress)
        paint_items([(y, hazard_item(canvas, cam, y, lateral, shape, size))])
        target = np.full((height, width), VOID_LABEL, np.uint8)
        target[canvas.labels == ROAD] = 0
        target[canvas.labels == HAZARD_PAINT_LABEL] = 1
        canvas.rng = np.random.default_rng([seed, frame, 4])
        yield finish(canvas), target


class SyntheticWorld:
    """``n`` frames of one kind as a dataset: ``[i] -> (image, target)`` rendered on demand."""

    def __init__(self, kind: Kind, seed: int, n: int, height: int = 256, width: int = 512, **options: Any) -> None:
        render(kind, seed, 0, height, width, **options)  # validates the options once
        self.kind, self.seed, self.n, self.height, self.width, self.options = kind, seed, n, height, width, options

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Frame:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return render(self.kind, self.seed, index, self.height, self.width, **self.options)

    def identity(self) -> dict[str, Any]:
        """What identifies these frames (for manifests): kind, seed, count, size and options."""
        return {"dataset": f"synthetic {self.kind}", "seed": self.seed, "frames": self.n,
                "size": [self.height, self.width], **{k: list(v) if isinstance(v, tuple) else v
                                                      for k, v in self.options.items()}}  # fmt: skip
