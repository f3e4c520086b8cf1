"""Rosbag replay: run the node's per-camera processing over a bag and write the node's outputs to an MCAP bag.

``meta-ood replay IN_BAG --out OUT_BAG`` reads rosbag2 (MCAP or sqlite3, a bag directory or a single ``.mcap`` /
``.db3`` file) and rosbag1 bags through ``rosbags``; it processes the image topics (``sensor_msgs/msg/Image`` or
``CompressedImage``) in header-stamp order (a reorder window of ``reorder_window`` messages absorbs recording
jitter) with :class:`~meta_ood_perception.ros.processor.CameraProcessor`, exactly as the node does, and writes a
rosbag2 MCAP bag (metadata version 8, readable by ROS 2 Humble and newer) holding per camera ``<ns>/anomaly_mask``,
``<ns>/anomaly_score``, ``<ns>/detections`` and ``<ns>/emergency_brake``, each stamped with the input header and
logged at the input message's log time.

A message that does not deserialize, an unsupported encoding or a truncated frame is skipped and counted (with its
stamp and reason in the summary); when its stamp is readable, the frame's brake output says perception was
unavailable. SIGINT / SIGTERM stop
the replay after the current frame and close the output bag properly, so it holds every frame processed so far.
With a label topic (mono8 0 in-distribution / 1 anomaly / 255 void, matched to frames by header stamp) the
summary adds pixel metrics (AUROC, FPR95, AUPRC) and component metrics (SMIYC sIoU / PPV / F1) of the camera in the
label topic's namespace (or of the only camera). The summary counts the frames the domain monitor put outside the
bundle's domain (``frames_out_of_domain``; the brake hint is unavailable after ``domain_patience`` of them in a row).
"""

from __future__ import annotations

import heapq
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..bundle import DEFAULT_BUNDLE, DEFAULT_BUNDLE_WARNING, load_bundle
from ..evaluation import PixelMetricsAccumulator
from ..pipeline import AnomalyPipeline, ComponentInfo
from ..reports import first_line, write_json
from ..smiyc import SegmentMetricsAccumulator, frame_segments
from . import conversions as cv
from .params import NodeConfig, all_camera_topics
from .processor import CameraProcessor, ProcessedFrame, ProcessingStats, Rejection
from .salvage import SalvageReader

LOG = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
OUTPUT_TYPES = {
    "anomaly_mask": "sensor_msgs/msg/Image",
    "anomaly_score": "sensor_msgs/msg/Image",
    "detections": "vision_msgs/msg/Detection2DArray",
    "emergency_brake": "diagnostic_msgs/msg/DiagnosticArray",
}


class ReplayError(ValueError):
    """The replay cannot start (not a bag, missing topic, existing output, ...); one line for the user."""


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay and what to write besides the output bag.

    Attributes:
        image_topics: topics to process; empty = every Image / CompressedImage topic of the bag except label
            topics (a name segment containing ``label``) and the node's own ``anomaly_mask`` / ``anomaly_score``.
        label_topic: mono8 labels (0 / 1 / 255) matched to frames by stamp, for metrics; None = no metrics.
        summary: JSON summary path (None = not written; :func:`replay` returns it either way).
        video: annotated MP4 of the first camera (None = none).
        overwrite: replace an existing output bag / summary / video.
        reorder_window: messages held back to process frames in stamp order.
        min_pred_size, min_gt_size: SMIYC component size limits, pixels.
        per_frame: add a ``frames`` list to the summary (one record per frame: stamp, brake state and risk,
            components found and kept, total latency).
        salvage: read an MCAP recording that was cut short up to its damage (summary ``salvaged``).
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


def open_reader(path: str | Path, salvage: bool = False) -> Any:
    """An opened ``rosbags.highlevel.AnyReader`` over ``path``; anything that is not a readable bag → ReplayError.

    With ``salvage``, an MCAP file that ``rosbags`` cannot open (a recording cut short) is read up to its damage by
    :class:`~meta_ood_perception.ros.salvage.SalvageReader` instead.
    """
    from rosbags.highlevel import AnyReader

    from .salvage import mcap_file

    bag = Path(path)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such file or directory")
    types = cv.RosbagsTypes()
    try:
        reader = AnyReader([bag], default_typestore=types.typestore)
        reader.open()
    except Exception as err:  # rosbags raises several reader error types, and OSError / sqlite3 errors
        detail = first_line(err)
        if salvage and mcap_file(bag) is not None:
            try:
                return SalvageReader(bag)
            except ValueError as salvage_err:
                raise ReplayError(f"{bag}: cannot salvage: {salvage_err}") from None
        hint = " (a recording cut short? --salvage reads what it still holds)" if mcap_file(bag) else ""
        raise ReplayError(f"{bag} is not a readable rosbag2 (MCAP / sqlite3) or rosbag1 bag: {detail}{hint}") from None
    return reader


