"""Road hazards: natural materials in muted colours, with their own texture generator, shading by the frame's sun
and a soft contact shadow on the road — an appearance family disjoint from the OoD proxies (:mod:`.proxies`).

Shapes: cardboard or wooden boxes, tires (standing or lying), rocks, planks, sacks, fallen cargo (crate stacks,
metal barrels) — :data:`COMMON_HAZARDS` — and animals and bags — :data:`HELD_OUT_HAZARDS`, kept apart to test
generalization to a family a meta classifier never saw. Materials: cardboard, wood, rubber, metal, stone, fabric,
fur. A hazard is a deferred painter (see :func:`hazard_item`) so that nearer traffic can occlude it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from .canvas import (
    HAZARD_PAINT_LABEL,
    ROAD,
    Camera,
    Canvas,
    Color,
    FloatImage,
    blur,
    depth_scale,
    road_x,
    smooth_noise,
)  # fmt: skip

COMMON_HAZARDS = ("box", "tire", "rock", "plank", "sack", "cargo")
HELD_OUT_HAZARDS = ("animal", "bag")
ALL_HAZARDS = COMMON_HAZARDS + HELD_OUT_HAZARDS

#: Muted base colours per material (RGB).
MATERIAL_COLORS: dict[str, tuple[Color, ...]] = {
    "cardboard": ((168, 128, 84), (150, 112, 74), (182, 150, 108)),
    "wood": ((150, 106, 66), (122, 88, 58), (140, 130, 114), (176, 140, 96)),
    "rubber": ((36, 36, 38), (48, 47, 46)),
    "metal": ((128, 134, 142), (96, 112, 104), (120, 70, 52), (84, 96, 120)),
    "stone": ((116, 110, 100), (128, 118, 102), (96, 94, 92), (140, 132, 120)),
    "fabric": ((170, 150, 110), (86, 100, 72), (72, 86, 110), (110, 104, 98), (120, 70, 60)),
    "fur": ((112, 80, 56), (122, 120, 114), (42, 40, 38), (200, 194, 178), (168, 112, 64)),
    "plastic": ((34, 34, 36), (60, 64, 72), (70, 80, 96), (96, 92, 80)),
}


def material(rng: np.random.Generator, name: str, h: int, w: int, horizontal: bool = True) -> FloatImage:
    """(h, w, 3) float32 texture of a material (see :data:`MATERIAL_COLORS`); ``horizontal`` orients grain and
    fur along the object's long axis."""
    base = np.asarray(MATERIAL_COLORS[name][rng.integers(0, len(MATERIAL_COLORS[name]))], np.float32)
    base = np.clip(base + rng.normal(0, 8, 3), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    along, across = (xx, yy) if horizontal else (yy, xx)
    if name == "cardboard":  # corrugation ribs and a tape strip
        value = 1.0 + 0.04 * np.sin(along * 2 * np.pi / rng.uniform(2.5, 4.5)) + 0.04 * smooth_noise(rng, h, w, 4)
        tex = base * value[..., None]
        if rng.random() < 0.7:
            band = np.abs(across - rng.uniform(0.2, 0.5) * (h if horizontal else w)) < max(0.08 * min(h, w), 1)
            tex[band] = tex[band] * 0.4 + np.array([205, 190, 150], np.float32) * 0.6
        return np.asarray(tex, np.float32)
    if name == "wood":  # grain along the length, a knot or two
        wobble = 2.5 * smooth_noise(rng, h, w, max(min(h, w) / 2, 2))
        value = 1.0 + 0.1 * np.sin((across + wobble) * 2 * np.pi / rng.uniform(2.0, 5.0))
        tex = base * value[..., None]
        for _ in range(int(rng.integers(0, 3))):
            cv2.ellipse(tex, (int(rng.uniform(0, w)), int(rng.uniform(0, h))), (max(w // 20, 1), max(h // 6, 1)), 0, 0,
                        360, tuple(float(c) for c in base * 0.55), -1)  # fmt: skip
        return np.asarray(tex, np.float32)
    if name == "rubber":  # tread blocks
        value = 1.0 + 0.12 * (np.sin(along * 2 * np.pi / rng.uniform(2.0, 3.5)) > 0.3)
        return np.asarray(base * value[..., None], np.float32)
    if name == "metal":  # a specular band, rust speckles
        band = np.exp(-(((across / max(h if horizontal else w, 1)) - rng.uniform(0.2, 0.4)) ** 2) / 0.01)
        tex = base * (1.0 + 0.35 * band)[..., None]
        rust = smooth_noise(rng, h, w, 2.0) > 1.3
        tex[rust] = np.array([120, 70, 40], np.float32)
        return np.asarray(tex, np.float32)
    if name == "stone":  # speckle on blotches
        value = 1.0 + 0.1 * smooth_noise(rng, h, w, max(min(h, w) / 3, 2)) + 0.08 * rng.standard_normal((h, w))
        return np.asarray(base * value[..., None], np.float32)
    if name == "fabric" or name == "plastic":  # weave or folds
        if name == "fabric":
            value = 1.0 + 0.06 * np.sin(xx * 2.2) * np.sin(yy * 2.2) + 0.06 * smooth_noise(rng, h, w, 3)
        else:
            value = 1.0 + 0.25 * np.clip(smooth_noise(rng, h, w, max(min(h, w) / 4, 2)), -1, 1)
        return np.asarray(base * value[..., None], np.float32)
    # fur: fine streaks along the body, darker back
    streak = cv2.resize(rng.standard_normal((max(h, 1), max(w // 6, 1))).astype(np.float32), (w, h)) if horizontal \
        else cv2.resize(rng.standard_normal((max(h // 6, 1), max(w, 1))).astype(np.float32), (w, h))  # fmt: skip
    value = 1.0 + 0.12 * streak - 0.15 * (1 - yy / max(h - 1, 1))
    return np.asarray(base * value[..., None], np.float32)


@dataclass
class _Part:
    mask: npt.NDArray[np.float32]  # local (h, w) 0/1
    texture: FloatImage  # local (h, w, 3)
    gain: float = 1.0


def _local(h: int, w: int) -> npt.NDArray[np.float32]:
    return np.zeros((h, w), np.float32)


def _poly(mask: npt.NDArray[np.float32], pts: list[tuple[float, float]]) -> None:
    cv2.fillPoly(mask, [np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)], 1.0)


def _ellipse(mask: npt.NDArray[np.float32], cx: float, cy: float, rx: float, ry: float, angle: float = 0.0,
             thickness: int = -1) -> None:  # fmt: skip
    cv2.ellipse(mask, (round(cx), round(cy)), (max(round(rx), 1), max(round(ry), 1)), angle, 0, 360, 1.0, thickness)


def _shape_parts(rng: np.random.Generator, shape: str, lh: int, lw: int, cx: float, base: float,
                 size: float) -> list[_Part]:  # fmt: skip
    """The parts (mask, texture, brightness) of one hazard in a local (lh, lw) window; base centre (cx, base)."""
    parts: list[_Part] = []

    def part(mat: str, gain: float = 1.0, horizontal: bool = True) -> _Part:
        p = _Part(_local(lh, lw), material(rng, mat, lh, lw, horizontal), gain)
        parts.append(p)
        return p

    half = size / 2
    if shape == "box":
        mat = "cardboard" if rng.random() < 0.7 else "wood"
        height = size * rng.uniform(0.55, 1.1)
        top = size * rng.uniform(0.15, 0.3)
        skew = size * rng.uniform(-0.25, 0.25)
        front = part(mat)
        _poly(
            front.mask, [(cx - half, base), (cx + half, base), (cx + half, base - height), (cx - half, base - height)]
        )
        lid = part(mat, 1.25)
        top_y = base - height - top
        _poly(lid.mask, [(cx - half, base - height), (cx + half, base - height), (cx + half + skew, top_y),
                         (cx - half + skew, top_y)])  # fmt: skip
    elif shape == "tire":
        r = half
        if rng.random() < 0.55:  # standing
            tire = part("rubber")
            _ellipse(tire.mask, cx, base - r, r * rng.uniform(0.35, 1.0), r)
            hub = part("metal", 0.9)
            _ellipse(hub.mask, cx, base - r, r * 0.3, r * 0.45)
        else:  # lying flat: a ring, the road shows through the hole
            tire = part("rubber")
            ry = r * rng.uniform(0.3, 0.45)
            _ellipse(tire.mask, cx, base - ry, r, ry)
            hole = _local(lh, lw)
            _ellipse(hole, cx, base - ry * 1.1, r * 0.5, ry * 0.45)
            tire.mask *= 1 - hole
    elif shape == "rock":
        n = int(rng.integers(7, 12))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        rx, ry = half, half * rng.uniform(0.45, 0.85)
        radii = rng.uniform(0.75, 1.0, n)
        pts = [
            (cx + rx * r * np.cos(a), base - ry + ry * min(r * np.sin(a), 0.95))
            for a, r in zip(angles, radii, strict=True)
        ]
        rock = part("stone")
        _poly(rock.mask, pts)
    elif shape == "plank":
        length, thick = size * rng.uniform(1.4, 2.4), max(size * rng.uniform(0.08, 0.16), 1.0)
        angle = np.deg2rad(rng.uniform(-18, 18))
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        plank = part("wood")
        _poly(plank.mask, [(cx - dx, base - dy), (cx + dx, base + dy), (cx + dx, base + dy - thick * 2.2),
                           (cx - dx, base - dy - thick * 2.2)])  # fmt: skip
        edge = part("wood", 0.7)
        _poly(edge.mask, [(cx - dx, base - dy), (cx + dx, base + dy), (cx + dx, base + dy - thick),
                          (cx - dx, base - dy - thick)])  # fmt: skip
    elif shape == "sack":
        height = size * rng.uniform(0.5, 0.85)
        sack = part("fabric")
        _ellipse(sack.mask, cx, base - height / 2, half, height / 2)
        _ellipse(sack.mask, cx + half * rng.uniform(-0.3, 0.3), base - height * 0.8, half * 0.55, height * 0.35)
        neck = part("fabric", 0.8, horizontal=False)
        _ellipse(neck.mask, cx, base - height * 1.05, half * 0.15, height * 0.15)
    elif shape == "cargo":
        if rng.random() < 0.5:  # a metal barrel lying on its side
            length, r = size * rng.uniform(1.2, 1.8), half * rng.uniform(0.6, 0.8)
            barrel = part("metal")
            _poly(barrel.mask, [(cx - length / 2, base), (cx + length / 2, base), (cx + length / 2, base - 2 * r),
                                (cx - length / 2, base - 2 * r)])  # fmt: skip
            cap = part("metal", 0.75)
            _ellipse(cap.mask, cx + length / 2, base - r, r * 0.35, r)
        else:  # a small stack of crates
            mat = "wood" if rng.random() < 0.6 else "cardboard"
            w0 = size * rng.uniform(0.45, 0.6)
            for k, (ox, level) in enumerate([(-0.55, 0), (0.55, 0), (0.0, 1)][: int(rng.integers(2, 4))]):
                crate = part(mat, 1.0 + 0.1 * k)
                x0, y0 = cx + ox * w0 - w0 / 2, base - level * w0 * 0.9
                _poly(crate.mask, [(x0, y0), (x0 + w0, y0), (x0 + w0, y0 - w0 * 0.9), (x0, y0 - w0 * 0.9)])
    elif shape == "animal":
        body_len, body_h = size, size * rng.uniform(0.32, 0.45)
        leg = body_h * rng.uniform(0.8, 1.3)
        fur = part("fur")
        body_y = base - leg - body_h / 2
        _ellipse(fur.mask, cx, body_y, body_len / 2, body_h / 2)
        facing = float(rng.choice([-1, 1]))
        _ellipse(fur.mask, cx + facing * body_len * 0.55, body_y - body_h * 0.45, body_h * 0.4, body_h * 0.33)
        for lx in (-0.35, -0.2, 0.2, 0.35):
            _poly(
                fur.mask,
                [
                    (cx + lx * body_len - body_h * 0.09, body_y),
                    (cx + lx * body_len + body_h * 0.09, body_y),
                    (cx + lx * body_len + body_h * 0.07, base),
                    (cx + lx * body_len - body_h * 0.07, base),
                ],
            )
        cv2.line(fur.mask, (round(cx - facing * body_len / 2), round(body_y)),
                 (round(cx - facing * body_len * 0.75), round(body_y - body_h * 0.5)), 1.0,
                 max(1, round(body_h * 0.12)))  # fmt: skip
    else:  # bag: a rounded sack of plastic or fabric with a handle
        height = size * rng.uniform(0.55, 0.9)
        bag = part("plastic" if rng.random() < 0.6 else "fabric")
        _ellipse(bag.mask, cx, base - height * 0.45, half, height * 0.45)
        _poly(bag.mask, [(cx - half * 0.8, base - height * 0.5), (cx + half * 0.8, base - height * 0.5),
                         (cx + half * 0.6, base - height * 0.95), (cx - half * 0.6, base - height * 0.95)])  # fmt: skip
        _ellipse(bag.mask, cx, base - height, half * 0.35, height * 0.22, thickness=max(1, round(size * 0.04)))
    return parts


def hazard_item(canvas: Canvas, cam: Camera, y: float, lateral: float, shape: str, size_frac: float
                ) -> Callable[[], None]:  # fmt: skip
    """A deferred painter of one hazard of ``shape`` whose base stands at row ``y``, lateral offset ``lateral`` (road
    half-widths), width ``size_frac`` × frame width at the bottom row; it paints a contact shadow on the road, then
    the object labelled :data:`HAZARD_PAINT_LABEL`."""
    rng = np.random.default_rng(canvas.rng.integers(0, 2**63))  # the item's own draws, whenever it is painted
    h, w = canvas.h, canvas.w

    def draw() -> None:
        s = depth_scale(cam, h, y)
        size = size_frac * w * s + 0.006 * w
        x = road_x(cam, h, y, lateral)
        pad = int(3.0 * size) + 4
        x0, y0 = int(x) - pad, int(y) - pad
        lh, lw = 2 * pad, 2 * pad
        # contact shadow on the road, offset away from the sun
        shadow = _local(lh, lw)
        _ellipse(shadow, x - x0 - canvas.light.sun_x * 0.25 * size, y - y0, size * rng.uniform(0.55, 0.75),
                 max(size * 0.14, 1.0))  # fmt: skip
        shadow = blur(shadow, max(size * 0.06, 0.6))
        full = np.zeros((h, w), np.float32)
        _paste(full, shadow, y0, x0)
        full *= canvas.labels == ROAD
        canvas.darken(full, 0.35 + 0.5 * canvas.light.shadow)
        # the object: parts in order, shaded from above and from the sun's side
        yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
        light = 1.12 - 0.3 * np.clip((yy - (y - y0 - 2 * size)) / max(2 * size, 1), 0, 1)
        light = light + 0.12 * canvas.light.sun_x * np.clip((xx - (x - x0)) / max(size, 1), -1, 1)
        for p in _shape_parts(rng, shape, lh, lw, x - x0, y - y0, size):
            edge = blur(p.mask, 0.5)
            layer = p.texture * (p.gain * light)[..., None]
            canvas.blend(edge, layer, y0, x0)
            labels = np.zeros((h, w), np.float32)
            _paste(labels, p.mask, y0, x0)
            canvas.labels[labels > 0.5] = HAZARD_PAINT_LABEL

    return draw


def _paste(full: npt.NDArray[np.float32], local: npt.NDArray[np.float32], y0: int, x0: int) -> None:
    lh, lw = local.shape
    h, w = full.shape
    ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + lh, h), min(x0 + lw, w)
    if ya < yb and xa < xb:
        full[ya:yb, xa:xb] = np.maximum(full[ya:yb, xa:xb], local[ya - y0 : yb - y0, xa - x0 : xb - x0])
