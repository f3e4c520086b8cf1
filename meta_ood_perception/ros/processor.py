"""One camera's message → output messages step, shared by the ROS node and ``meta-ood replay`` (no ROS imports).

:class:`CameraProcessor` decodes an input message, runs the :class:`~meta_ood_perception.pipeline.AnomalyPipeline`
and builds the output messages (mask, score, detections, brake hint), each carrying the input header. It never
raises for a bad frame: a frame that cannot be decoded or processed comes back with ``error`` set, a fail-safe
brake hint (``available=False``) and no other outputs. :class:`ProcessingStats` counts frames, rejections and drops
and keeps per-stage latencies for ``/diagnostics`` and the replay summary, and the frames the domain monitor put
outside the bundle's domain.

A rejection's kind comes from the error's type (:mod:`meta_ood_perception.errors`), never from its message: an
:class:`~meta_ood_perception.errors.InputError` (a bad frame; while decoding or encoding also an ``AttributeError``
/ ``TypeError`` of a malformed message object) is ``"input"``; a :class:`~meta_ood_perception.errors.FaultError`
(the backend failed, :class:`~meta_ood_perception.backends.BackendError`; non-finite or misshaped network output)
and any other exception are ``"fault"`` (the latter named by its type) and restart the pipeline's history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ..brake import BrakeHint
from ..errors import InputError, MetaOodError
from ..pipeline import STAGES, AnomalyPipeline, FrameResult
from ..reports import first_line
from ..stopwatch import TOTAL, Stopwatch
from . import conversions as cv
from .params import CameraTopics

LOG = logging.getLogger(__name__)

#: Latency stages reported per frame: decoding, the pipeline's stages, encoding of the outputs, and the total.
LATENCY_STAGES = ("decode", *STAGES, "encode", TOTAL)
#: Errors of a malformed message object while decoding it or stamping the outputs with its header: bad input.
_MALFORMED = (InputError, AttributeError, TypeError)


def rejection_kind(err: BaseException) -> str:
    """``"input"`` for an :class:`~meta_ood_perception.errors.InputError` (the frame is bad), ``"fault"`` for
    anything else: a :class:`~meta_ood_perception.errors.FaultError` or an unexpected exception (a bug, a backend's
    own error type)."""
    return "input" if isinstance(err, InputError) else "fault"


def failure_reason(err: BaseException) -> str:
    """One line: the message of an error of the hierarchy; ``Type: message`` for any other exception."""
    if isinstance(err, MetaOodError):
        return first_line(err)
    return f"{type(err).__name__}: {first_line(err)}"


@dataclass(frozen=True)
class Rejection:
    """A frame that produced no perception output.

    Attributes:
        topic: input topic. stamp_ns: header stamp (None when the header itself was unreadable).
        reason: one line. kind: ``"input"`` (the frame is bad) or ``"fault"`` (the backend / pipeline failed).
    """

    topic: str
    stamp_ns: int | None
    reason: str
    kind: str = "input"


@dataclass
class ProcessedFrame:
    """What :meth:`CameraProcessor.process` made of one input message.

    Attributes:
        camera: the camera's topics. stamp_ns: header stamp, or None when unreadable.
        image: (H, W, 3) uint8 RGB of the decoded frame (None if decoding failed).
        result: the pipeline's result (None on error). brake: the brake hint for this frame (fail-safe on error).
        messages: output name (``anomaly_mask``, ``anomaly_score``, ``detections``, ``emergency_brake``) → message;
            on error only ``emergency_brake`` (when the header was readable).
        error: the rejection, or None. timings_ms: per :data:`LATENCY_STAGES` (empty on error).
    """

    camera: CameraTopics
    stamp_ns: int | None
    image: npt.NDArray[np.uint8] | None
    result: FrameResult | None
    brake: BrakeHint
    messages: dict[str, Any]
    error: Rejection | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)


class CameraProcessor:
    """Input message → :class:`ProcessedFrame` for one camera (not thread-safe: one per camera)."""

    def __init__(
        self,
        camera: CameraTopics,
        pipeline: AnomalyPipeline,
        types: cv.MessageTypes,
        *,
        publish_score: bool = True,
        publish_detections: bool = True,
        limits: cv.FrameLimits = cv.DEFAULT_FRAME_LIMITS,
    ) -> None:
        self.camera = camera
        #: frame sizes accepted; larger or smaller frames are rejected before decoding (kind "input")
        self.limits = limits
        self.pipeline = pipeline
        self.types = types
        self.publish_score = publish_score
        self.publish_detections = publish_detections

    def process(self, msg: Any) -> ProcessedFrame:
        """Decode, run and encode one ``Image`` / ``CompressedImage``; never raises (a failure is a rejection whose
        kind the error's type decides, see the module docstring)."""
        sw = Stopwatch()
        header = getattr(msg, "header", None)
        try:
            stamp: int | None = cv.stamp_ns(header)
        except (*_MALFORMED, ValueError):
            stamp, header = None, None
        try:
            with sw.stage("decode"):
                image = cv.message_to_rgb(msg, self.limits)
        except Exception as err:  # a frame must never take the node or the replay down
            if isinstance(err, _MALFORMED):
                return self._reject(header, stamp, None, f"bad frame: {first_line(err)}", "input", reset=False)
            LOG.debug("decode failure", exc_info=True)
            return self._reject(header, stamp, None, f"decode failure: {failure_reason(err)}", "fault")
        try:
            # the metric-grid tensors (megabytes) are for offline consumers: not kept past this frame
            result = dataclasses.replace(self.pipeline.process(image), analysis=None)
        except Exception as err:  # a backend that fails must not take the node or the replay down
            kind = rejection_kind(err)
            reason = failure_reason(err)
            if not isinstance(err, MetaOodError):  # a backend's own error type, or a bug
                LOG.debug("pipeline failure", exc_info=True)
                reason = f"backend failure: {reason}"
            return self._reject(header, stamp, image, reason, kind, reset=kind == "fault")
        for stage, ms in result.timings_ms.items():
            if stage != TOTAL:
                sw.add(stage, ms)
        t = self.types
        try:
            with sw.stage("encode"):
                messages: dict[str, Any] = {"anomaly_mask": cv.mask_to_msg(result.mask, header, t)}
                if self.publish_score:
                    messages["anomaly_score"] = cv.score_to_msg(result.score, header, t)
                if self.publish_detections:
                    messages["detections"] = cv.detections_to_msg(result.components, header, t)
                messages["emergency_brake"] = cv.brake_to_msg(result.brake, header, t)
        except Exception as err:  # e.g. an unreadable header
            if isinstance(err, _MALFORMED):
                reason = f"cannot build the outputs: {first_line(err)}"
                return self._reject(header, stamp, image, reason, "input", reset=False)
            LOG.debug("encode failure", exc_info=True)
            return self._reject(header, stamp, image, f"encode failure: {failure_reason(err)}", "fault")
        return ProcessedFrame(self.camera, stamp, image, result, result.brake, messages, None, sw.with_total())

    def unavailable(self, header: Any, reason: str, *, reset: bool = True) -> ProcessedFrame:
        """A fail-safe brake output for ``header`` (e.g. no input for too long, a message that does not
        deserialize); ``reset`` restarts the pipeline's history (:meth:`AnomalyPipeline.reset`: the brake history
        and the run of frames outside the domain), as the node does after a gap or a fault."""
        hint = self._unavailable(reason, reset)
        messages = {"emergency_brake": cv.brake_to_msg(hint, header, self.types)}
        return ProcessedFrame(self.camera, cv.stamp_ns(header), None, None, hint, messages)

    def overlay(self, frame: ProcessedFrame) -> npt.NDArray[np.uint8] | None:
        """The human view of ``frame``: (H, W, 3) uint8 **RGB** (kept components tinted with boxes and their
        1 − P(false positive), removed ones in grey, the brake corridor, a banner with the brake state); a frame
        whose pipeline failed gets the "perception unavailable" banner and its reason. None when the frame never
        decoded. The node publishes it on ``<ns>/anomaly_overlay``; ``meta-ood replay --video`` writes it."""
        from ..overlay import annotate, unavailable

        if frame.image is None:
            return None
        if frame.result is None:
            reason = frame.error.reason if frame.error is not None else ""
            bgr = unavailable(frame.image, reason, self.camera.name)
        else:
            corridor = self.pipeline.brake_policy.corridor_mask(*frame.image.shape[:2])
            bgr = annotate(frame.image, frame.result, corridor, self.camera.name)
        return np.ascontiguousarray(bgr[..., ::-1])

    def _reject(
        self,
        header: Any,
        stamp: int | None,
        image: npt.NDArray[np.uint8] | None,
        reason: str,
        kind: str,
        *,
        reset: bool = True,
    ) -> ProcessedFrame:
        hint = self._unavailable(reason, reset)
        messages = {}
        if header is not None:
            with contextlib.suppress(AttributeError, TypeError, ValueError):  # a header with unusable fields
                messages["emergency_brake"] = cv.brake_to_msg(hint, header, self.types)
        rejection = Rejection(self.camera.input, stamp, reason, kind)
        return ProcessedFrame(self.camera, stamp, image, None, hint, messages, rejection)

    def _unavailable(self, reason: str, reset: bool) -> BrakeHint:
        """The fail-safe hint; ``reset`` restarts the whole pipeline history (one behaviour for node and replay)."""
        if reset:
            self.pipeline.reset()
        return self.pipeline.brake_policy.unavailable(reason, reset=False)


class ProcessingStats:
    """Frame counts, rejections and per-stage latencies.

    Args:
        keep: how many rejections and latency samples to keep (None = all, for replay; the node keeps a window).
    """

    def __init__(self, keep: int | None = None) -> None:
        self.frames_in = 0
        self.frames_processed = 0
        self.frames_rejected = 0
        self.frames_dropped = 0
        self.frames_superseded = 0
        self.frames_out_of_domain = 0
        #: the brake reason while the domain monitor holds the brake hint unavailable (None otherwise)
        self.domain_unavailable: str | None = None
        self.faults = 0
        self.consecutive_faults = 0
        self.consecutive_rejected = 0
        self.rejections: deque[Rejection] = deque(maxlen=keep)
        self.latency_ms: dict[str, deque[float]] = {s: deque(maxlen=keep) for s in LATENCY_STAGES}

    def add(self, frame: ProcessedFrame) -> None:
        """Count one processed or rejected frame."""
        if frame.error is None:
            self.frames_processed += 1
            self.consecutive_faults = 0
            self.consecutive_rejected = 0
            if frame.result is not None:
                self.frames_out_of_domain += not frame.result.domain.in_domain
                self.domain_unavailable = None if frame.brake.available else frame.brake.reason
            for stage, ms in frame.timings_ms.items():
                if stage in self.latency_ms:
                    self.latency_ms[stage].append(ms)
            return
        self.reject(frame.error)

    def reject(self, rejection: Rejection) -> None:
        """Count one rejected frame (also one that never reached a processor, e.g. a message that does not
        deserialize); ``kind == "fault"`` also counts a fault."""
        self.frames_rejected += 1
        self.consecutive_rejected += 1
        self.rejections.append(rejection)
        if rejection.kind == "fault":
            self.faults += 1
            self.consecutive_faults += 1

    def percentiles(self) -> dict[str, dict[str, float]]:
        """``{stage: {"p50", "p95", "p99", "mean"}}`` in milliseconds (stages without samples are left out)."""
        out = {}
        for stage, values in self.latency_ms.items():
            if values:
                a = np.fromiter(values, np.float64)
                p50, p95, p99 = np.percentile(a, [50, 95, 99])
                out[stage] = {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(a.mean())}
        return out
