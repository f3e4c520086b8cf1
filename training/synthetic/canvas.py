"""The canvas every frame is painted on: an RGB image and its label map, a camera, lighting, smooth noise.

Coordinates are pixels of the frame being rendered; every size is relative to the frame, so a scene rendered at
256×512 and at 512×1024 from the same seed has the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from ..datasets.cityscapes import CITYSCAPES_CLASSES

Color = tuple[float, float, float]  # RGB, 0..255
FloatImage = npt.NDArray[np.float32]

#: The synthetic world paints Cityscapes' 19 train ids.
CLASS_NAMES = CITYSCAPES_CLASSES
(ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS,
 TRAIN, MOTORCYCLE, BICYCLE) = range(19)  # fmt: skip
#: Label of hazard pixels while a hazard frame is painted (nearer traffic may still cover them).
HAZARD_PAINT_LABEL = 200


def shade(c: Color, k: float) -> Color:
    """``c`` times ``k`` per channel, clipped to 0..255."""
    return min(c[0] * k, 255.0), min(c[1] * k, 255.0), min(c[2] * k, 255.0)


@dataclass(frozen=True)
class Camera:
    """Horizon row and vanishing-point column in pixels, road half-width at the bottom row in pixels."""

    horizon: int
    vanish_x: int
    road_half: int


@dataclass(frozen=True)
class Lighting:
    """One frame's light: brightness, colour tint (RGB gains), desaturation, sun direction and shadow strength.

    Attributes:
        name: ``day``, ``overcast``, ``dusk`` or ``low sun``.
        brightness: global gain (dusk is dark).
        tint: (3,) RGB gains (dusk and low sun are warm, overcast slightly blue).
        desaturate: 0 = colours as painted, 1 = grey.
        sun_x: horizontal direction of the light, −1 (from the left) … 1 (from the right).
        shadow: darkening of cast shadows, 0 (none) … 1 (black).
    """

    name: str
    brightness: float
    tint: Color
    desaturate: float
    sun_x: float
    shadow: float


def draw_lighting(rng: np.random.Generator) -> Lighting:
    """A random lighting: day 45 %, overcast 25 %, dusk 15 %, low sun 15 %."""
    kind = rng.choice(["day", "overcast", "dusk", "low sun"], p=[0.45, 0.25, 0.15, 0.15])
    sun = float(rng.uniform(-1, 1))
    if kind == "day":
        return Lighting("day", float(rng.uniform(0.9, 1.15)), (1.0, 1.0, 1.0), 0.0, sun, float(rng.uniform(0.3, 0.5)))
    if kind == "overcast":
        tint = (0.96, 0.98, 1.03)
        return Lighting("overcast", float(rng.uniform(0.75, 0.95)), tint, float(rng.uniform(0.25, 0.5)), sun, 0.12)
    if kind == "dusk":
        tint = (1.08, 0.88, 0.74)
        return Lighting("dusk", float(rng.uniform(0.5, 0.7)), tint, float(rng.uniform(0.05, 0.2)), sun, 0.2)
    return Lighting("low sun", float(rng.uniform(0.85, 1.05)), (1.1, 0.95, 0.8), 0.05, float(rng.choice([-1, 1])) *
                    float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.45, 0.6)))  # fmt: skip


class Canvas:
    """An image and its label map, painted together (the image in linear 0..255 float before lighting)."""

    def __init__(self, height: int, width: int, rng: np.random.Generator, light: Lighting) -> None:
        self.h, self.w, self.rng, self.light = height, width, rng, light
        self.image = np.zeros((height, width, 3), np.float32)
        self.labels = np.zeros((height, width), np.uint8)

    def jitter(self, base: Color, amount: float = 18.0) -> Color:
        """``base`` with Gaussian colour noise of ``amount`` per channel."""
        c = np.clip(np.asarray(base, np.float32) + self.rng.normal(0, amount, 3), 0, 255)
        return float(c[0]), float(c[1]), float(c[2])

    def poly(self, points: npt.ArrayLike, label: int | None, color: Color) -> None:
        """Fill a polygon (N × (x, y)); ``label`` None paints the image only."""
        pts = np.round(np.asarray(points, np.float64)).astype(np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.image, [pts], color)
        if label is not None:
            cv2.fillPoly(self.labels, [pts], int(label))

    def rect(self, x0: float, y0: float, x1: float, y1: float, label: int | None, color: Color) -> None:
        """Fill an axis-aligned rectangle."""
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], label, color)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, label: int | None, color: Color,
                angle: float = 0.0) -> None:  # fmt: skip
        """Fill an ellipse (radii in pixels, ``angle`` in degrees)."""
        center, axes = (round(cx), round(cy)), (max(round(rx), 1), max(round(ry), 1))
        cv2.ellipse(self.image, center, axes, angle, 0, 360, color, -1)
        if label is not None:
            cv2.ellipse(self.labels, center, axes, angle, 0, 360, int(label), -1)

    def blend(self, mask: npt.NDArray[np.float32], layer: FloatImage, y0: int = 0, x0: int = 0) -> None:
        """Alpha-blend an (h, w, 3) ``layer`` with (h, w) ``mask`` in [0, 1] at offset (y0, x0), clipped; only the
        mask's bounding box is touched."""
        h, w = mask.shape
        ya, xa, yb, xb = max(y0, 0), max(x0, 0), min(y0 + h, self.h), min(x0 + w, self.w)
        if ya >= yb or xa >= xb:
            return
        m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if not len(rows):
            return
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        region = self.image[ya + r0 : ya + r1, xa + c0 : xa + c1]
        src = layer[ya - y0 + r0 : ya - y0 + r1, xa - x0 + c0 : xa - x0 + c1]
        region += (src - region) * m[r0:r1, c0:c1, None]

    def fill(self, mask: npt.NDArray[np.float32], color: Color) -> None:
        """Alpha-blend a flat ``color`` with a full-frame (H, W) ``mask`` in [0, 1] (bounding box only)."""
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            return
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        region = self.image[r0:r1, c0:c1]
        region += (np.asarray(color, np.float32) - region) * mask[r0:r1, c0:c1, None]

    def darken(self, mask: npt.NDArray[np.float32], strength: float) -> None:
        """Multiply the image by ``1 − strength · mask`` (a cast shadow; labels unchanged)."""
        self.image *= (1.0 - strength * mask)[..., None]


