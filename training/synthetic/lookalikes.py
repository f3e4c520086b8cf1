"""In-distribution look-alikes on the road: things that are road (and labelled road) but catch the entropy, as on
LostAndFound — tar seams, road patches, puddles, shadows of poles and trees, manhole covers, painted arrows and text,
fallen leaves, kerb damage. They produce real false-positive components for the meta classifier to learn.

Every look-alike is painted only over road pixels and never changes a label.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from .canvas import ROAD, Camera, Canvas, Color, blur, depth_scale, road_x, row_at_depth, shade, smooth_noise
from .street import BASE

LOOKALIKES = ("tar seam", "patch", "puddle", "pole shadow", "tree shadow", "manhole", "marking", "leaves", "kerb")
Mask = npt.NDArray[np.float32]


def _empty(canvas: Canvas) -> Mask:
    return np.zeros((canvas.h, canvas.w), np.float32)


def _pts(points: list[tuple[float, float]]) -> npt.NDArray[np.int32]:
    return np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)


def _ground_quad(cam: Camera, h: int, u0: float, u1: float, d0: float, d1: float) -> list[tuple[float, float]]:
    """Corners of a ground rectangle between lateral offsets u0..u1 (road half-widths) and depths d0..d1."""
    y0, y1 = row_at_depth(cam, h, d0), row_at_depth(cam, h, d1)
    return [(road_x(cam, h, y0, u0), y0), (road_x(cam, h, y0, u1), y0), (road_x(cam, h, y1, u1), y1),
            (road_x(cam, h, y1, u0), y1)]  # fmt: skip


def _on_road(canvas: Canvas, mask: Mask) -> Mask:
    return np.asarray(mask * (canvas.labels == ROAD), np.float32)


def _tint(canvas: Canvas, mask: Mask, color: Color) -> None:
    canvas.fill(_on_road(canvas, mask), color)


def tar_seam(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A dark, meandering crack filling across or along the lane."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    mask = _empty(canvas)
    along = rng.random() < 0.5
    points = []
    u, d = lateral, depth
    for _ in range(int(rng.integers(4, 9))):
        points.append((road_x(cam, h, row_at_depth(cam, h, d), u), row_at_depth(cam, h, d)))
        if along:
            d, u = d + rng.uniform(0.02, 0.06), u + rng.uniform(-0.04, 0.04)
        else:
            d, u = d + rng.uniform(-0.01, 0.01), u + rng.uniform(0.08, 0.2)
    thickness = max(1, round(0.004 * w * depth_scale(cam, h, points[0][1]) + rng.uniform(0, 1.5)))
    cv2.polylines(mask, [_pts(points)], False, 1.0, thickness)
    _tint(canvas, mask, shade(BASE[ROAD], float(rng.uniform(0.35, 0.55))))


def patch(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A repaired rectangle of asphalt, darker or lighter, with its own grain and a dark seam."""
    h, rng = canvas.h, canvas.rng
    width, length = rng.uniform(0.15, 0.6), rng.uniform(0.03, 0.12)
    quad = _ground_quad(cam, h, lateral - width / 2, lateral + width / 2, depth, min(depth + length, 1.05))
    mask = _empty(canvas)
    cv2.fillPoly(mask, [_pts(quad)], 1.0)
    grain = 1.0 + 0.06 * smooth_noise(rng, canvas.h, canvas.w, max(canvas.w / 80, 2))
    layer = canvas.image * float(rng.choice([rng.uniform(0.62, 0.85), rng.uniform(1.12, 1.3)])) * grain[..., None]
    canvas.blend(_on_road(canvas, mask), layer)
    if rng.random() < 0.6:
        seam = _empty(canvas)
        cv2.polylines(seam, [_pts(quad)], True, 1.0, 1)
        _tint(canvas, seam, shade(BASE[ROAD], 0.5))


