"""Annotated frames for videos and reports: anomaly mask overlay, component boxes, brake state banner."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

KEPT = (0, 0, 255)  # BGR red: kept anomalies
REJECTED = (160, 160, 160)  # grey: removed by the meta classifier
CORRIDOR = (0, 200, 255)
UNAVAILABLE = (0, 165, 255)  # orange banner: perception not live
WARN = (0, 190, 230)  # amber banner: a hazard seen, not yet worth braking (risk below brake.min_risk)


def annotate(
    image: npt.NDArray[np.uint8], result: Any, corridor: npt.NDArray[np.bool_] | None = None, label: str = ""
) -> npt.NDArray[np.uint8]:
    """(H, W, 3) RGB frame + a :class:`~meta_ood_perception.pipeline.FrameResult` → (H, W + 0, 3) BGR annotated frame.

    Kept components are tinted red with a red box and their 1 − P(false positive); components removed by the meta
    classifier get a thin grey box; the corridor outline is drawn when given; a banner shows the brake state (and
    that the frame is outside the bundle's domain when the domain monitor made the hint unavailable).
    """
    bgr = np.ascontiguousarray(image[..., ::-1]).copy()
    mask = result.mask.astype(bool)
    bgr[mask] = (0.45 * bgr[mask] + 0.55 * np.array(KEPT)).astype(np.uint8)
    if corridor is not None:
        contours, _ = cv2.findContours(corridor.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(bgr, contours, -1, CORRIDOR, 1)
    for c in result.components:
        x0, y0, x1, y1 = c.bbox
        if c.kept:
            cv2.rectangle(bgr, (x0, y0), (x1, y1), KEPT, 2)
            cv2.putText(bgr, f"{1 - c.p_false_positive:.2f}", (x0, max(y0 - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                        KEPT, 1, cv2.LINE_AA)  # fmt: skip
        elif c.area >= 20:
            cv2.rectangle(bgr, (x0, y0), (x1, y1), REJECTED, 1)
    hint = result.brake
    domain = getattr(result, "domain", None)
    if not hint.available:
        outside = domain is not None and not domain.in_domain
        text, color = "OUTSIDE THE BUNDLE'S DOMAIN: UNAVAILABLE" if outside else "PERCEPTION UNAVAILABLE", UNAVAILABLE
    elif hint.active:
        text, color = f"BRAKE  risk {hint.risk:.2f}", (0, 0, 220)
    elif hint.seen:  # a persistent hazard below brake.min_risk: seen, not yet worth braking
        text, color = f"WARN  risk {hint.risk:.2f}", WARN
    else:
        text, color = f"clear  risk {hint.risk:.2f}", (40, 140, 40)
    _banner(bgr, f"{text}  {label}".strip(), color)
    return bgr


def _banner(bgr: npt.NDArray[np.uint8], text: str, color: tuple[int, int, int]) -> None:
    """Draw the 18-pixel state banner across the top of ``bgr`` in place."""
    cv2.rectangle(bgr, (0, 0), (bgr.shape[1], 18), color, -1)
    cv2.putText(bgr, text[:120], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)


def unavailable(image: npt.NDArray[np.uint8], reason: str, label: str = "") -> npt.NDArray[np.uint8]:
    """(H, W, 3) RGB frame → BGR frame with the "perception unavailable" banner and the reason (no overlay)."""
    bgr = np.ascontiguousarray(image[..., ::-1]).copy()
    _banner(bgr, f"PERCEPTION UNAVAILABLE  {label}  {reason}".strip(), UNAVAILABLE)
    return bgr
