"""Rosbag replay: run the node's per-camera processing over a bag and write the node's outputs to an MCAP bag.

``meta-ood replay IN_BAG --out OUT_BAG`` reads rosbag2 (MCAP or sqlite3, a bag directory or a single ``.mcap`` /
``.db3`` file) and rosbag1 bags (:mod:`~meta_ood_perception.ros.bag_reader`), processes the image topics
(``sensor_msgs/msg/Image`` or ``CompressedImage``) with :class:`~meta_ood_perception.ros.processor.CameraProcessor`,
exactly as the node does, and writes a rosbag2 MCAP bag (metadata version 8, readable by ROS 2 Humble and newer;
chunks zstd-compressed by default; :mod:`~meta_ood_perception.ros.replay_output`) holding per camera
``<ns>/anomaly_mask``, ``<ns>/anomaly_score``, ``<ns>/detections`` and ``<ns>/emergency_brake``, each stamped with
the input header and logged at the input message's log time. Two modes (summary ``mode``):

- ``every_frame`` (default): every frame is processed, in header-stamp order (a reorder window of
  ``reorder_window`` messages absorbs recording jitter), as fast as the pipeline goes. Latencies are best case.
- ``realtime`` (``--realtime``): the bag plays at its recorded rate (message log times, wall-clock paced) through
  the node's :class:`~meta_ood_perception.ros.scheduler.LatestFrameScheduler`: a frame still waiting when a newer
  one of its camera arrives is dropped, as in the live node, and the summary gives the frames dropped and the
  receipt-to-output latency (submitted → outputs written) the live node would see. Only processed frames reach
  the output bag and the video.

A message that does not deserialize, an unsupported encoding or a truncated frame is skipped and counted (with its
stamp and reason in the summary); when its stamp is readable, the frame's brake output says perception was
unavailable. SIGINT / SIGTERM stop the replay after the current frame and close the output bag properly, so it
holds every frame processed so far. With a label topic (mono8 0 in-distribution / 1 anomaly / 255 void, matched to
frames by header stamp) the summary adds pixel and component metrics
(:mod:`~meta_ood_perception.ros.label_metrics`) of the camera in the label topic's namespace (or of the only
camera). The summary counts the frames the domain monitor put outside the bundle's domain
(``frames_out_of_domain``; the brake hint is unavailable after ``domain_patience`` of them in a row).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from ..bundle import bundle_warnings, load_bundle
from ..pipeline import AnomalyPipeline
from ..reports import write_json
from . import conversions as cv
from .bag_compression import DEFAULT_COMPRESSION, check_compression
from .bag_reader import NS_PER_S, BagMessage, ReplayError, guarded, image_topics, open_reader, ordered, select_topics
from .label_metrics import LabelMetrics
from .params import CameraTopics, NodeConfig, all_camera_topics
from .processor import CameraProcessor, ProcessedFrame, ProcessingStats
from .replay_output import BagWriter, ReplayVideo, check_outputs, prepare_outputs, refuse_input_overlap, video_paths
from .replay_session import RECEIPT_STAGE, Arrival, ReplaySession
from .salvage import SalvageReader
from .scheduler import LatestFrameScheduler

__all__ = ["BagWriter", "ReplayError", "ReplayOptions", "image_topics", "open_reader", "replay"]

LOG = logging.getLogger(__name__)

EVERY_FRAME, REALTIME = "every_frame", "realtime"
PROGRESS_LOG_S = 5.0  # without a progress callback, progress is logged this often
PACE_POLL_S = 0.05  # while pacing, a stop signal is noticed within this time
DRAIN_POLL_S = 0.005  # how often the end of a realtime replay checks whether the worker is done
WORKER_JOIN_S = 600.0  # how long the end of a realtime replay waits for the frame in processing


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay, how, and what to write besides the output bag.

    Attributes:
        image_topics: topics to process; empty = every Image / CompressedImage topic of the bag except label
            topics (a name segment containing ``label``) and the node's own ``anomaly_mask`` / ``anomaly_score``.
        label_topic: mono8 labels (0 / 1 / 255) matched to frames by stamp, for metrics; None = no metrics.
        summary: JSON summary path (None = not written; :func:`replay` returns it either way).
        video: annotated MP4 (None = none): this path for one camera; with several, one per camera at its own
            size, ``<stem>_<camera>.mp4`` (:func:`~meta_ood_perception.ros.replay_output.video_paths`).
        overwrite: replace an existing output bag / summary / video.
        reorder_window: messages held back to process frames in stamp order (every-frame mode).
        min_pred_size, min_gt_size: SMIYC component size limits, pixels.
        per_frame: add a ``frames`` list to the summary (one record per processed frame: stamp, brake state and
            risk, components found and kept, total latency).
        salvage: read an MCAP recording that was cut short up to its damage (summary ``salvaged``).
        realtime: play at the recorded rate through the node's newest-frame scheduler (see the module docstring).
        compression: the output bag's MCAP chunk compression: ``"zstd"`` (default), ``"lz4"`` or ``"none"``.

    Raises:
        ConfigError: an unknown compression.
    """

    image_topics: tuple[str, ...] = ()
    label_topic: str | None = None
    summary: Path | None = None
    video: Path | None = None
    overwrite: bool = False
    reorder_window: int = 16
    min_pred_size: int = 50
    min_gt_size: int = 10
    per_frame: bool = False
    salvage: bool = False
    realtime: bool = False
    compression: str = DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        check_compression(self.compression)

    @property
    def mode(self) -> str:
        """``"every_frame"`` or ``"realtime"``."""
        return REALTIME if self.realtime else EVERY_FRAME