def _blotch(canvas: Canvas, cam: Camera, depth: float, lateral: float, width: tuple[float, float], flatten: float,
            grain: float, level: float, sigma: float) -> Mask:  # fmt: skip
    """A flat ellipse on the ground (half-width ``width`` × frame width × depth scale, height ``flatten`` × that)
    broken up by smooth noise (cells of radius / ``grain``, kept above ``level``), blurred by ``sigma`` px."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    y = row_at_depth(cam, h, depth)
    r = rng.uniform(*width) * w * depth_scale(cam, h, y) + 0.005 * w
    mask = _empty(canvas)
    cv2.ellipse(mask, (round(road_x(cam, h, y, lateral)), round(y)), (round(r), max(round(r * flatten), 1)), 0, 0, 360,
                1.0, -1)  # fmt: skip
    broken = (smooth_noise(rng, h, w, max(r / grain, 1.5)) > level).astype(np.float32)
    return blur(mask * broken, sigma)


def puddle(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A flat, irregular puddle mirroring the sky."""
    mask = _blotch(canvas, cam, depth, lateral, (0.04, 0.14), 0.3, 2.0, -0.3, 0.8)
    sky = np.asarray([150, 170, 195], np.float32) * float(canvas.rng.uniform(0.5, 0.9))
    canvas.blend(_on_road(canvas, mask), canvas.image * 0.5 + sky * 0.5)


