"""The in-distribution street: sky, skyline, vegetation, terrain, sidewalks, asphalt, lane marks, poles with lights
and signs, fences, trees, and traffic (vehicles on the road, people and riders on the sidewalks)."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .canvas import (
    BICYCLE,
    BUILDING,
    BUS,
    CAR,
    FENCE,
    LIGHT,
    MOTORCYCLE,
    PERSON,
    POLE,
    RIDER,
    ROAD,
    SIDEWALK,
    SIGN,
    SKY,
    TERRAIN,
    TRAIN,
    TRUCK,
    VEGETATION,
    WALL,
    Camera,
    Canvas,
    Color,
    blur,
    depth_scale,
    fractal_noise,
    road_x,
    shade,
    smooth_noise,
)  # fmt: skip

# Base colours (RGB) of the in-distribution world: muted, natural hues.
BASE: dict[int, Color] = {
    ROAD: (88, 86, 92), SIDEWALK: (150, 142, 132), BUILDING: (128, 104, 92), WALL: (160, 150, 136),
    FENCE: (112, 100, 78), POLE: (82, 82, 86), LIGHT: (40, 42, 44), SIGN: (196, 176, 52), VEGETATION: (62, 118, 52),
    TERRAIN: (132, 146, 84), SKY: (142, 182, 228), PERSON: (150, 96, 82), RIDER: (110, 70, 120), CAR: (70, 80, 120),
    TRUCK: (150, 150, 160), BUS: (190, 120, 60), TRAIN: (120, 130, 110), MOTORCYCLE: (60, 60, 70),
    BICYCLE: (100, 130, 150),
}  # fmt: skip
#: Paint colours of cars (white, silver, grey, black, dark blue, dark red, beige, dark green).
CLOTHES: tuple[Color, ...] = ((40, 45, 60), (180, 40, 40), (220, 220, 215), (60, 90, 60), (120, 100, 80), (30, 30, 30))
CAR_PAINTS: tuple[Color, ...] = (
    (225, 225, 222), (175, 178, 182), (110, 112, 116), (32, 33, 36), (40, 52, 92), (120, 30, 32), (190, 175, 150),
    (40, 70, 52),
)  # fmt: skip
TRUCK_PAINTS: tuple[Color, ...] = ((215, 215, 210), (150, 152, 158), (60, 80, 120), (120, 40, 36))
BUS_PAINTS: tuple[Color, ...] = ((225, 150, 40), (215, 200, 60), (200, 50, 45), (230, 230, 225), (60, 120, 170))
SIGN_FACES: tuple[Color, ...] = ((200, 40, 40), (235, 235, 235), (40, 80, 170), (230, 190, 40))

#: A deferred painting step of a thing standing on the ground: (base row, painter). Sorted far to near.
Item = tuple[float, Callable[[], None]]


def color(canvas: Canvas, cls: int, jitter: float = 18.0) -> Color:
    """The base colour of class ``cls`` with colour noise."""
    return canvas.jitter(BASE[cls], jitter)


def sky(canvas: Canvas, cam: Camera) -> None:
    """Sky with a vertical gradient and, when overcast, soft clouds."""
    w, hz = canvas.w, cam.horizon
    top = np.asarray(color(canvas, SKY, 10), np.float32)
    if canvas.light.name == "dusk":
        top = top * np.array([0.8, 0.75, 0.95], np.float32)
        bottom = np.array([235, 170, 120], np.float32)
    elif canvas.light.name == "overcast":
        top = bottom = np.array([175, 178, 185], np.float32) + canvas.rng.normal(0, 8, 3).astype(np.float32)
    else:
        bottom = np.clip(top * 1.15 + 20, 0, 255)
    rows = max(hz + 2, 1)
    t = np.linspace(0, 1, rows, dtype=np.float32)[:, None, None]
    band = top + (bottom - top) * t
    clouds = smooth_noise(canvas.rng, rows, w, max(w / 10, 4))[..., None]
    amount = 18.0 if canvas.light.name == "overcast" else 8.0
    canvas.image[:rows] = np.clip(band + amount * clouds, 0, 255)
    canvas.labels[:rows] = SKY


def skyline(canvas: Canvas, cam: Camera) -> None:
    """Buildings (with windows), walls, vegetation and fences along the horizon on both sides."""
    h, w, rng, hz = canvas.h, canvas.w, canvas.rng, cam.horizon
    for side in (-1, 1):
        x = cam.vanish_x + side * rng.uniform(0.03, 0.08) * w
        while 0 <= x < w if side > 0 else x > 0:
            bw = rng.uniform(0.05, 0.16) * w
            top = hz - rng.uniform(0.08, 0.32) * h
            cls = int(rng.choice([BUILDING, BUILDING, BUILDING, WALL, VEGETATION, FENCE]))
            x1 = x + side * bw
            if cls == VEGETATION:  # a row of tree crowns
                for cx in np.arange(min(x, x1), max(x, x1), max(bw / 3, 2)):
                    r = rng.uniform(0.5, 0.9) * bw / 3 + 2
                    canvas.ellipse(cx, hz - r * 0.8, r, r, VEGETATION, color(canvas, VEGETATION))
                canvas.rect(min(x, x1), hz - 0.3 * (hz - top), max(x, x1), hz + 2, VEGETATION,
                            color(canvas, VEGETATION))  # fmt: skip
            else:
                canvas.rect(min(x, x1), top, max(x, x1), hz + 2, cls, color(canvas, cls))
            if cls == BUILDING:  # windows: darker rectangles, same label
                dark = shade(color(canvas, BUILDING, 5), 0.55)
                for wy in np.arange(top + 6, hz - 6, max(h * 0.05, 6)):
                    for wx in np.arange(min(x, x1) + 4, max(x, x1) - 6, max(w * 0.025, 6)):
                        canvas.rect(wx, wy, wx + max(w * 0.01, 2), wy + max(h * 0.02, 2), BUILDING, dark)
            x = x1


def ground(canvas: Canvas, cam: Camera, lane_phase: float = 0.0) -> None:
    """Terrain, sidewalks, textured asphalt with wheel tracks, and the dashed centre line (labelled road)."""
    h, w, rng, hz = canvas.h, canvas.w, canvas.rng, cam.horizon
    canvas.rect(0, hz, w, h, TERRAIN, color(canvas, TERRAIN))
    for side in (-1, 1):
        walk = rng.uniform(1.25, 1.7)
        canvas.poly([(cam.vanish_x, hz), (road_x(cam, h, h, side * walk), h), (road_x(cam, h, h, side), h)],
                    SIDEWALK, color(canvas, SIDEWALK))  # fmt: skip
    canvas.poly(
        [(cam.vanish_x, hz), (road_x(cam, h, h, -1), h), (road_x(cam, h, h, 1), h)], ROAD, color(canvas, ROAD, 6)
    )
    # asphalt grain and darker wheel tracks (road texture the network must learn as road)
    ground_rows = slice(hz, h)
    grain = fractal_noise(rng, h - hz, w, max(w / 60, 2), octaves=3)
    canvas.image[ground_rows] *= (1.0 + 0.05 * grain)[..., None]
    tracks = np.zeros((h, w), np.float32)
    for offset in (-0.55, -0.25, 0.25, 0.55):
        pts = [(road_x(cam, h, hz, offset), hz), (road_x(cam, h, h, offset - 0.06), h),
               (road_x(cam, h, h, offset + 0.06), h)]  # fmt: skip
        cv2.fillPoly(tracks, [np.round(pts).astype(np.int32).reshape(-1, 1, 2)], 1.0)
    tracks *= (canvas.labels == ROAD).astype(np.float32)
    canvas.darken(blur(tracks, max(w / 200, 1.0)), float(rng.uniform(0.0, 0.12)))
    mark = shade(color(canvas, ROAD, 4), 2.2)
    for k in range(12):  # dashed centre line, dashes shrink towards the horizon
        t0 = ((k + lane_phase) / 12.0) ** 2
        t1 = ((k + lane_phase + 0.45) / 12.0) ** 2
        y0, y1 = hz + t0 * (h - hz), min(hz + t1 * (h - hz), h)
        if y1 <= y0 + 1:
            continue
        wd0, wd1 = 0.012 * depth_scale(cam, h, y0) * w, 0.012 * depth_scale(cam, h, y1) * w
        canvas.poly([(road_x(cam, h, y0, 0) - wd0, y0), (road_x(cam, h, y0, 0) + wd0, y0),
                     (road_x(cam, h, y1, 0) + wd1, y1), (road_x(cam, h, y1, 0) - wd1, y1)], ROAD, mark)  # fmt: skip


def roadside(canvas: Canvas, cam: Camera) -> None:
    """Poles (some with a traffic light or a sign), trees and fence segments on the sidewalks."""
    h, w, rng, hz = canvas.h, canvas.w, canvas.rng, cam.horizon
    things = []
    for _ in range(rng.integers(2, 7)):
        things.append((rng.uniform(hz + 0.1 * (h - hz), h * 0.98), int(rng.choice([0, 0, 1, 2]))))
    for y, kind in sorted(things):
        s = depth_scale(cam, h, y)
        x = road_x(cam, h, y, float(rng.choice([-1.15, 1.15])) * rng.uniform(1.0, 1.2))
        if kind == 0:  # pole with a light or a sign
            top = y - 0.55 * h * s
            canvas.rect(x - 0.004 * w * s - 1, top, x + 0.004 * w * s + 1, y, POLE, color(canvas, POLE))
            extra = rng.integers(0, 3)
            if extra == 1:
                canvas.rect(x - 0.012 * w * s, top - 0.09 * h * s, x + 0.012 * w * s, top, LIGHT, color(canvas, LIGHT))
                lamp = ((230, 40, 30), (240, 200, 40), (40, 220, 90))[rng.integers(0, 3)]
                canvas.ellipse(x, top - 0.06 * h * s, 0.006 * w * s + 1, 0.006 * w * s + 1, LIGHT, lamp)
            elif extra == 2:
                face = canvas.jitter(SIGN_FACES[rng.integers(0, len(SIGN_FACES))], 10)
                r = 0.02 * w * s + 1
                if rng.random() < 0.5:
                    canvas.ellipse(x, top, r, r, SIGN, face)
                else:
                    canvas.poly([(x - r, top + r * 0.8), (x + r, top + r * 0.8), (x, top - r)], SIGN, face)
        elif kind == 1:  # tree: trunk and crown, both vegetation in Cityscapes
            crown = rng.uniform(0.05, 0.1) * w * s + 2
            trunk_top = y - 0.35 * h * s
            canvas.rect(x - 0.006 * w * s - 1, trunk_top, x + 0.006 * w * s + 1, y, VEGETATION, (70, 55, 40))
            for _ in range(4):
                canvas.ellipse(x + rng.uniform(-0.5, 0.5) * crown, trunk_top - rng.uniform(0.2, 0.9) * crown,
                               crown * rng.uniform(0.6, 1.0), crown * rng.uniform(0.5, 0.9), VEGETATION,
                               color(canvas, VEGETATION))  # fmt: skip
        else:  # fence segment along the sidewalk
            length = rng.uniform(0.08, 0.2) * w * s + 3
            height = 0.1 * h * s + 2
            canvas.rect(x - length / 2, y - height, x + length / 2, y, FENCE, color(canvas, FENCE))


def traffic_items(canvas: Canvas, cam: Camera, vehicles: tuple[int, int] = (1, 5)) -> list[Item]:
    """``vehicles`` (range) on the road and people / riders on the sidewalks, as deferred painters keyed by base
    row."""
    h, rng, hz = canvas.h, canvas.rng, cam.horizon
    items: list[Item] = []
    for _ in range(rng.integers(vehicles[0], vehicles[1] + 1)):
        cls = int(rng.choice([CAR, CAR, CAR, TRUCK, BUS, MOTORCYCLE, BICYCLE, TRAIN],
                             p=[0.3, 0.2, 0.15, 0.1, 0.08, 0.07, 0.07, 0.03]))  # fmt: skip
        y = rng.uniform(hz + 0.08 * (h - hz), h * 0.97)
        items.append((y, _vehicle(canvas, cam, y, cls, float(rng.uniform(-0.7, 0.7)))))
    for _ in range(rng.integers(0, 5)):
        y = rng.uniform(hz + 0.1 * (h - hz), h * 1.02)
        lateral = float(rng.choice([-1.3, 1.3]) + rng.uniform(-0.1, 0.1))
        items.append((y, _person(canvas, cam, y, lateral)))
    return items


def _vehicle(canvas: Canvas, cam: Camera, y: float, cls: int, lateral: float) -> Callable[[], None]:
    """Rear views, each class with its own silhouette: a car (low, rear window, lights), a truck (tall windowless box
    with a door seam, cab roof above), a bus (tall, large rear window, route display), a train (long, windows)."""
    h, w, rng = canvas.h, canvas.w, canvas.rng
    palette = {CAR: CAR_PAINTS, TRUCK: TRUCK_PAINTS, BUS: BUS_PAINTS}.get(cls, (BASE[cls],))
    paint = canvas.jitter(palette[int(rng.integers(0, len(palette)))], 10)
    glass = float(rng.uniform(0.3, 0.45))

    def draw() -> None:
        s = depth_scale(cam, h, y)
        x = road_x(cam, h, y, lateral)
        if cls in (CAR, TRUCK, BUS, TRAIN):
            bw = {CAR: 0.32, TRUCK: 0.44, BUS: 0.48, TRAIN: 0.62}[cls] * w * s
            bh = {CAR: 0.15, TRUCK: 0.34, BUS: 0.38, TRAIN: 0.34}[cls] * h * s
            tire = (22.0, 22.0, 24.0)
            for wx in (x - bw * 0.36, x + bw * 0.36):
                canvas.rect(wx - bw * 0.07, y - bh * 0.12, wx + bw * 0.07, y, cls, tire)
            body_bottom = y - bh * 0.08
            if cls == CAR:
                canvas.rect(x - bw / 2, body_bottom - bh * 0.6, x + bw / 2, body_bottom, cls, paint)
                canvas.poly([(x - bw * 0.42, body_bottom - bh * 0.6), (x + bw * 0.42, body_bottom - bh * 0.6),
                             (x + bw * 0.32, y - bh), (x - bw * 0.32, y - bh)], cls, paint)  # fmt: skip
                canvas.rect(
                    x - bw * 0.3, y - bh * 0.95, x + bw * 0.3, body_bottom - bh * 0.65, cls, shade(paint, glass)
                )
                for lx in (x - bw * 0.43, x + bw * 0.43):
                    canvas.rect(lx - bw * 0.05, body_bottom - bh * 0.5, lx + bw * 0.05, body_bottom - bh * 0.36, cls,
                                (170, 30, 30))  # fmt: skip
            elif cls == TRUCK:
                canvas.rect(x - bw * 0.35, y - bh * 1.08, x + bw * 0.35, y - bh * 0.9, cls, shade(paint, 0.8))  # cab
                canvas.rect(x - bw / 2, y - bh * 0.95, x + bw / 2, body_bottom, cls, paint)
                canvas.rect(x - bw * 0.01 - 1, y - bh * 0.9, x + bw * 0.01 + 1, body_bottom, cls, shade(paint, 0.6))
                canvas.rect(x - bw / 2, body_bottom - bh * 0.04, x + bw / 2, body_bottom, cls, (40, 40, 42))
            elif cls == BUS:
                canvas.rect(x - bw / 2, y - bh, x + bw / 2, body_bottom, cls, paint)
                canvas.rect(x - bw * 0.42, y - bh * 0.85, x + bw * 0.42, y - bh * 0.45, cls, shade(paint, glass))
                canvas.rect(x - bw * 0.3, y - bh * 0.97, x + bw * 0.3, y - bh * 0.88, cls, (30, 30, 30))
                canvas.rect(x - bw * 0.2, y - bh * 0.955, x + bw * 0.1, y - bh * 0.9, cls, (230, 150, 40))
            else:
                canvas.rect(x - bw / 2, y - bh, x + bw / 2, body_bottom, cls, paint)
                for k in range(4):
                    wx = x - bw / 2 + (k + 0.2) * bw / 4
                    canvas.rect(wx, y - bh * 0.8, wx + bw * 0.15, y - bh * 0.5, cls, shade(paint, glass))
        else:
            r = 0.05 * w * s + 1
            canvas.ellipse(x - r, y - r, r, r, cls, (30, 30, 32))
            canvas.ellipse(x + r, y - r, r, r, cls, (30, 30, 32))
            canvas.rect(x - r, y - 1.6 * r, x + r, y - 1.1 * r, cls, paint)
            canvas.rect(x - r * 0.3, y - 4.2 * r, x + r * 0.3, y - 1.4 * r, RIDER, color(canvas, RIDER))
            canvas.ellipse(x, y - 4.6 * r, r * 0.45, r * 0.5, RIDER, (210, 210, 215))  # helmet

    return draw


def _person(canvas: Canvas, cam: Camera, y: float, lateral: float) -> Callable[[], None]:
    """A pedestrian: legs, torso in clothing colours, arms, head (riders only ever sit on bikes)."""
    h, rng = canvas.h, canvas.rng
    shirt = canvas.jitter(CLOTHES[int(rng.integers(0, len(CLOTHES)))], 15)
    trousers = canvas.jitter(CLOTHES[int(rng.integers(0, len(CLOTHES)))], 10)
    skin = color(canvas, PERSON, 10)

    def draw() -> None:
        s = depth_scale(cam, h, y)
        x = road_x(cam, h, y, lateral)
        ph = 0.34 * h * s + 3
        canvas.rect(x - ph * 0.09, y - ph * 0.45, x - ph * 0.01, y, PERSON, trousers)
        canvas.rect(x + ph * 0.01, y - ph * 0.45, x + ph * 0.09, y, PERSON, trousers)
        canvas.rect(x - ph * 0.12, y - ph * 0.82, x + ph * 0.12, y - ph * 0.43, PERSON, shirt)
        canvas.ellipse(x, y - ph * 0.9, ph * 0.08, ph * 0.09, PERSON, skin)

    return draw


def paint_items(items: list[Item]) -> None:
    """Paint deferred items far to near (nearer ones cover farther ones)."""
    for _, draw in sorted(items, key=lambda item: item[0]):
        draw()