class _Stop:
    """SIGINT / SIGTERM → a flag checked between frames (installed only in the main thread)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None:  # a second signal: stop now (the output bag is still closed by `finally`)
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        LOG.warning("replay: %s received, closing the output bag after the current frame", self.signal)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def replay(
    in_bag: str | Path,
    out_bag: str | Path,
    config: NodeConfig | None = None,
    options: ReplayOptions | None = None,
    *,
    pipeline_factory: Callable[[NodeConfig], AnomalyPipeline] | None = None,
    on_frame: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Replay ``in_bag`` into ``out_bag`` (see the module docstring) and return the summary.

    Args:
        config: node settings (bundle, backend, threshold, brake policy, publish_score, frame limits); its cameras
            are replaced by the bag's image topics. None = the node's defaults.
        options: topics, label topic, summary / video paths, mode.
        pipeline_factory: builds one pipeline per camera from ``config`` (tests inject faulty or slow backends);
            default: one bundle and one backend shared by all cameras.
        on_frame: called with (camera messages done, camera messages in the bag) after each camera message (every
            frame: processed; realtime: handed to the scheduler), e.g. for a progress bar; without it progress is
            logged every 5 s.

    Raises:
        ReplayError: not a bag, a topic that is not in it (the message lists the bag's image topics), an empty
            bag, an existing output without ``overwrite``, a label topic that belongs to no camera;
            :class:`~meta_ood_perception.errors.BundleError` / ``BackendError`` for a bad bundle or backend.
    """
    config = config or NodeConfig.from_params({})
    options = options or ReplayOptions()
    bag, out = Path(in_bag), Path(out_bag)
    others = {"summary": _path(options.summary), "video": _path(options.video)}
    refuse_input_overlap(bag, out, list(others.values()))
    reader = open_reader(bag, options.salvage)
    try:
        connections, label_connections = select_topics(reader, bag, options.image_topics, options.label_topic)
        cameras = {c.input: c for c in all_camera_topics(sorted({c.topic for c in connections}))}
        label_camera = _label_camera(options.label_topic, cameras) if options.label_topic else None
        videos = video_paths(Path(options.video), {t: c.name for t, c in cameras.items()}) if options.video else {}
        refuse_input_overlap(bag, out, list(videos.values()))
        paths = check_outputs(out, {**others, **{f"video {t}": p for t, p in videos.items()}}, options.overwrite)
        start = time.perf_counter()  # the warm-up: loading the bundle, the backend, each camera's first frame
        factory = pipeline_factory or _default_factory(config)  # a bad bundle fails before anything is deleted
        prepare_outputs(paths)
        session = _open_session(reader, out, config, options, cameras, factory, videos)
        session.label_camera = label_camera
        run = _Run(bag, out, config.bundle, options.mode, total=sum(c.msgcount for c in connections),
                   warmup_s=time.perf_counter() - start)  # fmt: skip
        if isinstance(reader, SalvageReader):
            run.salvaged = reader.error or "no summary section"
        _play(session, run, options, reader.messages(connections=[*connections, *label_connections]), on_frame)
        summary = _summary(session, run, options)
        if options.summary is not None:
            write_json(summary, Path(options.summary))
        return summary
    finally:
        reader.close()


