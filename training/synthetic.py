"""A procedural driving world: street scenes in Cityscapes' 19 train ids, OoD proxies and road hazards.

Three kinds of frames, all seeded and deterministic (``np.random.default_rng([seed, index])``):

* ``closed``: a street scene — perspective road with lane marks, sidewalks, terrain, vegetation, buildings, walls,
  fences, sky, poles with traffic lights and signs, cars, trucks, buses, a train, people, riders, bicycles and
  motorcycles — with lighting, texture and camera (horizon, vanishing point, road width) variation. Target: train
  ids 0…18, every pixel labelled.
* ``proxy``: a street scene with pasted OoD-proxy objects (blobs, stars, polygons with striped / checkered /
  dotted unnatural textures), COCO-style: proxy pixels are ``OOD_LABEL`` (254), the rest keeps its train id. The
  OoD pixel fraction is drawn from a requested range (informative ≤ 20 %, non-informative ≥ 80 %) and the edges
  can be blurred (``boundary`` 1 = sharp, 0 = soft).
* ``hazard``: a street scene with a disjoint family of road hazards (crates, cones, tires, barrels, planks) standing
  on the road. Target LostAndFound-style: 0 = road (in-distribution), 1 = hazard, 255 = everything off the road.

``drive(seed, n_frames)`` renders a sequence on one road in which hazards appear in the distance and approach.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

from .datasets.base import OOD_LABEL, VOID_LABEL

CLASS_NAMES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS,
 TRAIN, MOTORCYCLE, BICYCLE) = range(19)  # fmt: skip

# Base colours (RGB) of the in-distribution world: muted, natural hues.
_BASE = {
    ROAD: (88, 86, 92), SIDEWALK: (150, 142, 132), BUILDING: (128, 104, 92), WALL: (160, 150, 136),
    FENCE: (112, 100, 78), POLE: (82, 82, 86), LIGHT: (40, 42, 44), SIGN: (196, 176, 52), VEGETATION: (62, 118, 52),
    TERRAIN: (132, 146, 84), SKY: (142, 182, 228), PERSON: (150, 96, 82), RIDER: (110, 70, 120), CAR: (70, 80, 120),
    TRUCK: (150, 150, 160), BUS: (190, 120, 60), TRAIN: (120, 130, 110), MOTORCYCLE: (60, 60, 70),
    BICYCLE: (100, 130, 150),
}  # fmt: skip
# Unnatural, saturated hues: proxies and hazards share the statistics "unlike the street", not their shapes.
_PROXY_COLORS = ((230, 30, 200), (20, 230, 210), (250, 250, 20), (120, 20, 250), (250, 60, 60), (20, 250, 60))
_HAZARD_COLORS = ((250, 20, 140), (0, 200, 255), (255, 140, 0), (180, 255, 0), (140, 0, 255), (255, 255, 255))

Kind = Literal["closed", "proxy", "hazard"]
Color = tuple[float, ...]  # RGB


@dataclass(frozen=True)
class Camera:
    """Horizon row and vanishing-point column in pixels, road half-width at the bottom row in pixels."""

    horizon: int
    vanish_x: int
    road_half: int


class _Canvas:
    """An image and its label map, painted together."""

    def __init__(self, height: int, width: int, rng: np.random.Generator, light: float) -> None:
        self.h, self.w, self.rng, self.light = height, width, rng, light
        self.image = np.zeros((height, width, 3), np.float32)
        self.labels = np.zeros((height, width), np.uint8)

    def color(self, cls: int, jitter: float = 18.0) -> Color:
        base = np.asarray(_BASE[cls], np.float32) + self.rng.normal(0, jitter, 3)
        return tuple(float(c) for c in np.clip(base * self.light, 0, 255))

    def poly(self, points: npt.ArrayLike, label: int, color: Color) -> None:
        pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.image, [pts], color)
        cv2.fillPoly(self.labels, [pts], int(label))

    def rect(self, x0: float, y0: float, x1: float, y1: float, label: int, color: Color) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, color)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, label: int, color: Color) -> None:
        center, axes = (round(cx), round(cy)), (max(round(rx), 1), max(round(ry), 1))
        cv2.ellipse(self.image, center, axes, 0, 0, 360, color, -1)
        cv2.ellipse(self.labels, center, axes, 0, 0, 360, int(label), -1)


def _camera(rng: np.random.Generator, h: int, w: int) -> Camera:
    return Camera(
        horizon=int(h * rng.uniform(0.36, 0.48)),
        vanish_x=int(w * rng.uniform(0.42, 0.58)),
        road_half=int(w * rng.uniform(0.28, 0.42)),
    )


def _road_x(cam: Camera, h: int, y: float, offset: float) -> float:
    """Column of a ground line at lateral ``offset`` (−1 = left road edge, +1 = right edge) in row ``y``."""
    depth = max(y - cam.horizon, 0.0) / max(h - cam.horizon, 1)
    return cam.vanish_x + offset * cam.road_half * depth


def _scale(cam: Camera, h: int, y: float) -> float:
    return max(y - cam.horizon, 0.0) / max(h - cam.horizon, 1)


def _street(canvas: _Canvas, cam: Camera, lane_phase: float = 0.0) -> None:
    """Paint the static street: sky, buildings, vegetation, terrain, sidewalks, road, lane marks, poles."""
    h, w, rng, hz = canvas.h, canvas.w, canvas.rng, cam.horizon
    canvas.rect(0, 0, w, hz + 1, SKY, canvas.color(SKY, 8))
    for side in (-1, 1):  # buildings / walls / vegetation rows along the horizon on each side
        x = cam.vanish_x + side * rng.uniform(0.03, 0.08) * w
        while 0 <= x < w if side > 0 else x > 0:
            bw = rng.uniform(0.05, 0.16) * w
            top = hz - rng.uniform(0.08, 0.32) * h
            cls = int(rng.choice([BUILDING, BUILDING, BUILDING, WALL, VEGETATION, FENCE]))
            x1 = x + side * bw
            canvas.rect(min(x, x1), top, max(x, x1), hz + 2, cls, canvas.color(cls))
            if cls == BUILDING:  # windows: darker rectangles, same label
                dark = tuple(c * 0.55 for c in canvas.color(BUILDING, 5))
                for wy in np.arange(top + 6, hz - 6, max(h * 0.05, 6)):
                    for wx in np.arange(min(x, x1) + 4, max(x, x1) - 6, max(w * 0.025, 6)):
                        canvas.rect(wx, wy, wx + max(w * 0.01, 2), wy + max(h * 0.02, 2), BUILDING, dark)
            x = x1
    canvas.rect(0, hz, w, h, TERRAIN, canvas.color(TERRAIN))  # ground: terrain everywhere, then sidewalks, road
    for side in (-1, 1):
        walk = rng.uniform(1.25, 1.7)
        canvas.poly([(cam.vanish_x, hz), (_road_x(cam, h, h, side * walk), h), (_road_x(cam, h, h, side), h)],
                    SIDEWALK, canvas.color(SIDEWALK))  # fmt: skip
    canvas.poly(
        [(cam.vanish_x, hz), (_road_x(cam, h, h, -1), h), (_road_x(cam, h, h, 1), h)], ROAD, canvas.color(ROAD, 6)
    )
    mark = tuple(min(c * 2.2, 255) for c in canvas.color(ROAD, 4))
    for k in range(12):  # dashed centre line, dashes shrink towards the horizon
        t0 = ((k + lane_phase) / 12.0) ** 2
        t1 = ((k + lane_phase + 0.45) / 12.0) ** 2
        y0, y1 = hz + t0 * (h - hz), min(hz + t1 * (h - hz), h)
        if y1 <= y0 + 1:
            continue
        wd0, wd1 = 0.012 * _scale(cam, h, y0) * w, 0.012 * _scale(cam, h, y1) * w
        canvas.poly([(_road_x(cam, h, y0, 0) - wd0, y0), (_road_x(cam, h, y0, 0) + wd0, y0),
                     (_road_x(cam, h, y1, 0) + wd1, y1), (_road_x(cam, h, y1, 0) - wd1, y1)], ROAD, mark)  # fmt: skip
    for _ in range(rng.integers(2, 6)):  # poles on the sidewalks, some with a light or a sign
        y = rng.uniform(hz + 0.1 * (h - hz), h * 0.98)
        s = _scale(cam, h, y)
        x = _road_x(cam, h, y, rng.choice([-1.12, 1.12]))
        top = y - 0.55 * h * s
        canvas.rect(x - 0.004 * w * s - 1, top, x + 0.004 * w * s + 1, y, POLE, canvas.color(POLE))
        extra = rng.integers(0, 3)
        if extra == 1:
            canvas.rect(x - 0.012 * w * s, top - 0.09 * h * s, x + 0.012 * w * s, top, LIGHT, canvas.color(LIGHT))
            lamp = ((230, 40, 30), (240, 200, 40), (40, 220, 90))[rng.integers(0, 3)]
            canvas.ellipse(x, top - 0.06 * h * s, 0.006 * w * s + 1, 0.006 * w * s + 1, LIGHT, lamp)
        elif extra == 2:
            canvas.ellipse(x, top, 0.02 * w * s + 1, 0.02 * w * s + 1, SIGN, canvas.color(SIGN, 10))


def _traffic(canvas: _Canvas, cam: Camera) -> None:
    """Vehicles on the road and people / riders on the sidewalks, painted far to near."""
    h, w, rng, hz = canvas.h, canvas.w, canvas.rng, cam.horizon
    items = []
    for _ in range(rng.integers(1, 6)):
        cls = int(
            rng.choice(
                [CAR, CAR, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE, TRAIN], p=[0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.07, 0.03]
            )
        )
        items.append((rng.uniform(hz + 0.08 * (h - hz), h * 1.05), cls, rng.uniform(-0.7, 0.7)))
    for _ in range(rng.integers(0, 5)):
        items.append((rng.uniform(hz + 0.1 * (h - hz), h * 1.02), int(rng.choice([PERSON, PERSON, RIDER])),
                      float(rng.choice([-1.3, 1.3]) + rng.uniform(-0.1, 0.1))))  # fmt: skip
    for y, cls, lateral in sorted(items):
        s = _scale(cam, h, y)
        x = _road_x(cam, h, y, lateral)
        if cls in (CAR, TRUCK, BUS, TRAIN):
            bw = {CAR: 0.34, TRUCK: 0.42, BUS: 0.46, TRAIN: 0.6}[cls] * w * s
            bh = {CAR: 0.17, TRUCK: 0.3, BUS: 0.32, TRAIN: 0.34}[cls] * h * s
            canvas.rect(x - bw / 2, y - bh, x + bw / 2, y, cls, canvas.color(cls, 30))
            glass = tuple(c * 0.45 for c in canvas.color(cls, 5))
            canvas.rect(x - bw * 0.38, y - bh * 0.92, x + bw * 0.38, y - bh * 0.6, cls, glass)
            for wx in (x - bw * 0.32, x + bw * 0.32):
                canvas.ellipse(wx, y - bh * 0.05, bw * 0.08, bh * 0.1, cls, (25, 25, 25))
        elif cls in (MOTORCYCLE, BICYCLE):
            r = 0.05 * w * s + 1
            canvas.ellipse(x - r, y - r, r, r, cls, canvas.color(cls))
            canvas.ellipse(x + r, y - r, r, r, cls, canvas.color(cls))
            canvas.rect(x - r * 0.3, y - 4.2 * r, x + r * 0.3, y - r, RIDER, canvas.color(RIDER))
            canvas.ellipse(x, y - 4.6 * r, r * 0.45, r * 0.5, RIDER, canvas.color(PERSON, 10))
        else:
            ph = 0.34 * h * s + 3
            canvas.rect(x - ph * 0.12, y - ph * 0.82, x + ph * 0.12, y, cls, canvas.color(cls, 25))
            canvas.ellipse(x, y - ph * 0.9, ph * 0.09, ph * 0.1, cls, canvas.color(PERSON, 10))


def _texture(canvas: _Canvas, amount: float) -> npt.NDArray[np.uint8]:
    noise = canvas.rng.normal(0.0, amount, (canvas.h // 2 + 1, canvas.w // 2 + 1, 3)).astype(np.float32)
    noise = np.asarray(cv2.resize(noise, (canvas.w, canvas.h), interpolation=cv2.INTER_LINEAR), np.float32)
    vignette = np.linspace(1.08, 0.92, canvas.h, dtype=np.float32)[:, None, None]
    out: npt.NDArray[np.uint8] = np.clip(canvas.image * vignette + noise, 0, 255).astype(np.uint8)
    return out


def _pattern(
    rng: np.random.Generator, h: int, w: int, palette: tuple[tuple[int, int, int], ...]
) -> npt.NDArray[np.float32]:
    """An (h, w, 3) unnatural texture: stripes, checkers or dots in two palette colours."""
    a, b = (np.asarray(palette[i], np.float32) for i in rng.choice(len(palette), 2, replace=False))
    yy, xx = np.ogrid[0:h, 0:w]
    period = rng.uniform(4, 14)
    kind = rng.integers(0, 3)
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        sel = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)) > 0
    elif kind == 1:
        sel = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0
    else:
        sel = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 < (period / 3) ** 2
    return np.where(sel[..., None], a, b).astype(np.float32)


def _shape_mask(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, radius: float) -> npt.NDArray[np.uint8]:
    """A random blob / star / polygon mask (uint8 0/1) centred at (cx, cy)."""
    mask = np.zeros((h, w), np.uint8)
    n = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    star = rng.random() < 0.35
    radii = radius * (rng.uniform(0.5, 1.0, n) if not star else np.where(np.arange(n) % 2 == 0, 1.0, 0.45))
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles) * rng.uniform(0.6, 1.4)], axis=1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask


def _paste_proxies(canvas: _Canvas, fraction: tuple[float, float], boundary: float) -> npt.NDArray[np.bool_]:
    """Paste proxies until the OoD pixel fraction lies in ``fraction``; returns the proxy mask."""
    rng, h, w = canvas.rng, canvas.h, canvas.w
    lo, hi = fraction
    target = rng.uniform(lo, hi)
    total = np.zeros((h, w), bool)
    radius0 = np.sqrt(target * h * w / np.pi)
    for _ in range(60):
        if total.mean() >= target:
            break
        big = target > 0.5
        radius = radius0 * (rng.uniform(1.2, 1.6) if big else rng.uniform(0.25, 0.7))
        cx, cy = (w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2) if big else (rng.uniform(0, w), rng.uniform(0, h))
        mask = _shape_mask(rng, h, w, cx, cy, radius).astype(bool)
        if big:
            mask |= _shape_mask(rng, h, w, cx, cy, radius * 1.3).astype(bool)
        if (total | mask).mean() > hi and total.any():
            continue
        x, y, bw, bh = cv2.boundingRect(mask.view(np.uint8))
        pad = 8
        x0, y0, x1, y1 = max(x - pad, 0), max(y - pad, 0), min(x + bw + pad, w), min(y + bh + pad, h)
        alpha = mask[y0:y1, x0:x1].astype(np.float32)
        if boundary < 1.0:  # soft edges: the label keeps the hard mask, the pixels blend
            k = int(1 + 2 * round((1.0 - boundary) * 6))
            alpha = np.asarray(cv2.GaussianBlur(alpha, (k, k), 0), dtype=np.float32)
        texture = _pattern(rng, y1 - y0, x1 - x0, _PROXY_COLORS) * canvas.light
        region = canvas.image[y0:y1, x0:x1]
        region += (texture - region) * alpha[..., None]
        total |= mask
    canvas.labels[total] = OOD_LABEL
    return total


def _hazards(canvas: _Canvas, cam: Camera, n: int, depth: tuple[float, float] = (0.08, 0.85)) -> npt.NDArray[np.bool_]:
    """Place ``n`` hazards standing on the road; returns their mask (only road-covered pixels are kept)."""
    rng, h, w = canvas.rng, canvas.h, canvas.w
    road = canvas.labels == ROAD
    mask = np.zeros((h, w), bool)
    for _ in range(n):
        y = cam.horizon + rng.uniform(*depth) * (h - cam.horizon)
        s = _scale(cam, h, y)
        x = _road_x(cam, h, y, rng.uniform(-0.75, 0.75))
        size = rng.uniform(0.05, 0.11) * w * s + 2
        color = np.asarray(_HAZARD_COLORS[rng.integers(0, len(_HAZARD_COLORS))], np.float32) * canvas.light
        shape = rng.integers(0, 5)
        item = np.zeros((h, w), np.uint8)
        if shape == 0:  # crate
            cv2.rectangle(item, (int(x - size), int(y - 1.4 * size)), (int(x + size), int(y)), 1, -1)
        elif shape == 1:  # cone
            cv2.fillPoly(item, [np.array([[x - size, y], [x + size, y], [x, y - 2.4 * size]], np.int32)], 1)
        elif shape == 2:  # tire
            cv2.ellipse(item, (int(x), int(y - size)), (int(size), int(size * 0.9)), 0, 0, 360, 1, -1)
        elif shape == 3:  # barrel
            cv2.rectangle(item, (int(x - 0.7 * size), int(y - 2 * size)), (int(x + 0.7 * size), int(y)), 1, -1)
        else:  # plank lying across
            cv2.rectangle(item, (int(x - 2.2 * size), int(y - 0.35 * size)), (int(x + 2.2 * size), int(y)), 1, -1)
        item_mask = item.astype(bool) & road  # hazards only ever cover road pixels
        if not item_mask.any():
            continue
        x, y, bw, bh = cv2.boundingRect(item_mask.view(np.uint8))
        dark = (int(color[0] * 0.6), int(color[1] * 0.6), int(color[2] * 0.6))
        shade = _pattern(rng, bh, bw, (tuple(int(c) for c in color), dark))  # type: ignore[arg-type]
        sub = item_mask[y : y + bh, x : x + bw]
        canvas.image[y : y + bh, x : x + bw][sub] = shade[sub]
        mask |= item_mask
    return mask


def render(
    kind: Kind,
    seed: int,
    index: int,
    height: int = 256,
    width: int = 512,
    *,
    proxy_fraction: tuple[float, float] = (0.02, 0.2),
    boundary: float = 1.0,
    n_hazards: tuple[int, int] = (1, 4),
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """One frame of the world: (H, W, 3) uint8 RGB and its (H, W) uint8 target (see the module docstring)."""
    if kind not in ("closed", "proxy", "hazard"):
        raise ValueError(f"kind must be 'closed', 'proxy' or 'hazard', got {kind!r}")
    if height < 32 or width < 32:
        raise ValueError(f"frames must be at least 32×32 pixels, got {height}×{width}")
    lo, hi = proxy_fraction
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"proxy_fraction must satisfy 0 < low <= high <= 1, got {proxy_fraction}")
    rng = np.random.default_rng([seed, index, {"closed": 0, "proxy": 1, "hazard": 2}[kind]])
    canvas = _Canvas(height, width, rng, light=float(rng.uniform(0.75, 1.2)))
    cam = _camera(rng, height, width)
    _street(canvas, cam, lane_phase=float(rng.uniform(0, 1)))
    if kind != "hazard":
        _traffic(canvas, cam)
    if kind == "proxy":
        _paste_proxies(canvas, proxy_fraction, boundary)
        return _texture(canvas, 6.0), canvas.labels
    if kind == "hazard":
        hazard = _hazards(canvas, cam, int(rng.integers(n_hazards[0], n_hazards[1] + 1)))
        target = np.full((height, width), VOID_LABEL, np.uint8)
        target[canvas.labels == ROAD] = 0
        target[hazard] = 1
        return _texture(canvas, 6.0), target
    return _texture(canvas, 6.0), canvas.labels


def drive(
    seed: int, n_frames: int, height: int = 256, width: int = 512
) -> list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """A straight drive: the same street, lane marks moving by, one hazard approaching from the distance.

    Returns ``n_frames`` (image, target) pairs with LostAndFound-style targets (0 road, 1 hazard, 255 void).
    """
    return list(iter_drive(seed, n_frames, height, width))


def iter_drive(
    seed: int, n_frames: int, height: int = 256, width: int = 512
) -> Iterator[tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]]:
    """:func:`drive` rendered one frame at a time (long drives without holding every frame in memory)."""
    for frame in range(n_frames):
        rng = np.random.default_rng([seed, 0, 3])
        canvas = _Canvas(height, width, rng, light=float(rng.uniform(0.85, 1.1)))
        cam = _camera(rng, height, width)
        _street(canvas, cam, lane_phase=(frame * 0.35) % 1.0)
        progress = frame / max(n_frames - 1, 1)
        hazard_rng = np.random.default_rng([seed, 1])
        canvas.rng = hazard_rng
        depth = 0.05 + 0.9 * progress
        hazard = _hazards(canvas, cam, 1, depth=(depth, depth))
        target = np.full((height, width), VOID_LABEL, np.uint8)
        target[canvas.labels == ROAD] = 0
        target[hazard] = 1
        canvas.rng = np.random.default_rng([seed, frame, 4])
        yield _texture(canvas, 6.0), target


class SyntheticWorld:
    """``n`` frames of one kind as a dataset: ``[i] -> (image, target)`` rendered on demand."""

    def __init__(self, kind: Kind, seed: int, n: int, height: int = 256, width: int = 512, **options: object) -> None:
        render(kind, seed, 0, height, width, **options)  # type: ignore[arg-type]  # validates the options once
        self.kind, self.seed, self.n, self.height, self.width, self.options = kind, seed, n, height, width, options

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        if not 0 <= index < self.n:
            raise IndexError(index)
        return render(self.kind, self.seed, index, self.height, self.width, **self.options)  # type: ignore[arg-type]
