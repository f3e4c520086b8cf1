"""One replay's state and its per-frame step, shared by both replay modes (every frame, and ``--realtime``).

:class:`ReplaySession` holds the cameras' :class:`~meta_ood_perception.ros.processor.CameraProcessor` s and counts,
the output bag, the optional label metrics and videos (one per camera), and what the summary lists (brake events,
per-frame records, read errors). :meth:`ReplaySession.process` is what the node's worker does for one frame —
decode, run, encode — followed by what only replay does: write the outputs at the input's log time with the input
header, and account for the frame (stamp order, brake events, label metrics, the camera's video). In ``--realtime``
mode it runs on the scheduler's worker thread while the reading thread feeds frames and label messages; the two
share only thread-safe parts (the label metrics lock, and separate counters of
:class:`~meta_ood_perception.ros.processor.ProcessingStats`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..reports import first_line
from . import conversions as cv
from .bag_reader import deserialize, stamp_or_none
from .label_metrics import LabelMetrics
from .processor import CameraProcessor, ProcessedFrame, ProcessingStats, Rejection
from .replay_output import OUTPUT_TYPES, BagWriter, ReplayVideo

#: the receipt-to-output latency stage (``--realtime`` only): submitted to the scheduler → outputs written
RECEIPT_STAGE = "receipt"


@dataclass(frozen=True)
class Arrival:
    """One camera message as the processing step gets it.

    Attributes:
        log_time: the bag's log time, ns (the outputs are logged at it). raw: the serialized message.
        msg: the deserialized message (None when it did not deserialize). error: why it did not (one line), or None.
    """

    log_time: int
    raw: bytes
    msg: Any
    error: str | None = None


@dataclass
class ReplaySession:
    """See the module docstring.

    Attributes:
        reader: the opened bag reader. processors: camera topic → processor. output: the output bag.
        types: the message classes. ros1: the input is a ROS 1 bag (its stamps are read differently).
        labels, label_camera: label metrics and the camera topic they score (None without a label topic).
        videos: camera topic → its video (empty without ``--video``).
        per_frame: keep one record per frame (``records``). stats: camera topic → counts and latencies.
        events: brake events (on / off / unavailable / available). out_of_order: frames older than their camera's
            newest. read_errors: a damaged input bag's read failure. failure: an exception the worker hit (realtime).
    """

    reader: Any
    processors: dict[str, CameraProcessor]
    output: BagWriter
    types: cv.RosbagsTypes
    ros1: bool = False
    labels: LabelMetrics | None = None
    label_camera: str | None = None
    videos: dict[str, ReplayVideo] = field(default_factory=dict)
    per_frame: bool = False
    stats: dict[str, ProcessingStats] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)
    out_of_order: int = 0
    failure: Exception | None = None
    _last_state: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    _last_stamp: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for topic in self.processors:
            self.stats.setdefault(topic, ProcessingStats())

    def take_label(self, connection: Any, raw: bytes) -> bool:
        """Hand a message of the label topic to the label metrics; False for any other message."""
        if self.labels is None or connection.topic != self.labels.topic:
            return False
        try:
            msg = deserialize(self.reader, raw, connection)
        except InputError:
            self.labels.add_bad_label()
            return True
        self.labels.add_label(msg)
        return True

    def arrival(self, connection: Any, log_time: int, raw: bytes) -> Arrival:
        """The camera message ``raw``, deserialized (or with the reason it does not deserialize)."""
        try:
            return Arrival(log_time, raw, deserialize(self.reader, raw, connection))
        except InputError as err:
            return Arrival(log_time, raw, None, first_line(err))

    def process(self, topic: str, arrival: Arrival) -> ProcessedFrame:
        """Process one camera message, count it, write its outputs and account for it; returns the frame."""
        processor = self.processors[topic]
        frame = processor.process(arrival.msg) if arrival.error is None else self._undeserializable(topic, arrival)
        self.stats[topic].add(frame)
        for name, msg in frame.messages.items():
            self.output.write(processor.camera.outputs[name], OUTPUT_TYPES[name], msg, arrival.log_time)
        if arrival.error is None:
            self._account(topic, frame, arrival.log_time)
        return frame

    def _undeserializable(self, topic: str, arrival: Arrival) -> ProcessedFrame:
        """The rejection of a message that does not deserialize; when its stamp is still readable, with a brake
        output telling the consumer that this stamp has no perception (the brake history goes on)."""
        processor, reason = self.processors[topic], arrival.error or "corrupt message"
        stamp = stamp_or_none(arrival.raw, self.ros1)
        rejection = Rejection(topic, stamp, reason)
        if stamp is None:
            hint = processor.pipeline.brake_policy.unavailable(reason, reset=False)
            return ProcessedFrame(processor.camera, None, None, None, hint, {}, rejection)
        down = processor.unavailable(cv.make_header(self.types, stamp), reason, reset=False)
        return dataclasses.replace(down, error=rejection)

    def _account(self, topic: str, frame: ProcessedFrame, log_time: int) -> None:
        if frame.stamp_ns is not None:
            newest = self._last_stamp.get(topic, -1)
            self.out_of_order += frame.stamp_ns < newest
            self._last_stamp[topic] = max(frame.stamp_ns, newest)
        self._brake_event(frame)
        if self.per_frame:
            self.records.append(frame_record(frame, log_time))
        if self.labels is not None and topic == self.label_camera:
            self.labels.add_frame(frame)
        video = self.videos.get(topic)
        if video is not None:
            view = self.processors[topic].overlay(frame)  # RGB
            if view is not None:
                video.add(frame.stamp_ns, np.ascontiguousarray(view[..., ::-1]))
            elif video.started:  # a frame that never decoded: the last picture, marked unavailable
                video.add(frame.stamp_ns, video.last_frame_unavailable())

    def _brake_event(self, frame: ProcessedFrame) -> None:
        topic = frame.camera.input
        state = (frame.brake.active, frame.brake.available)
        before = self._last_state.get(topic, (False, True))
        self._last_state[topic] = state
        if state == before:
            return
        availability = "available" if state[1] else "unavailable"
        event = availability if state[1] != before[1] else ("on" if state[0] else "off")
        self.events.append({"topic": topic, "stamp_ns": frame.stamp_ns, "event": event, "risk": frame.brake.risk,
                            "reason": frame.brake.reason})  # fmt: skip

    def close(self) -> None:
        """Finish the output bag and the videos (all stay readable with every frame written so far); the first
        failure is raised after every one has been tried."""
        failures: list[Exception] = []
        outputs: list[BagWriter | ReplayVideo] = [self.output, *self.videos.values()]
        for closing in outputs:
            try:
                closing.close()
            except Exception as err:  # e.g. a full disk: the other outputs are still finished
                failures.append(err)
        if failures:
            raise failures[0]


def frame_record(frame: ProcessedFrame, log_time: int) -> dict[str, Any]:
    """One frame of the summary's ``frames`` list: stamp, brake hint (``active``, ``state``: see
    :data:`~meta_ood_perception.brake.BrakeState`) and risk, components, total latency."""
    result = frame.result
    return {
        "topic": frame.camera.input, "stamp_ns": frame.stamp_ns, "log_time_ns": log_time,
        "error": None if frame.error is None else frame.error.reason, "active": frame.brake.active,
        "available": frame.brake.available, "risk": frame.brake.risk, "hit": frame.brake.hit,
        "state": frame.brake.state,
        "in_domain": None if result is None else result.domain.in_domain,
        "domain_score": None if result is None else result.domain.score,
        "components": 0 if result is None else len(result.components),
        "kept": 0 if result is None else len(result.kept),
        "total_ms": frame.timings_ms.get("total"),
    }  # fmt: skip