def image_topics(reader: Any) -> dict[str, str]:
    """``{topic: message type}`` of the bag's Image / CompressedImage topics."""
    return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}


def _describe(topics: dict[str, str]) -> str:
    return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"


def _derived(topic: str) -> bool:
    """A label topic (a name segment containing "label") or one of the node's outputs: not a camera."""
    segments = topic.strip("/").split("/")
    return segments[-1] in OUTPUT_TYPES or any("label" in seg for seg in segments)


def _select(reader: Any, options: ReplayOptions, bag: Path) -> tuple[list[Any], list[Any]]:
    images = image_topics(reader)
    all_topics = {c.topic: c.msgtype for c in reader.connections}
    # default: every image topic but label topics and the node's own outputs (anomaly_mask, anomaly_score)
    derived = {options.label_topic} | {t for t in images if _derived(t)}
    wanted = list(options.image_topics) or sorted(set(images) - derived)
    if not wanted:
        raise ReplayError(f"{bag} has no image topics (sensor_msgs/msg/Image or CompressedImage); its topics: "
                          f"{', '.join(sorted(all_topics)) or 'none'}")  # fmt: skip
    for topic in wanted:
        if topic not in all_topics:
            raise ReplayError(f"topic {topic} is not in {bag}; its image topics: {_describe(images)}")
        if topic not in images:
            raise ReplayError(f"topic {topic} in {bag} is {all_topics[topic]}, not an image; "
                              f"its image topics: {_describe(images)}")  # fmt: skip
    labels = []
    if options.label_topic is not None:
        if options.label_topic not in all_topics:
            raise ReplayError(f"label topic {options.label_topic} is not in {bag}; its topics: {_describe(all_topics)}")
        if all_topics[options.label_topic] != "sensor_msgs/msg/Image":
            raise ReplayError(f"label topic {options.label_topic} is {all_topics[options.label_topic]}, not an Image")
        labels = [c for c in reader.connections if c.topic == options.label_topic]
    connections = [c for c in reader.connections if c.topic in wanted]
    if sum(c.msgcount for c in connections) == 0:
        raise ReplayError(f"{bag} holds no messages on {', '.join(wanted)}")
    return connections, labels


def _check_output(path: Path, overwrite: bool, what: str, bag_dir: bool) -> None:
    """Refuse to replace anything but what replay itself writes: a bag folder (for the output bag) or a file."""
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise ReplayError(f"{what} {path} exists (use --overwrite to replace it)")
    if path.is_dir() and not path.is_symlink():
        looks_like_bag = (path / "metadata.yaml").is_file() or any(path.glob("*.mcap")) or any(path.glob("*.db3"))
        if not (bag_dir and looks_like_bag):
            raise ReplayError(f"{what} {path} is a folder that is not a bag; --overwrite replaces only bags and files")


