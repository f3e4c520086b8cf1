"""Synthetic 19-class softmax frames with a chosen number of high-entropy blobs (benchmark and test input)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

#: Radius of a blob's OoD component (normalized entropy >= 0.7) over the blob's Gaussian radius, measured.
_MASK_RADIUS = 0.9
#: Minimum centre distance over the sum of the two Gaussian radii for blobs placed apart (``ood_fraction``).
_SEPARATION = 1.6
_PLACEMENT_TRIES = 200


def synthetic_probs(
    height: int,
    width: int,
    n_blobs: int,
    *,
    n_classes: int = 19,
    seed: int = 0,
    ood_fraction: float | None = None,
) -> npt.NDArray[np.float32]:
    """(C, H, W) float32 softmax probabilities: confident Voronoi class regions plus ``n_blobs`` uncertain blobs.

    Each blob is a region where the logits are damped towards zero, so its normalized entropy exceeds 0.7
    and it forms (about) one OoD component; blob radii are 0.4–2.5 % of the image height.

    With ``ood_fraction`` (0 < f < 0.3) the radii are scaled so that the blobs' OoD components cover about that
    fraction of the pixels (a busy frame), and blobs are placed apart so that each stays its own component
    (blobs that find no free place are dropped); measure the mask to know the exact fraction and count.
    """
    rng = np.random.default_rng(seed)
    h, w = max(8, height // 16), max(8, width // 16)
    seeds = rng.random((40, 2)) * (h, w)
    classes = rng.integers(0, n_classes, len(seeds))
    yy, xx = np.mgrid[0:h, 0:w]
    nearest = np.argmin((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2, axis=-1)
    logits = rng.normal(0.0, 0.3, (n_classes, h, w)).astype(np.float32)
    logits[classes[nearest], yy, xx] += 9.0
    full = np.stack([cv2.resize(plane, (width, height), interpolation=cv2.INTER_LINEAR) for plane in logits])
    damp = np.ones((height, width), np.float32)
    centres = rng.random((n_blobs, 2)) * (height, width)
    radii = height * (0.004 + 0.021 * rng.random(n_blobs))
    if ood_fraction is not None:
        area = math.pi * float(np.sum((_MASK_RADIUS * radii) ** 2))
        radii *= math.sqrt(ood_fraction * height * width / area)
        centres, radii = _placed_apart(rng, radii, height, width)
    for (cy, cx), r in zip(centres, radii, strict=True):
        y0, y1 = int(max(cy - 3 * r, 0)), int(min(cy + 3 * r + 1, height))
        x0, x1 = int(max(cx - 3 * r, 0)), int(min(cx + 3 * r + 1, width))
        gy, gx = np.mgrid[y0:y1, x0:x1]
        bump = np.exp(-((gy - cy) ** 2 + (gx - cx) ** 2) / (2 * r * r)).astype(np.float32)
        damp[y0:y1, x0:x1] *= 1.0 - 0.97 * bump
    full *= damp
    full -= full.max(axis=0, keepdims=True)
    np.exp(full, out=full)
    full /= full.sum(axis=0, keepdims=True)
    return np.ascontiguousarray(full, dtype=np.float32)


def _placed_apart(
    rng: np.random.Generator, radii: npt.NDArray[np.float64], height: int, width: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Centres (n, 2) (row, col) for the radii, largest first, at least ``_SEPARATION`` × (r_i + r_j) apart."""
    kept_c: list[tuple[float, float]] = []
    kept_r: list[float] = []
    for r in sorted(radii.tolist(), reverse=True):
        for _ in range(_PLACEMENT_TRIES):
            cy, cx = rng.random() * height, rng.random() * width
            gaps = (
                (cy - y) ** 2 + (cx - x) ** 2 - (_SEPARATION * (r + q)) ** 2
                for (y, x), q in zip(kept_c, kept_r, strict=True)
            )
            if all(gap >= 0 for gap in gaps):
                kept_c.append((cy, cx))
                kept_r.append(r)
                break
    return np.array(kept_c, dtype=np.float64).reshape(-1, 2), np.array(kept_r, dtype=np.float64)
