"""Label metrics of ``meta-ood replay``: the node's outputs scored against a label topic, matched by header stamp.

:class:`LabelMetrics` pairs each processed frame with the label message of the same stamp (whichever comes first
waits, a bounded number of them) and accumulates pixel metrics (AUROC, FPR95, AUPRC; scores in 1e-5 bins: fixed
memory on long bags), SMIYC component metrics (sIoU / PPV / F1) and the meta classifier's effect on the published
components (true detections and false positives before and after it). Thread-safe: in ``--realtime`` replay the
labels arrive on the reading thread and the frames on the worker.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..evaluation import PixelMetricsAccumulator
from ..pipeline import ComponentInfo, FrameResult
from ..smiyc import SegmentMetricsAccumulator, frame_segments
from . import conversions as cv
from .processor import ProcessedFrame

LOG = logging.getLogger(__name__)

SCORE_QUANTUM = 1e-5  # bin width of the pixel-metric accumulator
MIN_WAITING = 64  # frames / labels kept waiting for their partner, at least


@dataclass(frozen=True)
class _Scored:
    """What label metrics need of one processed frame: (H, W) score and kept mask, component ids, components."""

    score: npt.NDArray[np.float32]
    mask: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.integer[Any]]
    components: tuple[ComponentInfo, ...]


class LabelMetrics:
    """Pixel and component metrics over frames whose stamp has a label message.

    Args:
        topic: the label topic (for the report). min_pred_size, min_gt_size: SMIYC component size limits, pixels.
        reorder_window: the replay's reorder window; frames and labels wait for their partner up to
            ``max(4 × reorder_window, MIN_WAITING)`` of them, the oldest beyond that are counted unmatched.
    """

    def __init__(self, topic: str | None, min_pred_size: int, min_gt_size: int, reorder_window: int) -> None:
        self.topic = topic
        self.min_pred_size, self.min_gt_size = min_pred_size, min_gt_size
        self.pixel = PixelMetricsAccumulator(quantum=SCORE_QUANTUM)  # fixed memory however long the bag
        self.segments = SegmentMetricsAccumulator()
        self.labels: dict[int, npt.NDArray[np.uint8]] = {}
        self.pending: dict[int, _Scored] = {}
        self.counts = {"components": 0, "true_detections": 0, "true_detections_lost": 0,
                       "false_positives_before": 0, "false_positives_after": 0}  # fmt: skip
        self.unmatched = {"frames": 0, "labels": 0}
        self.keep = max(4 * reorder_window, MIN_WAITING)  # entries waiting for their partner, bounded
        self.frames = 0
        self.bad_labels = 0
        self._lock = threading.Lock()

    def add_bad_label(self) -> None:
        """Count a label message that could not be read."""
        with self._lock:
            self.bad_labels += 1

    def add_label(self, msg: Any) -> None:
        """One label message (mono8 0 / 1 / 255 with a header)."""
        with self._lock:
            self._add_label(msg)

    def _add_label(self, msg: Any) -> None:
        try:
            stamp, labels = cv.stamp_ns(msg.header), cv.image_to_labels(msg)
        except (ValueError, AttributeError, TypeError) as err:
            self.bad_labels += 1
            LOG.warning("replay: skipping a label message: %s", err)
            return
        if stamp in self.pending:
            self._score(self.pending.pop(stamp), labels)
        else:
            self.labels[stamp] = labels
            self._bound(self.labels, "labels")

    def add_frame(self, frame: ProcessedFrame) -> None:
        """One processed frame (frames without a result or a stamp are ignored)."""
        if frame.result is None or frame.stamp_ns is None:
            return
        with self._lock:
            self._add_frame(frame.stamp_ns, frame.result)

    def _add_frame(self, stamp: int, result: FrameResult) -> None:
        labels = self.labels.pop(stamp, None)
        # component ids as uint16 when they fit: a frame waiting for its label costs 5 bytes per pixel, not 9
        ids = result.labels.astype(np.uint16) if len(result.components) < 2**16 else result.labels
        scored = _Scored(result.score, result.mask, ids, result.components)
        if labels is None:
            self.pending[stamp] = scored
            self._bound(self.pending, "frames")
        else:
            self._score(scored, labels)

    def _bound(self, waiting: dict[int, Any], what: str) -> None:
        """Forget the oldest entries beyond ``keep`` (sparse labels must not hold every frame in memory)."""
        while len(waiting) > self.keep:
            del waiting[min(waiting)]
            self.unmatched[what] += 1

    def _score(self, result: _Scored, labels: npt.NDArray[np.uint8]) -> None:
        if labels.shape != result.score.shape:
            self.bad_labels += 1
            LOG.warning("replay: label image %s does not match the frame %s; skipped", labels.shape,
                        result.score.shape)  # fmt: skip
            return
        self.pixel.update(result.score, labels)
        self.segments.update(
            frame_segments(result.mask.astype(bool), labels, min_pred_size=self.min_pred_size,
                           min_gt_size=self.min_gt_size)
        )  # fmt: skip
        # components as the node published them, inside the labelled region (as evaluate counts them): true when
        # they touch a labelled hazard pixel
        hits = set(np.unique(result.labels[labels == 1]).tolist()) - {0}
        labelled = set(np.unique(result.labels[labels != 255]).tolist()) - {0}
        c = self.counts
        for comp in result.components:
            if comp.id not in labelled:
                continue
            c["components"] += 1
            if comp.id in hits:
                c["true_detections"] += 1
                c["true_detections_lost"] += not comp.kept
            else:
                c["false_positives_before"] += 1
                c["false_positives_after"] += comp.kept
        self.frames += 1

    def report(self) -> dict[str, Any]:
        """The summary's ``labels`` entry: frames scored, unmatched frames and labels, pixel and component metrics."""
        with self._lock:
            return self._report()

    def _report(self) -> dict[str, Any]:
        try:
            pixel: dict[str, Any] = self.pixel.compute("exact") if self.frames else {}
        except ValueError as err:  # e.g. a drive without hazards (counting false alarms): no ROC to speak of
            pixel = {"auroc": None, "fpr95": None, "auprc": None, "note": str(err)}
        seg = self.segments.compute() if self.frames else {}
        return {
            "topic": self.topic, "frames": self.frames,
            "frames_without_label": len(self.pending) + self.unmatched["frames"],
            "labels_without_frame": len(self.labels) + self.unmatched["labels"],
            "bad_labels": self.bad_labels, "pixel": pixel,
            "components": {k: seg[k] for k in ("sIoU_gt", "PPV", "mean_F1", "F1")} if seg else {},
            "meta_classifier": dict(self.counts),
        }  # fmt: skip