def _prepare_output(path: Path) -> None:
    """Remove the (checked) old output and create the parent folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)


class BagWriter:
    """A rosbag2 bag written through ``rosbags`` (metadata version 8): connections are added on first use and
    messages serialized as CDR with the typestore of ``types``.

    Args:
        path: bag directory to create (must not exist).
        types: message classes (default: ROS 2 Jazzy + vision_msgs).
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
    """

    def __init__(self, path: str | Path, types: cv.RosbagsTypes | None = None, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        self.types = types or cv.RosbagsTypes()
        self.writer = Writer(Path(path), version=8, storage_plugin=plugins[storage])
        self.writer.open()
        self.connections: dict[str, Any] = {}
        self.messages = 0

    def write(self, topic: str, msgtype: str, msg: Any, log_time: int) -> None:
        """Serialize ``msg`` (a class of ``types``) and write it on ``topic`` at ``log_time`` (ns)."""
        self.write_raw(topic, msgtype, self.types.typestore.serialize_cdr(msg, msgtype), log_time)

    def write_raw(self, topic: str, msgtype: str, data: bytes | memoryview, log_time: int) -> None:
        """Write already serialized CDR bytes (tests use it for corrupt messages)."""
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.types.typestore)
        self.writer.write(self.connections[topic], log_time, data)
        self.messages += 1

    def close(self) -> None:
        """Finish the bag (MCAP summary and metadata.yaml); it is readable only after this."""
        self.writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Video:
    """Annotated frames of one camera into an MP4 (mp4v), at the frame rate of the first stamps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: Any = None
        self.size: tuple[int, int] | None = None
        self.pending: list[tuple[int | None, npt.NDArray[np.uint8]]] = []
        self.frames = 0
        self.last: npt.NDArray[np.uint8] | None = None

    def last_frame_unavailable(self) -> npt.NDArray[np.uint8]:
        """The previous video frame dimmed with an "unavailable" banner (for a frame that could not be decoded)."""
        from ..overlay import unavailable

        previous = self.last if self.last is not None else np.zeros((64, 64, 3), np.uint8)
        return unavailable(np.ascontiguousarray(previous[..., ::-1] // 2), "frame could not be decoded", "")

    def add(self, stamp: int | None, bgr: npt.NDArray[np.uint8]) -> None:
        self.last = bgr
        if self.writer is None:
            self.pending.append((stamp, bgr))
            if len(self.pending) >= 8:
                self._open()
            return
        self._write(bgr)

    def _open(self) -> None:
        import cv2

        stamps = [s for s, _ in self.pending if s is not None]
        deltas = np.diff(np.array(sorted(stamps), np.float64)) / 1e9
        deltas = deltas[deltas > 0]
        fps = float(np.clip(1.0 / np.median(deltas), 1.0, 60.0)) if deltas.size else 10.0
        height, width = self.pending[0][1].shape[:2]
        self.size = (width, height)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*"mp4v"), fps, self.size)
        if not self.writer.isOpened():
            raise ReplayError(f"cannot write video {self.path} (OpenCV has no mp4v encoder here)")
        for _, frame in self.pending:
            self._write(frame)
        self.pending = []

    def _write(self, bgr: npt.NDArray[np.uint8]) -> None:
        import cv2

        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = np.asarray(cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA), np.uint8)
        self.writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()


@dataclass(frozen=True)
class _Scored:
    """What label metrics need of one processed frame: (H, W) score and kept mask, component ids, components."""

    score: npt.NDArray[np.float32]
    mask: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.integer[Any]]
    components: tuple[ComponentInfo, ...]


