"""Mapping between a camera frame and the fixed metric resolution of a bundle.

Score, OoD mask, components, their 75 metrics, the meta classifier and the brake hint all run at the bundle's
*metric resolution* (h, w), whatever the camera size, so that the meta classifier sees the same features for the
same scene (README, "The per-frame pipeline"). :class:`FrameMapping` carries results between the two grids:

* frame → metric (ground truth): nearest neighbour, sampling each metric pixel at its centre;
* metric → frame (component labels, kept mask): nearest neighbour, the inverse rule, so every frame pixel takes the
  label of the metric pixel whose area it lies in;
* areas, bounding boxes and centroids of components in frame pixels, computed exactly from the metric grid with
  the per-row and per-column pixel counts of that mapping (no full-frame pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from scipy import ndimage


def nearest_indices(src: int, dst: int) -> npt.NDArray[np.intp]:
    """(dst,) source index of each destination pixel for a nearest-neighbour resize of ``src`` → ``dst`` pixels
    (pixel-centre rule: destination i samples source ⌊(i + ½) · src / dst⌋, in exact integer arithmetic)."""
    i = np.arange(dst, dtype=np.int64)
    return np.minimum(((2 * i + 1) * src) // (2 * dst), src - 1).astype(np.intp)


@dataclass(frozen=True)
class FrameMapping:
    """Nearest-neighbour correspondence of a (H, W) frame and the (h, w) metric grid.

    Attributes:
        frame_size: (H, W) of the camera frame, pixels.
        metric_size: (h, w) of the metric grid, pixels.
        rows: (H,) metric row of each frame row. cols: (W,) metric column of each frame column.
        row_counts: (h,) frame rows mapped to each metric row. col_counts: (w,) likewise for columns.
    """

    frame_size: tuple[int, int]
    metric_size: tuple[int, int]
    rows: npt.NDArray[np.intp]
    cols: npt.NDArray[np.intp]
    row_counts: npt.NDArray[np.int64]
    col_counts: npt.NDArray[np.int64]

    @classmethod
    def create(cls, frame_size: tuple[int, int], metric_size: tuple[int, int]) -> FrameMapping:
        """The mapping between a frame of ``frame_size`` and a metric grid of ``metric_size`` (both (height, width))."""
        (fh, fw), (mh, mw) = frame_size, metric_size
        rows, cols = nearest_indices(mh, fh), nearest_indices(mw, fw)
        return cls(
            (fh, fw), (mh, mw), rows, cols,
            np.bincount(rows, minlength=mh).astype(np.int64), np.bincount(cols, minlength=mw).astype(np.int64),
        )  # fmt: skip

    @property
    def identity(self) -> bool:
        """True when the frame is at the metric resolution (nothing to map)."""
        return self.frame_size == self.metric_size

    def pixel_area(self) -> npt.NDArray[np.float64]:
        """(h, w) float64 number of frame pixels each metric pixel stands for (may be 0 when the frame is smaller)."""
        return np.outer(self.row_counts, self.col_counts).astype(np.float64)

    def to_metric(self, frame_map: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        """A (H, W) label map (ground truth, region) sampled onto the (h, w) metric grid, nearest neighbour."""
        if self.identity:
            return frame_map
        mh, mw = self.metric_size
        fh, fw = self.frame_size
        return frame_map[nearest_indices(fh, mh)[:, None], nearest_indices(fw, mw)[None, :]]

    def to_frame_labels(self, labels: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        """(h, w) component labels → (H, W) int32 labels at the frame's resolution (nearest neighbour)."""
        if self.identity:
            return labels
        return np.ascontiguousarray(labels[self.rows[:, None], self.cols[None, :]])

    def to_frame_score(self, score: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(h, w) float32 score → (H, W) float32, bilinear with half-pixel centres (values stay in [0, 1])."""
        if self.identity:
            return score
        fh, fw = self.frame_size
        out = cv2.resize(np.ascontiguousarray(score), (fw, fh), interpolation=cv2.INTER_LINEAR)
        return np.asarray(out, np.float32)

    def component_geometry(
        self, labels: npt.NDArray[np.int32], n: int
    ) -> tuple[list[tuple[int, int, int, int]], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Bounding boxes, areas and centroids of components 1..n of (h, w) ``labels``, in frame pixels.

        Returns:
            bboxes: n × (x_min, y_min, x_max, y_max), inclusive frame pixel coordinates (a component that maps to
                no frame pixel, possible only when the frame is smaller than the grid, gets (−1, −1, −1, −1));
            areas: (n,) int64 frame pixels of each component (0 for such a component);
            centroids: (n, 2) float64 mean (x, y) frame coordinates ((−1, −1) for such a component).
        """
        if n == 0:
            return [], np.zeros(0, np.int64), np.zeros((0, 2))
        flat = labels.ravel()
        area_w = self.pixel_area().ravel()
        # frame-coordinate sums per metric row / column: Σ of the frame rows (cols) mapped to it
        fh, fw = self.frame_size
        row_sum = np.bincount(self.rows, weights=np.arange(fh, dtype=np.float64), minlength=self.metric_size[0])
        col_sum = np.bincount(self.cols, weights=np.arange(fw, dtype=np.float64), minlength=self.metric_size[1])
        y_w = np.outer(row_sum, self.col_counts).ravel()
        x_w = np.outer(self.row_counts, col_sum).ravel()
        areas = np.bincount(flat, weights=area_w, minlength=n + 1)[1 : n + 1]
        ys = np.bincount(flat, weights=y_w, minlength=n + 1)[1 : n + 1]
        xs = np.bincount(flat, weights=x_w, minlength=n + 1)[1 : n + 1]
        visible = areas > 0
        safe = np.where(visible, areas, 1.0)
        centroids = np.where(visible[:, None], np.stack([xs / safe, ys / safe], axis=1), -1.0)
        if not (self.row_counts.all() and self.col_counts.all()):
            labels = np.where(self.pixel_area() > 0, labels, 0)  # grid pixels no frame pixel maps to: not in a box
        bboxes = []
        for sl in ndimage.find_objects(labels, max_label=n):
            if sl is None:
                bboxes.append((-1, -1, -1, -1))
                continue
            r, c = sl
            y0, y1 = int(np.searchsorted(self.rows, r.start, "left")), int(np.searchsorted(self.rows, r.stop, "left"))
            x0, x1 = int(np.searchsorted(self.cols, c.start, "left")), int(np.searchsorted(self.cols, c.stop, "left"))
            bboxes.append((x0, y0, x1 - 1, y1 - 1) if y1 > y0 and x1 > x0 else (-1, -1, -1, -1))
        return bboxes, np.rint(areas).astype(np.int64), centroids
