"""Independent acceptance check: natural road debris painted onto the closed-set synthetic street scenes.

The objects (cardboard boxes, tires, rocks, wooden planks, sacks, four-legged animals) are drawn here from scratch
with numpy + cv2 — simple shapes with per-material texture, a brightness gradient and an optional soft contact
shadow on the road — and are never seen in training. They stand on the road (Cityscapes train id 0) at the project's
hazard scale: the base row lies at a depth fraction in [0.1, 0.9] between the top road row and the bottom of the
frame, the base centre in the middle 70 % of the road's extent in that row, the width 8–35 % of that extent.

Ground truth per frame: (H, W) uint8, 255 everywhere, 0 on road (contact shadows stay road), 1 on object pixels.

Metrics over all frames (written as JSON to ``--report``):

* pixel: AUROC, FPR@95 %TPR, AUPRC of ``FrameResult.score`` against the ground truth (exact).
* objects: fraction of objects touched by ≥ 1 pixel / covered ≥ 50 % by the kept mask, and by all components.
* road components (components overlapping road or objects): true (touch an object) vs false, and how many of each
  the meta classifier removed.
* per object kind: fraction touched by the kept mask.

    python benchmarks/independent_objects.py --bundle default --seeds 500 501 --frames 30 --size 512 1024 \\
        --report out.json [--panel out.png]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

LOG = logging.getLogger("independent_objects")

ROAD = 0
VOID = 255
#: Cityscapes train ids of things that can stand in front of an object: pole, traffic light/sign, person … bicycle.
OCCLUDERS = (5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
KINDS = ("boxes", "tires", "rocks", "planks", "sacks", "animals")

FloatImage = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


@dataclass
class _Sprite:
    """One object drawn in its own (h, w) canvas.

    Attributes:
        mask: (h, w) bool, object pixels; the bottom row is the contact row and is never empty.
        rgb: (h, w, 3) float32 colour in [0, 255], meaningful where ``mask``.
    """

    mask: Mask
    rgb: FloatImage


# ---------------------------------------------------------------------------------------------------------------
# noise and shading helpers


def _noise(rng: np.random.Generator, h: int, w: int, cell: float) -> FloatImage:
    """(h, w) float32 smooth noise with unit standard deviation, features about ``cell`` pixels wide."""
    gh, gw = max(2, round(h / cell) + 2), max(2, round(w / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    out = np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), np.float32)
    return np.asarray(out / max(float(out.std()), 1e-6), np.float32)


def _fractal(rng: np.random.Generator, h: int, w: int, cells: tuple[float, ...]) -> FloatImage:
    """(h, w) float32 sum of :func:`_noise` octaves (weights halve per octave), unit standard deviation."""
    out = np.zeros((h, w), np.float32)
    for i, cell in enumerate(cells):
        out += _noise(rng, h, w, cell) * 0.5**i
    return out / max(float(out.std()), 1e-6)


def _gradient(h: int, w: int, angle: float, strength: float) -> FloatImage:
    """(h, w) float32 brightness ramp 1 ± ``strength``, brightest towards ``angle`` (radians, y down: -π/2 = up)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx / max(w - 1, 1) - 0.5) * np.cos(angle) + (yy / max(h - 1, 1) - 0.5) * np.sin(angle)
    return np.asarray(1.0 + 2.0 * strength * u, np.float32)


def _colour(rng: np.random.Generator, base: tuple[float, float, float], jitter: float) -> npt.NDArray[np.float32]:
    """(3,) float32 RGB: ``base`` scaled by a random brightness and with a small per-channel jitter."""
    rgb = np.asarray(base, np.float32) * rng.uniform(0.85, 1.15)
    rgb += rng.normal(0.0, jitter, 3)
    return np.asarray(np.clip(rgb, 5.0, 250.0), np.float32)


def _tint(colour: npt.NDArray[np.float32], field: FloatImage) -> FloatImage:
    """(h, w, 3) float32: ``colour`` multiplied by the (h, w) brightness ``field``."""
    return (field[..., None] * colour[None, None, :]).astype(np.float32)


