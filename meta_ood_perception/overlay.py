"""Annotated frames for videos and reports: anomaly mask overlay, component boxes, brake state banner, legend.

Every size (banner height, font scale, line thickness) is proportional to the frame height
(:func:`overlay_style`), so the text reads the same at 256×512 and at 1024×2048; text that would be wider than the
frame is scaled down to fit (and, below :data:`MIN_FONT_SCALE`, cut). A kept component's box is labelled
``hazard 0.93``: 0.93 = 1 − P(false positive), the meta classifier's confidence that the component is a true hazard;
the legend strip at the bottom says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

KEPT = (0, 0, 255)  # BGR red: kept anomalies
REJECTED = (160, 160, 160)  # grey: removed by the meta classifier
CORRIDOR = (0, 200, 255)
UNAVAILABLE = (0, 165, 255)  # orange banner: perception not live
WARN = (0, 190, 230)  # amber banner: a hazard seen, not yet worth braking (risk below brake.min_risk)
BRAKE = (0, 0, 220)
CLEAR = (40, 140, 40)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX

BANNER_FRACTION = 0.055  # banner height / frame height
MIN_BANNER_PX = 18  # the banner never gets thinner than this (small frames)
FONT_PER_BANNER_PX = 0.42 / 18  # banner font scale per banner pixel (0.42 at the smallest banner)
LABEL_FONT_RATIO = 0.8  # box labels and legend: this × the banner's font scale
MIN_FONT_SCALE = 0.3  # below this Hershey text is unreadable: text is cut instead of shrunk further
MIN_RECTANGLE_AREA = 20  # px: smaller removed components get no grey box
#: the legend strip, longest first; the first that fits the frame's width at :data:`MIN_FONT_SCALE` is drawn
LEGEND = (
    "red box: hazard c, c = 1 - P(false positive), the meta classifier's confidence; grey: removed by it",
    "hazard c: c = 1 - P(false positive); grey: removed",
    "c = 1 - P(false positive)",
)


@dataclass(frozen=True)
class OverlayStyle:
    """Drawing sizes for one frame size, in pixels unless said otherwise.

    Attributes:
        banner_px: height of the state banner at the top. font_scale: its text's Hershey font scale (unitless).
        thickness: its text's stroke width. label_scale, label_thickness: box labels and the legend.
        box_px: a kept component's box line. rejected_px: a removed component's box line. corridor_px: the brake
            corridor outline. pad_px: text margin.
    """

    banner_px: int
    font_scale: float
    thickness: int
    label_scale: float
    label_thickness: int
    box_px: int
    rejected_px: int
    corridor_px: int
    pad_px: int


def overlay_style(height: int) -> OverlayStyle:
    """The drawing sizes for a frame ``height`` pixels high: all proportional to it (see the module docstring)."""
    banner = max(MIN_BANNER_PX, round(BANNER_FRACTION * height))
    scale = banner * FONT_PER_BANNER_PX
    label = scale * LABEL_FONT_RATIO
    return OverlayStyle(
        banner_px=banner, font_scale=scale, thickness=_stroke(scale), label_scale=label,
        label_thickness=_stroke(label), box_px=max(2, round(height / 160)), rejected_px=max(1, round(height / 400)),
        corridor_px=max(1, round(height / 300)), pad_px=max(3, banner // 5),
    )  # fmt: skip


def _stroke(scale: float) -> int:
    """Stroke width, pixels, for a Hershey font scale: about 1.5 × the scale, at least 1."""
    return max(1, round(scale * 1.5))


def fit_text(text: str, scale: float, thickness: int, width: int) -> tuple[str, float]:
    """``text`` and a font scale ≤ ``scale`` at which it is at most ``width`` pixels wide: shrunk down to
    :data:`MIN_FONT_SCALE`, then cut (ending in ``...``). Returns ("", scale) when not even a character fits."""
    w1 = max(cv2.getTextSize(text, FONT, 1.0, thickness)[0][0], 1)
    if w1 * scale <= width:
        return text, scale
    fitted = width / w1
    while fitted >= MIN_FONT_SCALE and cv2.getTextSize(text, FONT, fitted, thickness)[0][0] > width:
        fitted *= 0.95  # strokes do not shrink with the scale: a little narrower than linear
    if fitted >= MIN_FONT_SCALE:
        return text, fitted
    scale = min(scale, MIN_FONT_SCALE)
    for end in range(len(text) - 1, 0, -1):
        cut = text[:end].rstrip() + "..."
        if cv2.getTextSize(cut, FONT, scale, thickness)[0][0] <= width:
            return cut, scale
    return "", scale


def box_label(component: Any) -> str:
    """A kept component's label: ``hazard 0.93``, 0.93 = 1 − P(false positive) (the meta classifier's confidence
    that it is a true hazard)."""
    return f"hazard {1 - component.p_false_positive:.2f}"


def banner_state(result: Any) -> tuple[str, tuple[int, int, int]]:
    """The banner's text and BGR colour for a frame's brake hint: BRAKE, WARN (a hazard seen, risk below
    ``brake.min_risk``), clear, or unavailable (naming the domain monitor when it made the hint unavailable)."""
    hint = result.brake
    domain = getattr(result, "domain", None)
    if not hint.available:
        outside = domain is not None and not domain.in_domain
        return ("OUTSIDE THE BUNDLE'S DOMAIN: UNAVAILABLE" if outside else "PERCEPTION UNAVAILABLE"), UNAVAILABLE
    if hint.active:
        return f"BRAKE  risk {hint.risk:.2f}", BRAKE
    if hint.seen:  # a persistent hazard below brake.min_risk: seen, not yet worth braking
        return f"WARN  risk {hint.risk:.2f}", WARN
    return f"clear  risk {hint.risk:.2f}", CLEAR


def annotate(
    image: npt.NDArray[np.uint8],
    result: Any,
    corridor: npt.NDArray[np.bool_] | None = None,
    label: str = "",
    legend: bool = True,
) -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB frame + a :class:`~meta_ood_perception.pipeline.FrameResult` → (H, W, 3) uint8 BGR
    annotated frame.

    Kept components are tinted red with a red box labelled ``hazard c`` (c = 1 − P(false positive)); components
    removed by the meta classifier get a thin grey box; the corridor outline is drawn when given; a banner shows the
    brake state (:func:`banner_state`) and ``label`` (the camera); with ``legend`` a strip at the bottom explains
    the boxes. Sizes follow :func:`overlay_style`.
    """
    bgr = image[..., ::-1].copy()  # one C-order copy
    style = overlay_style(bgr.shape[0])
    mask = result.mask.astype(bool)
    bgr[mask] = (0.45 * bgr[mask] + 0.55 * np.array(KEPT)).astype(np.uint8)
    if corridor is not None:
        contours, _ = cv2.findContours(corridor.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(bgr, contours, -1, CORRIDOR, style.corridor_px)
    for c in result.components:
        x0, y0, x1, y1 = c.bbox
        if c.kept:
            cv2.rectangle(bgr, (x0, y0), (x1, y1), KEPT, style.box_px)
        elif c.area >= MIN_RECTANGLE_AREA:
            cv2.rectangle(bgr, (x0, y0), (x1, y1), REJECTED, style.rejected_px)
    placed: list[tuple[int, int, int, int]] = []
    kept = [c for c in result.components if c.kept]
    for c in sorted(kept, key=lambda c: -c.bbox[1]):  # labels over every box, the lowest box first
        _box_label(bgr, c, style, placed)
    text, color = banner_state(result)
    banner(bgr, f"{text}  {label}".strip(), color, style)
    if legend:
        _legend(bgr, style)
    return bgr


def _box_label(
    bgr: npt.NDArray[np.uint8], component: Any, style: OverlayStyle, placed: list[tuple[int, int, int, int]]
) -> None:
    """``hazard c`` in white on a red tag above the box, moved up past the tags already ``placed`` (x0, y0, x1, y1;
    this tag is appended), or below the box when there is no room under the banner."""
    x0, y0, _, y1 = component.bbox
    text, scale = fit_text(box_label(component), style.label_scale, style.label_thickness, bgr.shape[1])
    if not text:
        return
    (w, h), base = cv2.getTextSize(text, FONT, scale, style.label_thickness)
    tag_w, tag_h = w + style.pad_px, h + base + style.pad_px
    left = min(max(x0, 0), max(bgr.shape[1] - tag_w, 0))
    top = y0 - tag_h
    while top >= style.banner_px and any(_overlap((left, top, left + tag_w, top + tag_h), r) for r in placed):
        top -= tag_h
    if top < style.banner_px:
        top = min(y1 + 1, max(bgr.shape[0] - tag_h, 0))
    placed.append((left, top, left + tag_w, top + tag_h))
    cv2.rectangle(bgr, (left, top), (left + tag_w, top + tag_h), KEPT, -1)
    cv2.putText(bgr, text, (left + style.pad_px // 2, top + h + style.pad_px // 2), FONT, scale, WHITE,
                style.label_thickness, cv2.LINE_AA)  # fmt: skip


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Two (x0, y0, x1, y1) rectangles intersect."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def banner(bgr: npt.NDArray[np.uint8], text: str, color: tuple[int, int, int], style: OverlayStyle) -> None:
    """Draw a banner ``style.banner_px`` high in ``color`` (BGR) across the top of ``bgr`` (H, W, 3) uint8, in
    place, with ``text`` in white (fitted to the width: :func:`fit_text`)."""
    bgr[: style.banner_px] = color
    text, scale = fit_text(text, style.font_scale, style.thickness, bgr.shape[1] - 2 * style.pad_px)
    (_, h), _ = cv2.getTextSize(text or " ", FONT, scale, style.thickness)
    cv2.putText(bgr, text, (style.pad_px, (style.banner_px + h) // 2), FONT, scale, WHITE, style.thickness,
                cv2.LINE_AA)  # fmt: skip


def _legend(bgr: npt.NDArray[np.uint8], style: OverlayStyle) -> None:
    """The legend strip at the bottom: the longest :data:`LEGEND` text that fits, on a darkened strip."""
    width = bgr.shape[1] - 2 * style.pad_px
    for text in LEGEND:
        fitted, scale = fit_text(text, style.label_scale, style.label_thickness, width)
        if fitted == text:
            break
    else:
        return
    (_, h), base = cv2.getTextSize(text, FONT, scale, style.label_thickness)
    top = bgr.shape[0] - h - base - style.pad_px
    if top <= style.banner_px:
        return
    bgr[top:] = bgr[top:] // 3
    cv2.putText(bgr, text, (style.pad_px, bgr.shape[0] - base - style.pad_px // 2), FONT, scale, WHITE,
                style.label_thickness, cv2.LINE_AA)  # fmt: skip


def unavailable(image: npt.NDArray[np.uint8], reason: str, label: str = "") -> npt.NDArray[np.uint8]:
    """(H, W, 3) uint8 RGB frame → (H, W, 3) uint8 BGR frame with the "perception unavailable" banner and the
    reason (no overlay)."""
    bgr = image[..., ::-1].copy()  # one C-order copy
    banner(bgr, f"PERCEPTION UNAVAILABLE  {label}  {reason}".strip(), UNAVAILABLE, overlay_style(bgr.shape[0]))
    return bgr