class _LabelMetrics:
    """Pixel and component metrics over frames whose stamp has a label message."""

    def __init__(self, options: ReplayOptions) -> None:
        self.options = options
        self.pixel = PixelMetricsAccumulator(quantum=1e-5)  # fixed memory however long the bag
        self.segments = SegmentMetricsAccumulator()
        self.labels: dict[int, npt.NDArray[np.uint8]] = {}
        self.pending: dict[int, _Scored] = {}
        self.counts = {"components": 0, "true_detections": 0, "true_detections_lost": 0,
                       "false_positives_before": 0, "false_positives_after": 0}  # fmt: skip
        self.unmatched = 0
        self.keep = max(4 * options.reorder_window, 64)  # entries waiting for their partner, bounded
        self.frames = 0
        self.bad_labels = 0

    def add_label(self, msg: Any) -> None:
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
            self._bound(self.labels)

    def add_frame(self, frame: ProcessedFrame) -> None:
        if frame.result is None or frame.stamp_ns is None:
            return
        labels = self.labels.pop(frame.stamp_ns, None)
        result = frame.result
        # component ids as uint16 when they fit: a frame waiting for its label costs 5 bytes per pixel, not 9
        ids = result.labels.astype(np.uint16) if len(result.components) < 2**16 else result.labels
        scored = _Scored(result.score, result.mask, ids, result.components)
        if labels is None:
            self.pending[frame.stamp_ns] = scored
            self._bound(self.pending)
        else:
            self._score(scored, labels)

    def _bound(self, waiting: dict[int, Any]) -> None:
        """Forget the oldest entries beyond ``keep`` (sparse labels must not hold every frame in memory)."""
        while len(waiting) > self.keep:
            del waiting[min(waiting)]
            self.unmatched += 1

    def _score(self, result: _Scored, labels: npt.NDArray[np.uint8]) -> None:
        if labels.shape != result.score.shape:
            self.bad_labels += 1
            LOG.warning("replay: label image %s does not match the frame %s; skipped", labels.shape,
                        result.score.shape)  # fmt: skip
            return
        self.pixel.update(result.score, labels)
        self.segments.update(
            frame_segments(result.mask.astype(bool), labels, min_pred_size=self.options.min_pred_size,
                           min_gt_size=self.options.min_gt_size)
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
        try:
            pixel: dict[str, Any] = self.pixel.compute("exact") if self.frames else {}
        except ValueError as err:  # e.g. a drive without hazards (counting false alarms): no ROC to speak of
            pixel = {"auroc": None, "fpr95": None, "auprc": None, "note": str(err)}
        seg = self.segments.compute() if self.frames else {}
        return {
            "topic": self.options.label_topic, "frames": self.frames,
            "frames_without_label": len(self.pending) + self.unmatched,
            "bad_labels": self.bad_labels, "pixel": pixel,
            "components": {k: seg[k] for k in ("sIoU_gt", "PPV", "mean_F1", "F1")} if seg else {},
            "meta_classifier": dict(self.counts),
        }  # fmt: skip


def _guarded(messages: Iterator[tuple[Any, int, bytes]], errors: list[str]) -> Iterator[tuple[Any, int, bytes]]:
    """Yield bag messages until the reader fails (a damaged bag); the failure goes to ``errors``."""
    count = 0
    iterator = iter(messages)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # rosbags / mcap / sqlite3 raise their own types on damaged data
            errors.append(f"the input bag is damaged after {count} messages: {first_line(err)}")
            return
        count += 1
        yield item


def _ordered(
    messages: Iterator[tuple[Any, int, bytes]], window: int, ros1: bool = False
) -> Iterator[tuple[int, int, Any, int, bytes]]:
    """Re-emit bag messages sorted by a sort key inside a window: yields (key, seq, connection, log time, raw).

    The key is the header stamp read from the CDR bytes (offset 4: int32 sec, uint32 nanosec, little endian) for
    messages that start with a header, else the log time. A message too short to hold one sorts by log time.
    """
    heap: list[tuple[int, int, Any, int, bytes]] = []
    for seq, (connection, log_time, raw) in enumerate(messages):
        key = _stamp_key(raw, log_time, ros1)
        heapq.heappush(heap, (key, seq, connection, log_time, raw))
        if len(heap) > window:
            yield heapq.heappop(heap)
    while heap:
        yield heapq.heappop(heap)


def _stamp_key(raw: bytes, log_time: int, ros1: bool = False) -> int:
    if ros1:  # ROS 1 serialization: uint32 seq, then uint32 sec, uint32 nsec, little endian
        if len(raw) < 12:
            return log_time
        sec, nanosec = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:12], "little")
        return sec * 1_000_000_000 + nanosec if nanosec < 1_000_000_000 else log_time
    # CDR encapsulation header: 0x00 0x00 = big endian, 0x00 0x01 = little endian
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return log_time
    order: Literal["little", "big"] = "little" if raw[1] == 1 else "big"
    sec = int.from_bytes(raw[4:8], order, signed=True)
    nanosec = int.from_bytes(raw[8:12], order)
    if nanosec >= 1_000_000_000:
        return log_time
    return sec * 1_000_000_000 + nanosec


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
        config: node settings (bundle, backend, threshold, brake policy, publish_score); its cameras are replaced
            by the bag's image topics. None = the node's defaults.
        options: topics, label topic, summary / video paths.
        pipeline_factory: builds one pipeline per camera from ``config`` (tests inject faulty backends); default:
            one bundle and one backend shared by all cameras.
        on_frame: called after each frame with (frames done, frames total), e.g. for a progress bar; without it
            progress is logged every 5 s.

    Raises:
        ReplayError: not a bag, a topic that is not in it (the message lists the bag's image topics), an empty
            bag, an existing output without ``overwrite``; :class:`~meta_ood_perception.bundle.BundleError` /
            ``BackendError`` (both ``ValueError``) for a bad bundle or backend.
    """
    config = config or NodeConfig.from_params({})
    options = options or ReplayOptions()
    bag, out = Path(in_bag), Path(out_bag)
    if out.resolve() == bag.resolve():
        raise ReplayError(f"the output bag {out} must differ from the input bag")
    for path in (out, options.summary, options.video):
        if path is not None and _overlaps(Path(path), bag):
            raise ReplayError(f"output {path} would overwrite or sit inside the input bag {bag}")
    reader = open_reader(bag, options.salvage)
    try:
        connections, label_connections = _select(reader, options, bag)
        outputs = [(out, "output bag"), (options.summary, "summary"), (options.video, "video")]
        for path, what in outputs:
            if path is not None:
                _check_output(Path(path), options.overwrite, what, bag_dir=path is out)
                if path is not out and (Path(path).resolve() == out.resolve() or out.resolve() in
                                        Path(path).resolve().parents):  # fmt: skip
                    raise ReplayError(f"{what} {path} must not lie inside the output bag {out}")
        if options.video is not None:
            _check_video_encoder(Path(options.video))
        factory = pipeline_factory or _default_factory(config)  # a bad bundle fails before anything is deleted
        for path, _ in outputs:
            if path is not None:
                _prepare_output(Path(path))
        return _run(reader, bag, out, config, options, connections, label_connections, factory, on_frame)
    finally:
        reader.close()


def _overlaps(path: Path, bag: Path) -> bool:
    """``path`` is the bag, a folder holding it, or a path inside the bag's folder."""
    p, b = path.resolve(), bag.resolve()
    return p == b or p in b.parents or (b.is_dir() and b in p.parents)


def _check_video_encoder(path: Path) -> None:
    """Fail before any processing when OpenCV cannot write MP4 (mp4v) here."""
    import cv2

    probe = path.with_name(f".{path.stem}.probe.mp4")
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (64, 64))
    ok = writer.isOpened()
    writer.release()
    probe.unlink(missing_ok=True)
    if not ok:
        raise ReplayError(f"cannot write video {path}: OpenCV has no mp4v encoder here (omit --video)")