def _path(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path)


def _label_camera(label_topic: str, cameras: dict[str, CameraTopics]) -> str:
    """The camera a label topic belongs to: the one sharing its namespace, or the only camera."""
    namespace = label_topic.rsplit("/", 1)[0]
    same = [t for t, c in cameras.items() if c.outputs["anomaly_mask"].rsplit("/", 1)[0] == namespace]
    if len(same) == 1:
        return same[0]
    if len(cameras) == 1:
        return next(iter(cameras))
    raise ReplayError(f"label topic {label_topic} belongs to none (or several) of the cameras "
                      f"{', '.join(sorted(cameras))}; choose one camera with --image-topic")  # fmt: skip


def _default_factory(config: NodeConfig) -> Callable[[NodeConfig], AnomalyPipeline]:
    bundle = load_bundle(config.bundle)
    from ..backends import create_backend

    backend = create_backend(config.backend, bundle, **config.backend_options)
    for line in bundle_warnings(bundle):  # said once the bundle runs (a bad setting stays one line)
        LOG.warning("%s", line)

    def factory(cfg: NodeConfig) -> AnomalyPipeline:
        pipeline = AnomalyPipeline(bundle, backend, cfg.pipeline)
        pipeline.warm_up()
        return pipeline

    return factory


def _open_session(
    reader: Any,
    out: Path,
    config: NodeConfig,
    options: ReplayOptions,
    cameras: dict[str, CameraTopics],
    factory: Callable[[NodeConfig], AnomalyPipeline],
    videos: dict[str, Path],
) -> ReplaySession:
    """One processor (and pipeline) per camera, the output bag, and the label metrics and videos (camera topic →
    path) when asked for."""
    types = cv.RosbagsTypes()
    processors = {
        topic: CameraProcessor(
            camera, factory(config), types, publish_score=config.publish_score, limits=config.frame_limits
        )
        for topic, camera in sorted(cameras.items())
    }
    labels = None
    if options.label_topic is not None:
        labels = LabelMetrics(options.label_topic, options.min_pred_size, options.min_gt_size, options.reorder_window)
    return ReplaySession(
        reader, processors, BagWriter(out, types, compression=options.compression), types,
        ros1=not getattr(reader, "is2", True), labels=labels,
        videos={topic: ReplayVideo(path) for topic, path in videos.items()}, per_frame=options.per_frame,
    )  # fmt: skip


@dataclass
class _Run:
    """How one replay ran: input and output, bundle, mode, and what the loop measured.

    Attributes:
        total: camera messages in the bag. wall_s: wall time of the loop. interrupted: the signal that stopped it.
        warmup_s: wall time before the loop: loading the bundle, creating the backend, each camera's warm-up frame
            (on a first run, compiling the kernels).
        recorded_span_s: log time of the last message read − that of the first (realtime pacing follows it).
        dropped: camera topic → frames the scheduler dropped (realtime; empty in every-frame mode).
        salvaged: the damage of a salvaged recording (None: not salvaged).
    """

    bag: Path
    out: Path
    bundle: str
    mode: str
    total: int
    wall_s: float = math.nan
    warmup_s: float = 0.0
    interrupted: str | None = None
    recorded_span_s: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)
    salvaged: str | None = None