def camera(rng: np.random.Generator, h: int, w: int) -> Camera:
    """A random camera: horizon at 36–48 % of the height, vanishing point near the centre, road width."""
    return Camera(
        horizon=int(h * rng.uniform(0.36, 0.48)),
        vanish_x=int(w * rng.uniform(0.42, 0.58)),
        road_half=int(w * rng.uniform(0.28, 0.42)),
    )


def road_x(cam: Camera, h: int, y: float, offset: float) -> float:
    """Column of a ground line at lateral ``offset`` (−1 = left road edge, +1 = right edge) in row ``y``."""
    return cam.vanish_x + offset * cam.road_half * depth_scale(cam, h, y)


def depth_scale(cam: Camera, h: int, y: float) -> float:
    """Apparent size of a ground object standing at row ``y`` relative to one at the bottom row (0 at the horizon)."""
    return max(y - cam.horizon, 0.0) / max(h - cam.horizon, 1)


def row_at_depth(cam: Camera, h: int, depth: float) -> float:
    """Image row of the ground at ``depth`` in [0, 1] (0 = horizon, 1 = bottom row)."""
    return cam.horizon + depth * (h - cam.horizon)


def blur(mask: npt.NDArray[np.float32], sigma: float) -> FloatImage:
    """Gaussian blur of a float32 map (``sigma`` in pixels)."""
    return np.asarray(cv2.GaussianBlur(mask, (0, 0), sigma), np.float32)


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> FloatImage:
    """(h, w) float32 smooth random field, about unit variance, features about ``cell`` pixels across."""
    gh, gw = int(h / max(cell, 1.0)) + 3, int(w / max(cell, 1.0)) + 3
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    out = cv2.resize(grid, (w + 2 * int(cell), h + 2 * int(cell)), interpolation=cv2.INTER_CUBIC)
    c = int(cell)
    return np.ascontiguousarray(out[c : c + h, c : c + w])


def fractal_noise(rng: np.random.Generator, h: int, w: int, cell: float, octaves: int = 4,
                  persistence: float = 0.55) -> FloatImage:  # fmt: skip
    """(h, w) float32 sum of :func:`smooth_noise` octaves (cell halves, amplitude × ``persistence``), unit std."""
    total = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        total += amp * smooth_noise(rng, h, w, cell)
        cell, amp = max(cell / 2, 1.0), amp * persistence
    std = float(total.std())
    return total / std if std > 0 else total


def finish(canvas: Canvas, grain: float = 5.0) -> npt.NDArray[np.uint8]:
    """Apply the lighting, a vignette and sensor noise; returns the (H, W, 3) uint8 RGB frame."""
    light = canvas.light
    img = canvas.image * np.asarray(light.tint, np.float32) * light.brightness
    if light.desaturate > 0:
        grey = img.mean(axis=2, keepdims=True)
        img += (grey - img) * light.desaturate
    vignette = np.linspace(1.06, 0.94, canvas.h, dtype=np.float32)[:, None, None]
    noise = canvas.rng.normal(0.0, grain, (canvas.h // 2 + 1, canvas.w // 2 + 1, 3)).astype(np.float32)
    noise = np.asarray(cv2.resize(noise, (canvas.w, canvas.h), interpolation=cv2.INTER_LINEAR), np.float32)
    out: npt.NDArray[np.uint8] = np.clip(img * vignette + noise, 0, 255).astype(np.uint8)
    return out