def _default_factory(config: NodeConfig) -> Callable[[NodeConfig], AnomalyPipeline]:
    bundle = load_bundle(config.bundle)
    from ..backends import create_backend

    backend = create_backend(config.backend, bundle, **config.backend_options)
    if bundle.root.resolve() == DEFAULT_BUNDLE.resolve():  # said once the bundle runs (a bad setting stays one line)
        LOG.warning("%s", DEFAULT_BUNDLE_WARNING)

    def factory(cfg: NodeConfig) -> AnomalyPipeline:
        pipeline = AnomalyPipeline(bundle, backend, cfg.pipeline)
        pipeline.warm_up()
        return pipeline

    return factory


def _run(
    reader: Any,
    bag: Path,
    out: Path,
    config: NodeConfig,
    options: ReplayOptions,
    connections: list[Any],
    label_connections: list[Any],
    factory: Callable[[NodeConfig], AnomalyPipeline],
    on_frame: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    types = cv.RosbagsTypes()
    processors: dict[str, CameraProcessor] = {}
    cameras = {c.input: c for c in all_camera_topics(sorted({c.topic for c in connections}))}
    for c in connections:
        if c.topic not in processors:
            pipeline = factory(config)
            processors[c.topic] = CameraProcessor(cameras[c.topic], pipeline, types,
                                                  publish_score=config.publish_score)  # fmt: skip
    stats = {topic: ProcessingStats() for topic in processors}
    total = sum(c.msgcount for c in connections)
    labels = _LabelMetrics(options) if options.label_topic else None
    label_camera = _label_camera(options.label_topic, processors) if options.label_topic else None
    video = _Video(Path(options.video)) if options.video else None
    video_topic = min(processors) if options.video else None
    events: list[dict[str, Any]] = []
    last_state: dict[str, tuple[bool, bool]] = {}
    last_stamp: dict[str, int] = {}
    out_of_order = 0
    records: list[dict[str, Any]] = []
    read_errors: list[str] = []
    output = BagWriter(out, types)
    t_start = time.perf_counter()
    done = 0
    last_log = t_start
    with _Stop() as stop:
        try:
            messages = _guarded(reader.messages(connections=[*connections, *label_connections]), read_errors)
            ros1 = not getattr(reader, "is2", True)
            for _, _, connection, log_time, raw in _ordered(messages, options.reorder_window, ros1):
                if stop.signal:
                    break
                if labels is not None and connection.topic == options.label_topic:
                    label_msg = _deserialize(reader, raw, connection)
                    if isinstance(label_msg, str):
                        labels.bad_labels += 1
                    else:
                        labels.add_label(label_msg)
                    continue
                topic = connection.topic
                stats[topic].frames_in += 1
                msg = _deserialize(reader, raw, connection)
                if isinstance(msg, str):
                    stamp = _stamp_or_none(raw, ros1)
                    stats[topic].reject(Rejection(topic, stamp, msg))
                    if stamp is not None:  # the consumer learns that this stamp has no perception
                        down = processors[topic].unavailable(cv.make_header(types, stamp), msg, reset=False)
                        brake_topic = processors[topic].camera.outputs["emergency_brake"]
                        output.write(brake_topic, OUTPUT_TYPES["emergency_brake"], down.messages["emergency_brake"],
                                     log_time)  # fmt: skip
                    frame = None
                else:
                    frame = processors[topic].process(msg)
                    stats[topic].add(frame)
                    for name, out_msg in frame.messages.items():
                        output.write(processors[topic].camera.outputs[name], OUTPUT_TYPES[name], out_msg, log_time)
                    if frame.stamp_ns is not None:
                        if frame.stamp_ns < last_stamp.get(topic, -1):
                            out_of_order += 1
                        last_stamp[topic] = max(frame.stamp_ns, last_stamp.get(topic, -1))
                    _brake_event(frame, last_state, events)
                    if options.per_frame:
                        records.append(_record(frame, log_time))
                    if labels is not None and topic == label_camera:
                        labels.add_frame(frame)
                    if video is not None and topic == video_topic and frame.image is not None:
                        video.add(frame.stamp_ns, _annotated(frame, processors[topic]))
                    elif video is not None and topic == video_topic and video.frames + len(video.pending):
                        video.add(frame.stamp_ns, video.last_frame_unavailable())
                done += 1
                LOG.debug("replay: frame %d of %d done (%s)", done, total, topic)
                if on_frame is not None:
                    on_frame(done, total)
                now = time.perf_counter()
                if on_frame is None and now - last_log >= 5.0:
                    last_log = now
                    LOG.info("replay: %d / %d frames (%.1f frames/s)", done, total, done / (now - t_start))
        finally:
            output.close()
            if video is not None:
                video.close()
    wall = time.perf_counter() - t_start
    summary = _summary(bag, out, config, processors, stats, events, wall, out_of_order, stop.signal, output)
    summary["salvaged"] = (
        {"damage": reader.error or "no summary section"} if isinstance(reader, SalvageReader) else None
    )
    summary["read_error"] = read_errors[0] if read_errors else None
    if labels is not None:
        summary["labels"] = labels.report()
    if options.per_frame:
        summary["frames"] = records
    if video is not None:
        summary["video"] = {"path": str(options.video), "frames": video.frames, "topic": video_topic}
    if options.summary is not None:
        write_json(summary, Path(options.summary))
    return summary


def _label_camera(label_topic: str, processors: dict[str, CameraProcessor]) -> str:
    """The camera a label topic belongs to: the one sharing its namespace, or the only camera."""
    namespace = label_topic.rsplit("/", 1)[0]
    same = [t for t, p in processors.items() if p.camera.outputs["anomaly_mask"].rsplit("/", 1)[0] == namespace]
    if len(same) == 1:
        return same[0]
    if len(processors) == 1:
        return next(iter(processors))
    raise ReplayError(f"label topic {label_topic} belongs to none (or several) of the cameras "
                      f"{', '.join(sorted(processors))}; choose one camera with --image-topic")  # fmt: skip


def _deserialize(reader: Any, raw: bytes, connection: Any) -> Any:
    """The message, or a one-line reason string when the bytes do not deserialize."""
    try:
        return reader.deserialize(raw, connection.msgtype)
    except Exception as err:  # rosbags raises struct.error, IndexError, ValueError, ... on corrupt CDR
        return f"corrupt message ({connection.msgtype}, {len(raw)} bytes): {first_line(err)}"


def _stamp_or_none(raw: bytes, ros1: bool = False) -> int | None:
    key = _stamp_key(raw, -1, ros1)
    return None if key == -1 else key


def _annotated(frame: ProcessedFrame, processor: CameraProcessor) -> npt.NDArray[np.uint8]:
    from ..overlay import annotate, unavailable

    assert frame.image is not None
    if frame.result is None:  # decoded, but the pipeline failed on it
        reason = frame.error.reason if frame.error is not None else ""
        return unavailable(frame.image, reason, processor.camera.name)
    corridor = processor.pipeline.brake_policy.corridor_mask(*frame.image.shape[:2])
    return annotate(frame.image, frame.result, corridor, processor.camera.name)


def _record(frame: ProcessedFrame, log_time: int) -> dict[str, Any]:
    result = frame.result
    return {
        "topic": frame.camera.input, "stamp_ns": frame.stamp_ns, "log_time_ns": log_time,
        "error": None if frame.error is None else frame.error.reason, "active": frame.brake.active,
        "available": frame.brake.available, "risk": frame.brake.risk, "hit": frame.brake.hit,
        "in_domain": None if result is None else result.domain.in_domain,
        "domain_score": None if result is None else result.domain.score,
        "components": 0 if result is None else len(result.components),
        "kept": 0 if result is None else len(result.kept),
        "total_ms": frame.timings_ms.get("total"),
    }  # fmt: skip


def _brake_event(frame: ProcessedFrame, last: dict[str, tuple[bool, bool]], events: list[dict[str, Any]]) -> None:
    topic = frame.camera.input
    state = (frame.brake.active, frame.brake.available)
    before = last.get(topic, (False, True))
    last[topic] = state
    if state == before:
        return
    availability = "available" if state[1] else "unavailable"
    event = availability if state[1] != before[1] else ("on" if state[0] else "off")
    events.append({"topic": topic, "stamp_ns": frame.stamp_ns, "event": event, "risk": frame.brake.risk,
                   "reason": frame.brake.reason})  # fmt: skip


def _summary(
    bag: Path,
    out: Path,
    config: NodeConfig,
    processors: dict[str, CameraProcessor],
    stats: dict[str, ProcessingStats],
    events: list[dict[str, Any]],
    wall: float,
    out_of_order: int,
    interrupted: str | None,
    output: BagWriter,
) -> dict[str, Any]:
    merged = ProcessingStats()
    cameras = {}
    for topic, s in stats.items():
        for stage, values in s.latency_ms.items():
            merged.latency_ms[stage].extend(values)
        cameras[topic] = {
            "outputs": processors[topic].camera.outputs, "frames_in": s.frames_in,
            "frames_processed": s.frames_processed, "frames_rejected": s.frames_rejected,
            "frames_out_of_domain": s.frames_out_of_domain,
        }  # fmt: skip
    rejections = sorted((r for s in stats.values() for r in s.rejections), key=lambda r: (r.stamp_ns or 0, r.topic))
    frames_in = sum(s.frames_in for s in stats.values())
    first = next(iter(processors.values())).pipeline
    return {
        "input": str(bag), "output": str(out), "bundle": config.bundle, "backend": first.backend.description,
        "threshold": first.threshold, "interrupted": interrupted, "wall_s": wall,
        "frames_in": frames_in, "frames_processed": sum(s.frames_processed for s in stats.values()),
        "frames_rejected": sum(s.frames_rejected for s in stats.values()),
        "frames_out_of_domain": sum(s.frames_out_of_domain for s in stats.values()),
        "domain_monitor": {
            "calibrated": first.bundle.domain is not None, "domain_patience": first.config.domain_patience,
            "calibration_frames": None if first.bundle.domain is None else first.bundle.domain.frames,
        },
        "frames_per_s": frames_in / wall if wall > 0 else math.nan, "out_of_order": out_of_order,
        "messages_written": output.messages, "cameras": cameras,
        "rejections": [{"topic": r.topic, "stamp_ns": r.stamp_ns, "reason": r.reason, "kind": r.kind}
                       for r in rejections],
        "latency_ms": merged.percentiles(), "brake_events": events,
    }  # fmt: skip