class _Progress:
    """Counts camera messages done (processed, or fed to the scheduler: ``verb``); calls ``on_frame`` (or logs
    every :data:`PROGRESS_LOG_S`)."""

    def __init__(self, total: int, on_frame: Callable[[int, int], None] | None, verb: str) -> None:
        self.total, self.on_frame, self.verb = total, on_frame, verb
        self.done = 0
        self.start = self.last_log = time.perf_counter()

    def step(self, topic: str) -> None:
        self.done += 1
        LOG.debug("replay: frame %d of %d %s (%s)", self.done, self.total, self.verb, topic)
        if self.on_frame is not None:
            self.on_frame(self.done, self.total)
            return
        now = time.perf_counter()
        if now - self.last_log >= PROGRESS_LOG_S:
            self.last_log = now
            LOG.info("replay: %d / %d frames (%.1f frames/s)", self.done, self.total, self.done / (now - self.start))


def _play(
    session: ReplaySession,
    run: _Run,
    options: ReplayOptions,
    messages: Iterator[BagMessage],
    on_frame: Callable[[int, int], None] | None,
) -> None:
    """Run the mode's loop over ``messages``; the output bag and video are closed however it ends."""
    progress = _Progress(run.total, on_frame, "fed" if options.realtime else "done")
    span = _Span()
    read = span.track(guarded(messages, session.read_errors))
    with _Stop() as stop:
        try:
            if options.realtime:
                run.dropped = _play_realtime(session, read, progress, stop)
            else:
                _play_every_frame(session, ordered(read, options.reorder_window, session.ros1), progress, stop)
        finally:
            session.close()
    run.wall_s = time.perf_counter() - progress.start
    run.interrupted = stop.signal
    run.recorded_span_s = span.seconds