def tree_shadow(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A blotchy shadow of a tree crown on the road."""
    mask = _blotch(canvas, cam, depth, lateral, (0.06, 0.18), 0.35, 5.0, 0.1, 1.0)
    canvas.darken(_on_road(canvas, mask), 0.25 + canvas.light.shadow)


def pole_shadow(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """The long, thin shadow of a roadside pole across the road, in the sun's direction."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    y = row_at_depth(cam, h, depth)
    s = depth_scale(cam, h, y)
    side = -1.0 if canvas.light.sun_x > 0 else 1.0
    x0 = road_x(cam, h, y, side * 1.1)
    x1 = road_x(cam, h, y, side * 1.1 - side * rng.uniform(0.8, 1.8))
    y1 = y + rng.uniform(-0.03, 0.03) * h * s
    mask = _empty(canvas)
    cv2.line(mask, (round(x0), round(y)), (round(x1), round(y1)), 1.0, max(1, round(0.008 * w * s + 1)))
    canvas.darken(_on_road(canvas, blur(mask, 0.7)), 0.3 + canvas.light.shadow)  # (lateral: from the road edge)


def manhole(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A dark cast-iron manhole cover with a rim and a grid."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    y = row_at_depth(cam, h, depth)
    s = depth_scale(cam, h, y)
    rx = rng.uniform(0.025, 0.05) * w * s + 1.5
    center, axes = (round(road_x(cam, h, y, lateral)), round(y)), (max(round(rx), 1), max(round(rx * 0.32), 1))
    iron = shade(BASE[ROAD], float(rng.uniform(0.45, 0.7)))
    mask = _empty(canvas)
    cv2.ellipse(mask, center, axes, 0, 0, 360, 1.0, -1)
    _tint(canvas, mask, iron)
    rim = _empty(canvas)
    cv2.ellipse(rim, center, axes, 0, 0, 360, 1.0, max(1, round(rx / 8)))
    _tint(canvas, rim, shade(BASE[ROAD], 1.25))
    grid = _empty(canvas)
    for k in (-0.5, 0.0, 0.5):
        cv2.line(grid, (round(center[0] + k * axes[0]), center[1] - axes[1]),
                 (round(center[0] + k * axes[0]), center[1] + axes[1]), 1.0, 1)  # fmt: skip
    _tint(canvas, grid * mask, shade(iron, 1.35))


def marking(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """A painted arrow or a word (block letters) on the lane in the lane marks' paint, partly worn."""
    h, rng = canvas.h, canvas.rng
    paint = shade(BASE[ROAD], 2.2) if rng.random() < 0.8 else (205.0, 175.0, 80.0)
    mask = _empty(canvas)
    if rng.random() < 0.6:  # arrow pointing ahead: shaft and head on the ground plane
        half, length = rng.uniform(0.012, 0.025), rng.uniform(0.06, 0.12)
        cv2.fillPoly(mask, [_pts(_ground_quad(cam, h, lateral - half, lateral + half, depth, depth + length))], 1.0)
        y = row_at_depth(cam, h, depth)
        head = [(road_x(cam, h, y, lateral - 3 * half), y), (road_x(cam, h, y, lateral + 3 * half), y),
                (road_x(cam, h, y - 0.06 * (h - cam.horizon), lateral), y - 0.06 * (h - cam.horizon))]  # fmt: skip
        cv2.fillPoly(mask, [_pts(head)], 1.0)
    else:  # block letters across the lane
        letters = int(rng.integers(2, 5))
        span = rng.uniform(0.25, 0.45)
        u = lateral - span / 2
        for _ in range(letters):
            lw = span / letters * 0.7
            kind = rng.integers(0, 3)
            if kind == 0:
                cv2.fillPoly(mask, [_pts(_ground_quad(cam, h, u, u + lw, depth, depth + 0.04))], 1.0)
            else:
                for part in range(1 + kind):
                    d0 = depth + part * 0.04 / (1 + kind)
                    cv2.fillPoly(mask, [_pts(_ground_quad(cam, h, u, u + lw, d0, d0 + 0.006))], 1.0)
            u += span / letters
    worn = np.clip(0.75 + 0.4 * smooth_noise(rng, canvas.h, canvas.w, 3.0), 0.0, 1.0)
    _tint(canvas, mask * worn, shade(paint, float(rng.uniform(0.7, 0.95))))


def leaves(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """Wet fallen leaves scattered over the asphalt (dark brown, ochre, olive), a few at a time."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    y = row_at_depth(cam, h, depth)
    s = depth_scale(cam, h, y)
    x = road_x(cam, h, y, lateral)
    spread = rng.uniform(0.06, 0.2) * w * s + 2
    for _ in range(int(rng.integers(4, 16))):
        c = ((85, 65, 45), (105, 80, 45), (80, 75, 50), (70, 55, 40))[rng.integers(0, 4)]
        r = max(0.004 * w * s * rng.uniform(0.5, 1.2), 0.7)
        mask = _empty(canvas)
        cv2.ellipse(
            mask,
            (round(x + rng.normal(0, spread)), round(y + rng.normal(0, spread * 0.3))),
            (max(round(r * 1.4), 1), max(round(r), 1)),
            float(rng.uniform(0, 180)),
            0,
            360,
            1.0,
            -1,
        )
        _tint(canvas, mask, canvas.jitter(c, 12))


def kerb(canvas: Canvas, cam: Camera, depth: float, lateral: float) -> None:
    """Broken asphalt at the road's edge: an irregular lighter or darker bite into the road."""
    h, rng = canvas.h, canvas.rng
    edge = 1.0 if lateral >= 0 else -1.0
    length = rng.uniform(0.04, 0.15)
    quad = _ground_quad(cam, h, edge * rng.uniform(0.78, 0.9), edge * 1.02, depth, min(depth + length, 1.05))
    mask = _empty(canvas)
    cv2.fillPoly(mask, [_pts(quad)], 1.0)
    mask *= (smooth_noise(rng, canvas.h, canvas.w, 3.0) > -0.4).astype(np.float32)
    _tint(canvas, mask, shade(BASE[ROAD], float(rng.choice([rng.uniform(0.5, 0.7), rng.uniform(1.3, 1.6)]))))


PAINTERS: dict[str, Callable[[Canvas, Camera, float, float], None]] = {
    "tar seam": tar_seam, "patch": patch, "puddle": puddle, "pole shadow": pole_shadow, "tree shadow": tree_shadow,
    "manhole": manhole, "marking": marking, "leaves": leaves, "kerb": kerb,
}  # fmt: skip


def paint_lookalikes(canvas: Canvas, cam: Camera, count: int, kinds: tuple[str, ...] = LOOKALIKES) -> list[str]:
    """Paint ``count`` look-alikes of random ``kinds`` at random road positions; returns the kinds painted."""
    rng = canvas.rng
    painted = []
    for _ in range(count):
        kind = str(kinds[int(rng.integers(0, len(kinds)))])
        if kind in ("pole shadow", "tree shadow") and canvas.light.shadow < 0.15:
            kind = "patch"  # overcast / dusk light casts no sharp shadows
        PAINTERS[kind](canvas, cam, float(rng.uniform(0.1, 0.9)), float(rng.uniform(-0.75, 0.75)))
        painted.append(kind)
    return painted
