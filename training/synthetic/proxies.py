"""OoD proxies, pasted COCO-style into street scenes for entropy maximization.

Diverse content, never the hazards' material generator (:mod:`.hazards`): pieces of the street scene itself moved
out of place (the world's own colours and textures where they do not belong), flat colours and flat faces of any hue,
saturation and brightness (muted ones included, as the street's own surfaces), natural-looking surfaces (fractal
noise through a random palette at a random contrast), smooth photo-like gradients, colour mosaics, and unnatural
textures (saturated stripes, checkers, dots). Shapes are random blobs, polygons,
stars and ellipses; most stand on the road like objects, the rest anywhere. The OoD pixel fraction is
drawn from a requested range (informative ≤ 20 %, non-informative ≥ 80 %) and the edges can be softened.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np
import numpy.typing as npt

from .canvas import ROAD, Camera, Canvas, FloatImage, blur, depth_scale, fractal_noise, road_x, row_at_depth

UNNATURAL_COLORS = ((230, 30, 200), (20, 230, 210), (250, 250, 20), (120, 20, 250), (250, 60, 60), (20, 250, 60))
CONTENT = ("street", "flat", "faces", "natural", "gradient", "mosaic", "unnatural")
CONTENT_P = (0.3, 0.15, 0.1, 0.2, 0.05, 0.05, 0.15)


def _random_color(rng: np.random.Generator) -> npt.NDArray[np.float32]:
    """Any hue; saturation and brightness biased to the muted range of real objects."""
    r, g, b = colorsys.hsv_to_rgb(float(rng.uniform(0, 1)), float(rng.beta(1.3, 2.2)), float(rng.uniform(0.12, 0.95)))
    return np.array([r, g, b], np.float32) * 255.0


def content(rng: np.random.Generator, h: int, w: int, street: FloatImage | None = None) -> FloatImage:
    """(h, w, 3) float32 proxy texture of a random kind from :data:`CONTENT`: a piece of the ``street`` image itself
    (the world's own colours and textures, out of place), a flat colour, two or three flat faces, fractal noise
    through a colour ramp at a random contrast, a gradient, a mosaic, or an unnatural pattern."""
    kind = str(rng.choice(CONTENT, p=CONTENT_P))
    if kind == "street" and street is not None:  # a patch cut from elsewhere in the scene, flipped or turned
        sh, sw = street.shape[:2]
        ph, pw = min(h, sh), min(w, sw)
        y0, x0 = int(rng.integers(0, sh - ph + 1)), int(rng.integers(0, sw - pw + 1))
        piece = street[y0 : y0 + ph, x0 : x0 + pw]
        if rng.random() < 0.5:
            piece = piece[::-1]
        scaled = cv2.resize(np.ascontiguousarray(piece), (w, h), interpolation=cv2.INTER_LINEAR)
        return np.asarray(scaled * float(rng.uniform(0.7, 1.3)), np.float32)
    if kind in ("street", "flat"):
        return np.asarray(np.broadcast_to(_random_color(rng), (h, w, 3)) + rng.normal(0, 3, (h, w, 1)), np.float32)
    if kind == "faces":  # flat regions split by random lines, like the faces of a solid
        tex = np.empty((h, w, 3), np.float32)
        tex[:] = _random_color(rng)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        for _ in range(int(rng.integers(1, 3))):
            angle = rng.uniform(0, np.pi)
            side = (xx - rng.uniform(0, w)) * np.cos(angle) + (yy - rng.uniform(0, h)) * np.sin(angle) > 0
            tex[side] *= float(rng.uniform(0.6, 1.4))
        return np.asarray(np.clip(tex, 0, 255), np.float32)
    if kind == "natural":  # fractal noise through a 2–4 colour ramp, at a random contrast
        n = int(rng.integers(2, 5))
        palette = np.stack([_random_color(rng) for _ in range(n)])
        t = fractal_noise(rng, h, w, rng.uniform(2, max(min(h, w) / 2, 3)), octaves=int(rng.integers(2, 5)))
        t = np.clip((t * float(rng.uniform(0.15, 1.0)) + 2.0) / 4.0, 0, 1) * (n - 1)
        lo = np.floor(t).astype(np.int64).clip(0, n - 2)
        frac = (t - lo)[..., None]
        return np.asarray(palette[lo] * (1 - frac) + palette[lo + 1] * frac, np.float32)
    if kind == "gradient":
        a, b = _random_color(rng), _random_color(rng)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        proj = xx * np.cos(angle) + yy * np.sin(angle)
        ramp = ((proj - proj.min()) / max(float(np.ptp(proj)), 1.0))[..., None]
        return np.asarray(a * (1 - ramp) + b * ramp + rng.normal(0, 4, (h, w, 1)), np.float32)
    if kind == "mosaic":
        cells = rng.uniform(0, 1, (int(rng.integers(2, 7)), int(rng.integers(2, 7))))
        palette = np.stack([_random_color(rng) for _ in range(3)])
        grid = palette[np.minimum((cells * 3).astype(np.int64), 2)].astype(np.float32)
        return np.asarray(cv2.resize(grid, (w, h), interpolation=cv2.INTER_NEAREST), np.float32)
    a, b = (np.asarray(UNNATURAL_COLORS[i], np.float32) for i in rng.choice(len(UNNATURAL_COLORS), 2, replace=False))
    yy, xx = np.ogrid[0:h, 0:w]
    period = rng.uniform(4, 14)
    pattern = rng.integers(0, 3)
    if pattern == 0:
        angle = rng.uniform(0, np.pi)
        sel = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)) > 0
    elif pattern == 1:
        sel = ((xx // period).astype(int) + (yy // period).astype(int)) % 2 == 0
    else:
        sel = ((xx % period) - period / 2) ** 2 + ((yy % period) - period / 2) ** 2 < (period / 3) ** 2
    return np.where(sel[..., None], a, b).astype(np.float32)


def shape_mask(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, radius: float) -> npt.NDArray[np.bool_]:
    """A random blob / star / polygon / ellipse mask (bool) centred at (cx, cy)."""
    mask = np.zeros((h, w), np.uint8)
    aspect = rng.uniform(0.5, 1.5)
    if rng.random() < 0.2:
        cv2.ellipse(mask, (round(cx), round(cy)), (max(round(radius), 1), max(round(radius * aspect), 1)),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)  # fmt: skip
        return mask.astype(bool)
    n = int(rng.integers(5, 11))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    star = rng.random() < 0.3
    radii = radius * (rng.uniform(0.5, 1.0, n) if not star else np.where(np.arange(n) % 2 == 0, 1.0, 0.45))
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles) * aspect], axis=1)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def paste_proxies(canvas: Canvas, cam: Camera, fraction: tuple[float, float], boundary: float) -> npt.NDArray[np.bool_]:
    """Paste proxies until the OoD pixel fraction lies in ``fraction``; returns the (H, W) proxy mask."""
    rng, h, w = canvas.rng, canvas.h, canvas.w
    lo, hi = fraction
    target = rng.uniform(lo, hi)
    total = np.zeros((h, w), bool)
    radius0 = np.sqrt(target * h * w / np.pi)
    road = canvas.labels == ROAD
    street = canvas.image.copy()  # the scene before any proxy: source of out-of-place pieces
    shrink = 1.0  # shapes that overshoot the requested fraction are retried smaller
    for _ in range(80):
        if total.mean() >= target:
            break
        big = target > 0.5
        if big:
            radius = radius0 * rng.uniform(1.2, 1.6) * shrink
            cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2
        elif rng.random() < 0.7 and road.any():  # standing on the road, sized by its depth like an object
            y = row_at_depth(cam, h, float(rng.uniform(0.1, 0.95)))
            radius = min(radius0 * rng.uniform(0.3, 0.8), rng.uniform(0.03, 0.14) * w * depth_scale(cam, h, y) + 2)
            cx, cy = road_x(cam, h, y, float(rng.uniform(-0.8, 0.8))), y - radius * rng.uniform(0.5, 0.9)
        else:
            radius = radius0 * rng.uniform(0.25, 0.7)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        mask = shape_mask(rng, h, w, cx, cy, radius)
        if big:
            mask |= shape_mask(rng, h, w, cx, cy, radius * 1.3)
        if not mask.any() or (total | mask).mean() > hi:
            shrink *= 0.9
            continue
        x, y0, bw, bh = cv2.boundingRect(mask.view(np.uint8))
        pad = 8
        xa, ya, xb, yb = max(x - pad, 0), max(y0 - pad, 0), min(x + bw + pad, w), min(y0 + bh + pad, h)
        alpha = mask[ya:yb, xa:xb].astype(np.float32)
        # the label keeps the hard mask; the pixels blend over an anti-aliased (boundary 1) or soft (0) edge
        alpha = blur(alpha, 0.5 + 3.0 * (1.0 - boundary))
        texture = content(rng, yb - ya, xb - xa, street)
        if rng.random() < 0.5:  # shading across the proxy
            gain = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3), yb - ya, dtype=np.float32)
            texture = texture * gain[:, None, None]
        canvas.blend(alpha, texture, ya, xa)
        total |= mask
    return total