class _Span:
    """The log-time span of the messages read so far (seconds)."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.last: int | None = None

    def track(self, messages: Iterator[BagMessage]) -> Iterator[BagMessage]:
        for item in messages:
            self.first = item[1] if self.first is None else self.first
            self.last = item[1]
            yield item

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None or self.last is None else (self.last - self.first) / NS_PER_S


def _arrivals(session: ReplaySession, messages: Iterator[BagMessage], stop: _Stop) -> Iterator[tuple[str, Arrival]]:
    """(camera topic, arrival) of each camera message, counted in; label messages go to the label metrics. Ends at
    the end of ``messages``, a stop signal or a failure of the worker."""
    for connection, log_time, raw in messages:
        if stop.signal or session.failure is not None:
            return
        if session.take_label(connection, raw):
            continue
        session.stats[connection.topic].frames_in += 1
        yield connection.topic, session.arrival(connection, log_time, raw)


def _play_every_frame(session: ReplaySession, messages: Iterator[BagMessage], progress: _Progress, stop: _Stop) -> None:
    """Every camera message in turn, in the (stamp-ordered) order given, until the end or a stop signal."""
    for topic, arrival in _arrivals(session, messages, stop):
        session.process(topic, arrival)
        progress.step(topic)


def _play_realtime(
    session: ReplaySession, messages: Iterator[BagMessage], progress: _Progress, stop: _Stop
) -> dict[str, int]:
    """Feed camera messages, paced by their log times, to the node's newest-frame scheduler, whose worker runs
    :meth:`ReplaySession.process`; at the end the frames still waiting are processed. Returns the frames the
    scheduler dropped per camera (a newer frame of the camera arrived while they waited)."""

    def handle(topic: str, arrival: Arrival, received: float) -> ProcessedFrame:
        if scheduler.take_reset(topic):  # as the node's worker does after a fault
            session.processors[topic].pipeline.reset()
        try:
            frame = session.process(topic, arrival)
        except Exception as err:  # e.g. the output disk is full: the reading thread stops and raises it
            session.failure = session.failure or err
            raise
        if frame.error is None:
            receipt = session.stats[topic].latency_ms.setdefault(RECEIPT_STAGE, deque())
            receipt.append((time.monotonic() - received) * 1e3)
        return frame

    scheduler = LatestFrameScheduler(sorted(session.processors), handle, clock=time.monotonic)
    scheduler.start()
    try:
        for topic, arrival in _arrivals(session, _paced(messages, stop), stop):
            scheduler.submit(topic, arrival)
            progress.step(topic)
        while not stop.signal and session.failure is None and _working(scheduler):
            time.sleep(DRAIN_POLL_S)
    finally:
        scheduler.stop(timeout=WORKER_JOIN_S)  # after the frame in processing; the output bag is closed after this
    if session.failure is not None:
        raise session.failure
    return {topic: state.stats.frames_dropped for topic, state in scheduler.cameras.items()}


def _working(scheduler: LatestFrameScheduler) -> bool:
    """A frame waits in a slot or is being processed."""
    return any(s.slot is not None or s.busy_since is not None for s in scheduler.cameras.values())


def _paced(messages: Iterator[BagMessage], stop: _Stop) -> Iterator[BagMessage]:
    """``messages`` at their recorded rate: message k at wall time start + (log time k − log time of the first);
    ends early at a stop signal (noticed within :data:`PACE_POLL_S`)."""
    start, first = time.monotonic(), None
    for item in messages:
        first = item[1] if first is None else first
        due = start + (item[1] - first) / NS_PER_S
        while not stop.signal and (left := due - time.monotonic()) > 0:
            time.sleep(min(left, PACE_POLL_S))
        if stop.signal:
            return
        yield item


def _summary(session: ReplaySession, run: _Run, options: ReplayOptions) -> dict[str, Any]:
    """The replay summary (see the README's replay section for its fields)."""
    merged = ProcessingStats()
    cameras = {}
    for topic, s in session.stats.items():
        for stage, values in s.latency_ms.items():
            merged.latency_ms.setdefault(stage, deque()).extend(values)
        cameras[topic] = {
            "outputs": session.processors[topic].camera.outputs, "frames_in": s.frames_in,
            "frames_processed": s.frames_processed, "frames_rejected": s.frames_rejected,
            "frames_dropped": run.dropped.get(topic, 0), "frames_out_of_domain": s.frames_out_of_domain,
        }  # fmt: skip
    stats = session.stats.values()
    rejections = sorted((r for s in stats for r in s.rejections), key=lambda r: (r.stamp_ns or 0, r.topic))
    frames_in = sum(s.frames_in for s in stats)
    first = next(iter(session.processors.values())).pipeline
    latency = merged.percentiles()
    receipt = latency.pop(RECEIPT_STAGE, None)  # realtime only: its own entry, not a stage of the pipeline
    summary = {
        "input": str(run.bag), "output": str(run.out), "bundle": run.bundle, "backend": first.backend.description,
        "threshold": first.threshold, "mode": run.mode, "interrupted": run.interrupted, "wall_s": run.wall_s,
        "warmup_s": run.warmup_s,
        "recorded_span_s": run.recorded_span_s,
        "frames_in": frames_in, "frames_processed": sum(s.frames_processed for s in stats),
        "frames_rejected": sum(s.frames_rejected for s in stats), "frames_dropped": sum(run.dropped.values()),
        "frames_out_of_domain": sum(s.frames_out_of_domain for s in stats),
        "domain_monitor": {
            "calibrated": first.bundle.domain is not None, "domain_patience": first.config.domain_patience,
            "calibration_frames": None if first.bundle.domain is None else first.bundle.domain.frames,
        },
        "frames_per_s": frames_in / run.wall_s if run.wall_s > 0 else math.nan, "out_of_order": session.out_of_order,
        "messages_written": session.output.messages, "compression": session.output.compression, "cameras": cameras,
        "rejections": [{"topic": r.topic, "stamp_ns": r.stamp_ns, "reason": r.reason, "kind": r.kind}
                       for r in rejections],
        "latency_ms": latency, "receipt_latency_ms": receipt, "brake_events": session.events,
        "read_error": session.read_errors[0] if session.read_errors else None,
        "salvaged": None if run.salvaged is None else {"damage": run.salvaged},
    }  # fmt: skip
    if session.labels is not None:
        summary["labels"] = session.labels.report()
    if options.per_frame:
        summary["frames"] = session.records
    if session.videos:
        summary["videos"] = {topic: video.describe() for topic, video in session.videos.items()}
    return summary