def _crop(sprite: _Sprite) -> _Sprite:
    """The sprite cut to the bounding box of its mask."""
    ys, xs = np.nonzero(sprite.mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return _Sprite(sprite.mask[y0:y1, x0:x1], sprite.rgb[y0:y1, x0:x1])


# ---------------------------------------------------------------------------------------------------------------
# the object kinds; each returns a sprite about w pixels wide


def _box(rng: np.random.Generator, w: int) -> _Sprite:
    """Cardboard box seen slightly from above: front face, lighter top face, corrugation, a tape strip."""
    h_front = max(3, round(w * rng.uniform(0.6, 1.2) * 0.8))
    h_top = max(2, round(w * rng.uniform(0.12, 0.25)))
    skew = round(w * rng.uniform(-0.12, 0.12))
    fw = w - abs(skew)
    h = h_front + h_top
    mask = np.zeros((h, w), np.uint8)
    top_face = np.zeros((h, w), np.uint8)
    xf = max(0, -skew)  # front face left edge
    cv2.rectangle(mask, (xf, h_top), (xf + fw - 1, h - 1), 1, -1)
    top = np.array([[xf, h_top], [xf + fw - 1, h_top], [xf + fw - 1 + skew, 0], [xf + skew, 0]], np.int32)
    cv2.fillConvexPoly(top_face, top, 1)
    mask |= top_face
    red = rng.uniform(145, 185)  # kraft cardboard: a fixed hue, varying lightness
    base = _colour(rng, (red, red * rng.uniform(0.74, 0.8), red * rng.uniform(0.5, 0.58)), 3.0)
    _yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = 1.0 + 0.06 * _fractal(rng, h, w, (max(w / 3, 2), max(w / 12, 1.5)))
    field += 0.025 * np.sin(xx * 2 * np.pi / max(2.5, w / 40))  # corrugation
    field *= _gradient(h, w, rng.uniform(0, np.pi), rng.uniform(0.05, 0.15))
    field = np.where(top_face > 0, field * rng.uniform(1.12, 1.25), field)
    rgb = _tint(base, field)
    # tape strip: vertical on the front face and across the top face, beige-grey plastic
    tape = _colour(rng, (175, 160, 130), 5.0) * rng.uniform(0.95, 1.1)
    tw = max(1, round(fw * rng.uniform(0.08, 0.14)))
    tx = xf + fw // 2 - tw // 2
    strip = np.zeros((h, w), np.uint8)
    cv2.rectangle(strip, (tx, h_top), (tx + tw - 1, h_top + max(1, round(h_front * rng.uniform(0.2, 0.4)))), 1, -1)
    tape_top = np.array([[tx, h_top], [tx + tw, h_top], [tx + tw + skew, 0], [tx + skew, 0]], np.int32)
    cv2.fillConvexPoly(strip, tape_top, 1)
    strip_b = (strip > 0) & (mask > 0)
    rgb[strip_b] = tape[None, :] * field[strip_b][:, None]
    # darker edge lines between faces
    edge = np.zeros((h, w), np.uint8)
    cv2.line(edge, (xf, h_top), (xf + fw - 1, h_top), 1, max(1, w // 60))
    rgb[edge > 0] *= 0.75
    return _Sprite(mask > 0, rgb)


def _tire(rng: np.random.Generator, w: int) -> _Sprite:
    """Rubber tire, standing (circle) or lying (flat ellipse): tread blocks on the outer ring, a darker hole."""
    standing = rng.random() < 0.5
    h = max(3, round(w * (rng.uniform(0.88, 1.0) if standing else rng.uniform(0.3, 0.45))))
    cx, cy = (w - 1) / 2, (h - 1) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((xx - cx) / max(w / 2, 1)) ** 2 + ((yy - cy) / max(h / 2, 1)) ** 2)
    theta = np.arctan2((yy - cy) / max(h, 1), (xx - cx) / max(w, 1))
    mask = r <= 1.0
    inner = rng.uniform(0.45, 0.6)
    rubber = rng.uniform(32, 52)
    base = _colour(rng, (rubber, rubber, rubber * 1.03), 2.0)
    field = 1.0 + 0.05 * _noise(rng, h, w, max(w / 10, 1.5))
    n_blocks = int(rng.integers(24, 40))
    tread = (np.sin(theta * n_blocks) > 0.2) & (r > 0.85)
    field = np.where(tread, field * 0.78, field)
    # sidewall: a faint ridge and a sheen towards the light
    field += 0.12 * np.exp(-(((r - (inner + 1.0) / 2) / 0.08) ** 2))
    field *= _gradient(h, w, -np.pi / 2 + rng.uniform(-0.5, 0.5), 0.18)
    hole = r < inner
    field = np.where(hole, rng.uniform(0.35, 0.55) * (1.0 + 0.05 * _noise(rng, h, w, max(w / 8, 1.5))), field)
    return _Sprite(mask, _tint(base, field))


def _rock(rng: np.random.Generator, w: int) -> _Sprite:
    """Stone: an irregular rounded polygon, speckled grey or brown-grey, lit from above."""
    h = max(3, round(w * rng.uniform(0.45, 0.9)))
    n = int(rng.integers(7, 13))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = rng.uniform(0.75, 1.0, n)
    pts = np.stack([(w - 1) / 2 * (1 + rad * np.cos(ang)), (h - 1) / 2 * (1 + rad * np.sin(ang))], axis=1)
    pts[:, 1] = np.minimum(pts[:, 1] + h * 0.1, h - 1)  # flatter bottom
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    k = max(3, (w // 8) | 1)  # round off the polygon's corners
    mask = (cv2.GaussianBlur(mask.astype(np.float32), (k, k), 0) > 0.5).astype(np.uint8)
    if not mask.any():
        mask[h // 2 :, w // 4 : w - w // 4] = 1
    grey = rng.uniform(80, 125)
    warm = rng.uniform(0.0, 18.0)
    base = _colour(rng, (grey + warm, grey + warm * 0.5, grey - warm * 0.3), 3.0)
    field = 1.0 + 0.12 * _fractal(rng, h, w, (max(w / 4, 2), max(w / 12, 1.5)))
    field += 0.10 * rng.standard_normal((h, w)).astype(np.float32)  # speckle
    field *= _gradient(h, w, -np.pi / 2 + rng.uniform(-0.6, 0.6), rng.uniform(0.15, 0.3))
    return _Sprite(mask > 0, _tint(base, np.clip(field, 0.3, 1.6)))


def _plank(rng: np.random.Generator, w: int) -> _Sprite:
    """Wooden plank lying on the road: a flat, slightly tilted bar with wood grain, knots and a darker edge."""
    h = max(3, round(w * rng.uniform(0.08, 0.2)))
    tilt = round(h * rng.uniform(-0.8, 0.8))
    hh = h + abs(tilt)
    mask = np.zeros((hh, w), np.uint8)
    y_left, y_right = (abs(tilt), 0) if tilt > 0 else (0, abs(tilt))
    poly = np.array([[0, y_left], [w - 1, y_right], [w - 1, y_right + h - 1], [0, y_left + h - 1]], np.int32)
    cv2.fillConvexPoly(mask, poly, 1)
    yy, xx = np.mgrid[0:hh, 0:w].astype(np.float32)
    wood = rng.choice([(150, 110, 70), (120, 85, 55), (175, 140, 95), (110, 95, 80)])  # fresh to weathered
    base = _colour(rng, tuple(float(c) for c in wood), 6.0)  # type: ignore[arg-type]
    # grain: stripes along the plank, their phase wobbling with smooth noise
    along = yy - (y_left + (y_right - y_left) * xx / max(w - 1, 1))
    wobble = 2.0 * _noise(rng, hh, w, max(w / 6, 2))
    field = 1.0 + 0.08 * np.sin((along + wobble) * 2 * np.pi / max(1.5, h / 4))
    field += 0.05 * _noise(rng, hh, w, max(w / 25, 1.5))
    for _ in range(int(rng.integers(0, 3))):  # knots
        kx, ky = rng.uniform(0.1, 0.9) * w, rng.uniform(0.3, 0.7) * hh
        kr = max(1.0, h * rng.uniform(0.12, 0.25))
        field -= 0.3 * np.exp(-(((xx - kx) / (kr * 1.6)) ** 2 + ((yy - ky) / kr) ** 2))
    bottom = along > h * 0.7  # the lit top and the darker front edge
    field = np.where(bottom, field * 0.72, field)
    field *= _gradient(hh, w, rng.uniform(0, np.pi), 0.08)
    return _Sprite(mask > 0, _tint(base, field))


def _sack(rng: np.random.Generator, w: int) -> _Sprite:
    """Fabric sack: a rounded bulging body with a gathered, tied neck; burlap weave and folds."""
    h = max(4, round(w * rng.uniform(0.5, 0.9)))
    body_top = round(h * rng.uniform(0.15, 0.3))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # body: a superellipse (boxy but rounded), a little wider at the bottom where the filling settles
    bh = (h - body_top) / 2
    v = (yy - (body_top + bh)) / max(bh, 1)
    half = (w / 2) * (0.88 + 0.12 * np.clip(v, -1, 1))
    u = (xx - (w - 1) / 2) / np.maximum(half, 1)
    p = rng.uniform(2.5, 3.5)
    mask = (np.abs(u) ** p + np.abs(v) ** p <= 1.0).astype(np.uint8)
    neck_w = max(2, round(w * rng.uniform(0.12, 0.22)))
    nx = round((w - 1) / 2 + w * rng.uniform(-0.1, 0.1))
    neck = np.array(
        [[nx - neck_w // 2, 0], [nx + neck_w // 2, 0], [nx + neck_w, body_top + 2], [nx - neck_w, body_top + 2]]
    )
    cv2.fillConvexPoly(mask, neck.astype(np.int32), 1)
    fabric = [(165, 140, 100), (150, 130, 95), (95, 110, 80), (85, 95, 110), (130, 120, 105)]
    base = _colour(rng, tuple(float(c) for c in fabric[int(rng.integers(len(fabric)))]), 5.0)  # type: ignore[arg-type]
    period = max(2.0, w / 50)
    weave = np.sin(xx * 2 * np.pi / period) * np.sin(yy * 2 * np.pi / period)
    field = 1.0 + 0.05 * weave + 0.06 * _noise(rng, h, w, max(w / 12, 1.5))
    folds = np.zeros((h, w), np.float32)  # creases radiating from the tied neck
    for _ in range(int(rng.integers(3, 6))):
        end = (round(rng.uniform(0.1, 0.9) * w), round(rng.uniform(0.55, 0.95) * h))
        cv2.line(folds, (nx, body_top), end, 1.0, max(1, w // 40))
    k = max(3, (w // 20) | 1)
    field -= 0.15 * cv2.GaussianBlur(folds, (k, k), 0)
    rx = (xx - (w - 1) / 2) / max(w / 2, 1)
    field *= 1.0 - 0.25 * rx**2  # round bulge
    field *= _gradient(h, w, -np.pi / 2 + rng.uniform(-0.5, 0.5), 0.15)
    tie = (yy >= body_top - 1) & (yy <= body_top + 1) & (np.abs(xx - nx) <= neck_w)
    field = np.where(tie, field * 0.6, field)
    return _Sprite(mask > 0, _tint(base, field))


def _animal(rng: np.random.Generator, w: int) -> _Sprite:
    """Four-legged animal (dog/deer/cow-like) seen from the side: body, neck + head, legs, tail; fur noise."""
    h = max(6, round(w * rng.uniform(0.6, 0.95)))
    mask = np.zeros((h, w), np.uint8)
    facing = 1 if rng.random() < 0.5 else -1
    leg_len = h * rng.uniform(0.35, 0.5)
    body_h = h * rng.uniform(0.28, 0.38)
    body_y = h - 1 - leg_len - body_h / 2
    body_x0, body_x1 = w * 0.12, w * 0.78
    if facing < 0:
        body_x0, body_x1 = w - 1 - body_x1, w - 1 - body_x0
    bcx = (body_x0 + body_x1) / 2
    cv2.ellipse(
        mask, (round(bcx), round(body_y)), (round((body_x1 - body_x0) / 2), round(body_h / 2)), 0, 0, 360, 1, -1
    )
    leg_w = max(1, round(w * rng.uniform(0.04, 0.07)))
    for fx in (0.12, 0.3, 0.72, 0.88):
        lx = round(body_x0 + fx * (body_x1 - body_x0) + rng.uniform(-0.03, 0.03) * w)
        splay = round(rng.uniform(-0.03, 0.03) * w)
        cv2.line(mask, (lx, round(body_y)), (lx + splay, h - 1), 1, leg_w)
    # neck and head at the front end
    front = body_x1 if facing > 0 else body_x0
    head_r = max(1.5, body_h * rng.uniform(0.35, 0.5))
    hx = front + facing * w * rng.uniform(0.06, 0.12)
    hy = max(head_r, body_y - body_h * rng.uniform(0.6, 1.2))
    cv2.line(
        mask, (round(front - facing * w * 0.05), round(body_y)), (round(hx), round(hy)), 1, max(1, round(body_h * 0.4))
    )
    cv2.ellipse(
        mask, (round(hx + facing * head_r * 0.4), round(hy)), (round(head_r * 1.3), round(head_r)), 0, 0, 360, 1, -1
    )
    ear = np.array(
        [
            [hx - facing * head_r * 0.2, hy - head_r * 0.6],
            [hx, hy - head_r * 1.8],
            [hx + facing * head_r * 0.4, hy - head_r * 0.7],
        ]
    )
    cv2.fillConvexPoly(mask, np.round(ear).astype(np.int32), 1)
    back = body_x0 if facing > 0 else body_x1
    tail_end = (round(back - facing * w * rng.uniform(0.05, 0.1)), round(body_y + body_h * rng.uniform(0.0, 0.6)))
    cv2.line(mask, (round(back), round(body_y - body_h * 0.2)), tail_end, 1, max(1, leg_w // 2))
    mask[:, :] = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    fur = [(110, 75, 45), (140, 100, 60), (40, 35, 32), (205, 195, 175), (160, 135, 100), (90, 70, 55)]
    base = _colour(rng, tuple(float(c) for c in fur[int(rng.integers(len(fur)))]), 5.0)  # type: ignore[arg-type]
    # fur: white noise smeared along a direction (motion blur), plus large-scale patches
    k = max(3, (w // 25) | 1)
    kernel = np.zeros((k, k), np.float32)
    kernel[k // 2, :] = 1.0 / k
    rot = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(-40, 40)), 1.0)
    kernel = np.asarray(cv2.warpAffine(kernel, rot, (k, k)), np.float32)
    kernel /= max(float(kernel.sum()), 1e-6)
    streak = np.asarray(cv2.filter2D(rng.standard_normal((h, w)).astype(np.float32), -1, kernel), np.float32)
    streak = streak / max(float(streak.std()), 1e-6)
    field = 1.0 + 0.09 * streak + 0.08 * _noise(rng, h, w, max(w / 5, 2))
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    field *= np.where(yy > body_y + body_h * 0.3, 0.82, 1.0)  # darker belly and legs
    field *= _gradient(h, w, -np.pi / 2 + rng.uniform(-0.4, 0.4), 0.12)
    return _Sprite(mask > 0, _tint(base, field))


#: kind name → drawer of a sprite about ``w`` pixels wide
PAINTERS: dict[str, Callable[[np.random.Generator, int], _Sprite]] = {
    "boxes": _box,
    "tires": _tire,
    "rocks": _rock,
    "planks": _plank,
    "sacks": _sack,
    "animals": _animal,
}


# ---------------------------------------------------------------------------------------------------------------
# placement


def _occluder_bottoms(labels: npt.NDArray[np.uint8]) -> npt.NDArray[np.int32]:
    """(H, W) int32: for pixels of poles/signs/vehicles/people the lowest row of their connected component, else -1.

    An object whose base row lies above that row stands behind the occluder and would be hidden by it.
    """
    occ = np.isin(labels, OCCLUDERS).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(occ, connectivity=8)
    bottoms = np.full(n, -1, np.int32)
    bottoms[1:] = stats[1:, cv2.CC_STAT_TOP] + stats[1:, cv2.CC_STAT_HEIGHT] - 1
    return np.asarray(bottoms[comp], np.int32)


def _shadow(h: int, w: int, cx: float, y: float, half_w: float, half_h: float, depth: float) -> FloatImage:
    """(H, W) float32 multiplicative darkening (1 = none) of a soft ellipse centred at (cx, y)."""
    sh = np.zeros((h, w), np.float32)
    cv2.ellipse(sh, (round(cx), round(y)), (max(1, round(half_w)), max(1, round(half_h))), 0, 0, 360, 1.0, -1)
    k = max(3, int(half_h * 1.5) | 1)
    sh = np.asarray(cv2.GaussianBlur(sh, (k, k), 0), np.float32)
    return (1.0 - depth * sh).astype(np.float32)


def paint_objects(
    image: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint8], rng: np.random.Generator
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int32], list[str]]:
    """Paint 1–3 non-overlapping road objects onto a closed-set frame.

    Args:
        image: (H, W, 3) uint8 RGB frame (not modified).
        labels: (H, W) uint8 Cityscapes train ids of the frame (0 = road).
        rng: source of every random choice (same state → same output).

    Returns:
        image: (H, W, 3) uint8 RGB, the frame with contact shadows and objects painted.
        target: (H, W) uint8, 255 ignored, 0 road (shadows included), 1 object pixels.
        instances: (H, W) int32, 0 = no object, k = the k-th object (1-based).
        kinds: kind name of each object (``kinds[k - 1]`` for instance k), one of :data:`KINDS`.
        Fewer objects than drawn may be returned (none if the frame has no usable road).
    """
    height, width = labels.shape
    road = labels == ROAD
    out = image.astype(np.float32)
    instances = np.zeros((height, width), np.int32)
    kinds: list[str] = []
    road_rows = np.flatnonzero(road.any(axis=1))
    if road_rows.size == 0:
        target = np.full((height, width), VOID, np.uint8)
        return image.copy(), target, instances, kinds
    top = int(road_rows[0])
    bottoms = _occluder_bottoms(labels)
    taken = np.zeros((height, width), np.uint8)  # objects so far, dilated: keeps a small gap between objects
    sprites: list[tuple[_Sprite, int, int, float, float]] = []  # sprite, y0, x0, base y, base centre x
    n_objects = int(rng.integers(1, 4))
    for _ in range(n_objects):
        kind = KINDS[int(rng.integers(len(KINDS)))]
        for _attempt in range(40):
            y = min(height - 1, round(top + rng.uniform(0.1, 0.9) * (height - top)))
            cols = np.flatnonzero(road[y])
            if cols.size == 0:
                continue
            xl, xr = int(cols[0]), int(cols[-1])
            span = xr - xl
            if span < 12:
                continue
            xc = rng.uniform(xl + 0.15 * span, xr - 0.15 * span)
            w = max(6, round(rng.uniform(0.08, 0.35) * span))
            sprite = _crop(PAINTERS[kind](rng, w))
            sh, sw = sprite.mask.shape
            y0, x0 = y - sh + 1, round(xc - sw / 2)
            if y0 < 0 or x0 < 0 or x0 + sw > width:
                continue
            placed = np.zeros((height, width), bool)
            placed[y0 : y + 1, x0 : x0 + sw] = sprite.mask
            base_cols = np.flatnonzero(sprite.mask[-1]) + x0
            if road[y, base_cols].mean() < 0.6 or not road[y, min(width - 1, max(0, round(xc)))]:
                continue  # the base must stand on road
            if (bottoms[placed] > y).any() or taken[placed].any():
                continue  # behind a nearer car/pole, or touching another object
            taken |= np.asarray(cv2.dilate(placed.astype(np.uint8), np.ones((5, 5), np.uint8)), np.uint8)
            sprites.append((sprite, y0, x0, float(y), float(xc)))
            instances[placed] = len(kinds) + 1
            kinds.append(kind)
            break
    # contact shadows first (on road only), then the objects on top
    for sprite, _y0, _x0, y, xc in sprites:
        if rng.random() < 0.8:
            sw = sprite.mask.shape[1]
            dark = _shadow(height, width, xc, y, sw * 0.6, max(1.5, sw * 0.06), rng.uniform(0.3, 0.55))
            shade = np.where(road & (instances == 0), dark, 1.0)
            out *= shade[..., None]
    lum = float(out[road].mean()) / 100.0 if road.any() else 1.0  # follow the scene's exposure a little
    for sprite, y0, x0, _y, _xc in sprites:
        sh, sw = sprite.mask.shape
        region = out[y0 : y0 + sh, x0 : x0 + sw]
        rgb = sprite.rgb * float(np.clip(lum, 0.8, 1.2)) + rng.normal(0.0, 4.0, sprite.rgb.shape).astype(np.float32)
        region[sprite.mask] = rgb[sprite.mask]
    target = np.full((height, width), VOID, np.uint8)
    target[road] = 0
    target[instances > 0] = 1
    return np.clip(np.round(out), 0, 255).astype(np.uint8), target, instances, kinds


# ---------------------------------------------------------------------------------------------------------------
# evaluation


def _ratio(num: int, den: int) -> float | None:
    """``num / den``, or None when ``den`` is 0."""
    return num / den if den else None


def _overlay(image: npt.NDArray[np.uint8], result: Any, instances: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8: the frame dimmed, kept components green, removed red, object outlines yellow."""
    out = (image.astype(np.float32) * 0.6).astype(np.uint8)
    kept_ids = np.array([0, *[int(c.kept) for c in result.components]], np.int8)
    lab = result.labels
    kept = kept_ids[lab] == 1
    removed = (lab > 0) & ~kept
    out[kept] = (0.4 * out[kept] + 0.6 * np.array([0, 255, 0])).astype(np.uint8)
    out[removed] = (0.4 * out[removed] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
    for k in range(1, int(instances.max()) + 1):
        contours, _ = cv2.findContours((instances == k).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, (255, 255, 0), 1)
    return out


def _write_panel(path: Path, examples: list[tuple[npt.NDArray[np.uint8], Any, npt.NDArray[np.int32], str]]) -> None:
    """Rows: examples; columns: painted frame, anomaly score, overlay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(examples), 3, figsize=(15, 2.6 * len(examples)), squeeze=False)
    for row, (image, result, instances, title) in enumerate(examples):
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(title, fontsize=8)
        axes[row, 1].imshow(result.score, cmap="inferno", vmin=0, vmax=1)
        axes[row, 1].set_title("score", fontsize=8)
        axes[row, 2].imshow(_overlay(image, result, instances))
        axes[row, 2].set_title("kept green / removed red / objects yellow", fontsize=8)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(
    bundle: str, seeds: list[int], frames: int, size: tuple[int, int], panel: Path | None = None
) -> dict[str, Any]:
    """Run the pipeline on every painted frame and collect the metrics (see the module docstring)."""
    from meta_ood_perception.evaluation import PixelMetricsAccumulator
    from meta_ood_perception.pipeline import AnomalyPipeline
    from meta_ood_training.synthetic import render

    height, width = size
    pipeline = AnomalyPipeline.from_bundle(bundle, backend="onnxruntime")
    acc = PixelMetricsAccumulator()
    n_obj = 0
    found = {"kept_any": 0, "kept_half": 0, "all_any": 0, "all_half": 0}
    per_kind = {k: [0, 0] for k in KINDS}  # [objects, found_any by the kept mask]
    n_true = n_false = false_removed = true_lost = 0
    n_frames = len(seeds) * frames
    wanted = set(np.linspace(0, n_frames - 1, min(4, n_frames)).round().astype(int).tolist())
    examples: list[tuple[npt.NDArray[np.uint8], Any, npt.NDArray[np.int32], str]] = []
    jobs = [(seed, i) for seed in seeds for i in range(frames)]
    for j, (seed, i) in enumerate(tqdm(jobs, desc="frames", unit="frame")):
        clean, labels = render("closed", seed, i, height, width)
        image, target, instances, kinds = paint_objects(clean, labels, np.random.default_rng([seed, i, 7]))
        pipeline.reset()
        result = pipeline.process(image)
        acc.update(result.score, target)
        kept = result.mask > 0
        anyc = result.labels > 0
        k_max = len(kinds)
        sizes = np.bincount(instances.ravel(), minlength=k_max + 1)
        hit_kept = np.bincount(instances[kept], minlength=k_max + 1)
        hit_all = np.bincount(instances[anyc], minlength=k_max + 1)
        for k, kind in enumerate(kinds, start=1):
            n_obj += 1
            per_kind[kind][0] += 1
            per_kind[kind][1] += int(hit_kept[k] > 0)
            found["kept_any"] += int(hit_kept[k] > 0)
            found["kept_half"] += int(hit_kept[k] >= 0.5 * sizes[k])
            found["all_any"] += int(hit_all[k] > 0)
            found["all_half"] += int(hit_all[k] >= 0.5 * sizes[k])
        n_comp = len(result.components)
        on_road = np.bincount(result.labels[target != VOID], minlength=n_comp + 1)
        on_obj = np.bincount(result.labels[target == 1], minlength=n_comp + 1)
        for c in result.components:
            if on_road[c.id] == 0:
                continue
            if on_obj[c.id] > 0:
                n_true += 1
                true_lost += int(not c.kept)
            else:
                n_false += 1
                false_removed += int(not c.kept)
        if panel is not None and j in wanted:
            examples.append((image, result, instances, f"seed {seed} frame {i}: {', '.join(kinds) or 'none'}"))
    pixel = acc.compute("exact")
    report: dict[str, Any] = {
        "bundle": bundle,
        "seeds": seeds,
        "frames_per_seed": frames,
        "size": [height, width],
        "pixel": {k: float(v) for k, v in pixel.items()},
        "objects": {
            "n_objects": n_obj,
            "found_any": _ratio(found["kept_any"], n_obj),
            "found_half": _ratio(found["kept_half"], n_obj),
            "found_any_all_components": _ratio(found["all_any"], n_obj),
            "found_half_all_components": _ratio(found["all_half"], n_obj),
        },
        "road_components": {
            "n_true": n_true,
            "n_false": n_false,
            "false_removed": false_removed,
            "true_lost": true_lost,
            "false_removed_ratio": _ratio(false_removed, n_false),
            "true_lost_ratio": _ratio(true_lost, n_true),
        },
        "per_kind": {k: {"n": n, "found_any": _ratio(f, n)} for k, (n, f) in per_kind.items()},
    }
    if panel is not None and examples:
        _write_panel(panel, examples)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bundle", default="default", help="bundle directory or 'default'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[500, 501])
    parser.add_argument("--frames", type=int, default=30, help="frames per seed")
    parser.add_argument("--size", type=int, nargs=2, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--report", type=Path, required=True, help="JSON report path")
    parser.add_argument("--panel", type=Path, default=None, help="optional PNG with 4 example frames")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    report = evaluate(args.bundle, args.seeds, args.frames, (args.size[0], args.size[1]), args.panel)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    px, ob, rc = report["pixel"], report["objects"], report["road_components"]
    LOG.info(
        "AUROC %.3f FPR95 %.3f AUPRC %.3f | %d objects, found_any %.2f found_half %.2f | "
        "road components %d true (%d lost), %d false (%d removed) -> %s",
        px["auroc"],
        px["fpr95"],
        px["auprc"],
        ob["n_objects"],
        ob["found_any"] or 0.0,
        ob["found_half"] or 0.0,
        rc["n_true"],
        rc["true_lost"],
        rc["n_false"],
        rc["false_removed"],
        args.report,
    )


if __name__ == "__main__":
    main()
