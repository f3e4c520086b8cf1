"""The output side of ``meta-ood replay``: output-path safety, the rosbag2 writer and the annotated video.

Replay never replaces what it did not write: :func:`refuse_input_overlap` keeps every output off the input bag,
:func:`check_outputs` refuses existing outputs without ``overwrite`` (and, with it, folders that are not bags), and
only then :func:`prepare_outputs` removes the old ones. :class:`BagWriter` writes a rosbag2 bag (metadata version
8, MCAP by default, optionally with zstd or lz4 chunk compression) through ``rosbags``; :class:`ReplayVideo` writes
the human view of one camera as an MP4: H.264 (yuv420p, ``+faststart``: browsers, VS Code and GitHub play it)
through PyAV (extra ``video``; its wheels ship FFmpeg with libx264), else MPEG-4 Part 2 (``mp4v``) through OpenCV,
with one warning line per replay. Each camera gets its own video at its own size (:func:`video_paths`).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping, Sequence
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from . import conversions as cv
from .bag_compression import check_compression
from .bag_reader import NS_PER_S, ReplayError

LOG = logging.getLogger(__name__)

#: message type of each of the node's outputs
OUTPUT_TYPES = {
    "anomaly_mask": "sensor_msgs/msg/Image",
    "anomaly_score": "sensor_msgs/msg/Image",
    "detections": "vision_msgs/msg/Detection2DArray",
    "emergency_brake": "diagnostic_msgs/msg/DiagnosticArray",
}
H264, MP4V = "h264", "mp4v"  # the video codecs: H.264 through PyAV, else MPEG-4 Part 2 through OpenCV
H264_ENCODER = "libx264"
H264_OPTIONS = {"crf": "23", "preset": "veryfast"}  # x264: good quality, fast enough beside the pipeline
MP4_OPTIONS = {"movflags": "+faststart"}  # the index first: plays while it loads
VIDEO_FPS_RANGE = (1.0, 60.0)  # frames per second the video's rate is clipped to
VIDEO_DEFAULT_FPS = 10.0  # when the first stamps give no rate
VIDEO_RATE_FRAMES = 8  # frames whose stamps set the video's rate


def refuse_input_overlap(bag: Path, out: Path, others: Sequence[Path | None]) -> None:
    """:class:`ReplayError` when the output bag is the input, or any output is the input bag, a folder holding it
    or a path inside the bag's folder."""
    if out.resolve() == bag.resolve():
        raise ReplayError(f"the output bag {out} must differ from the input bag")
    for path in (out, *others):
        if path is not None and _overlaps(path, bag):
            raise ReplayError(f"output {path} would overwrite or sit inside the input bag {bag}")


def _overlaps(path: Path, bag: Path) -> bool:
    """``path`` is the bag, a folder holding it, or a path inside the bag's folder."""
    p, b = path.resolve(), bag.resolve()
    return p == b or p in b.parents or (b.is_dir() and b in p.parents)


def check_outputs(out: Path, others: dict[str, Path | None], overwrite: bool) -> list[Path]:
    """The outputs to write (the output bag first), after checking that each may be written.

    Args:
        out: the output bag folder. others: what (``"summary"``, ``"video"``, ``"video <camera topic>"``) → path,
            or None when not written.
        overwrite: an existing bag folder or file may be replaced.

    Raises:
        ReplayError: an existing output without ``overwrite``; a folder that is not a bag; a summary or video
            inside the output bag; a video, and neither PyAV (H.264) nor OpenCV (mp4v) can encode one here.
    """
    _check_output(out, overwrite, "output bag", bag_dir=True)
    paths = [out]
    for what, path in others.items():
        if path is None:
            continue
        _check_output(path, overwrite, what, bag_dir=False)
        if path.resolve() == out.resolve() or out.resolve() in path.resolve().parents:
            raise ReplayError(f"{what} {path} must not lie inside the output bag {out}")
        paths.append(path)
    if any(path is not None and what.startswith("video") for what, path in others.items()):
        _check_video_encoder()
    return paths


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


def _check_video_encoder() -> None:
    """Fail before any processing when no MP4 encoder is here; warn (one line) when it is not H.264."""
    import tempfile

    import cv2

    if video_codec() == H264:
        return
    LOG.warning("video: MPEG-4 Part 2 (mp4v), which browsers do not play: PyAV with libx264 is not installed "
                "(pip install 'meta_ood_perception[video]' for H.264)")  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        probe = cv2.VideoWriter(str(Path(folder) / "probe.mp4"), cv2.VideoWriter.fourcc(*MP4V), VIDEO_DEFAULT_FPS,
                                (64, 64))  # fmt: skip
        ok = probe.isOpened()
        probe.release()
    if not ok:
        raise ReplayError("cannot write a video: neither PyAV (H.264) nor OpenCV (mp4v) can encode MP4 here "
                          "(omit --video)")  # fmt: skip


@cache
def video_codec() -> str:
    """:data:`H264` when PyAV with the libx264 encoder is installed, else :data:`MP4V` (checked once)."""
    try:
        import av

        av.codec.Codec(H264_ENCODER, "w")
    except (ImportError, ValueError):  # no PyAV, or an FFmpeg without libx264 (UnknownCodecError is a ValueError)
        return MP4V
    return H264


def video_paths(path: Path, cameras: Mapping[str, str]) -> dict[str, Path]:
    """Camera topic → its video: ``path`` itself for one camera; ``<stem>_<camera><suffix>`` next to it for each of
    several (``camera`` = the camera's name, ``cameras[topic]``, with characters other than letters, digits, ``.``,
    ``-`` and ``_`` as ``_``; a repeated name gets its index appended)."""
    if len(cameras) == 1:
        return {next(iter(cameras)): path}
    paths: dict[str, Path] = {}
    for i, (topic, name) in enumerate(sorted(cameras.items())):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "camera"
        candidate = path.with_name(f"{path.stem}_{safe}{path.suffix}")
        if candidate in paths.values():
            candidate = path.with_name(f"{path.stem}_{safe}_{i}{path.suffix}")
        paths[topic] = candidate
    return paths


def prepare_outputs(paths: Sequence[Path]) -> None:
    """Remove the (checked) old outputs and create their parent folders."""
    for path in paths:
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
        compression: MCAP chunk compression
            (:data:`~meta_ood_perception.ros.bag_compression.COMPRESSIONS`): ``"zstd"``, ``"lz4"`` or ``"none"``
            (default). Chunks of 1 MiB are compressed inside the MCAP file (rosbag2's storage-level compression:
            ``metadata.yaml`` names no file or message compression, and every MCAP reader, ROS 2's included, reads
            it); sqlite3 bags are not compressed.

    Raises:
        ConfigError: an unknown storage or compression, or compression with sqlite3.
    """

    def __init__(
        self, path: str | Path, types: cv.RosbagsTypes | None = None, storage: str = "mcap", compression: str = "none"
    ) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ConfigError(f"bag storage must be mcap or sqlite3, got {storage!r}")
        check_compression(compression)
        if compression != "none" and storage != "mcap":
            raise ConfigError(f"bag compression {compression} needs mcap storage, got {storage}")
        self.types = types or cv.RosbagsTypes()
        self.compression = compression
        self.writer = Writer(Path(path), version=8, storage_plugin=plugins[storage])
        if compression != "none":  # rosbags compresses chunks with zstd; lz4 replaces its compressor below
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        if compression == "lz4":
            self._use_lz4()
        self.connections: dict[str, Any] = {}
        self.messages = 0

    def _use_lz4(self) -> None:
        """Make the MCAP storage writer compress chunks with LZ4 frames (rosbags' own choice is zstd only)."""
        import lz4.frame

        storage: Any = self.writer.storage
        if getattr(storage, "compression", None) != "zstd" or not callable(getattr(storage, "compressor", None)):
            self.writer.close()
            raise ConfigError("bag compression lz4 is not supported with this rosbags version; use zstd or none")
        storage.compression, storage.compressor = "lz4", lz4.frame.compress

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


class _H264Writer:
    """H.264 (libx264, yuv420p) in MP4 with ``+faststart``, through PyAV; frames (H, W, 3) uint8 BGR of ``size``."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import av

        self.container = av.open(str(path), "w", format="mp4", options=MP4_OPTIONS)
        stream = self.container.add_stream(H264_ENCODER, rate=Fraction(fps).limit_denominator(1001),
                                           options=H264_OPTIONS)  # fmt: skip
        assert isinstance(stream, av.VideoStream)  # an encoder of video
        self.stream = stream
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"

    def write(self, bgr: npt.NDArray[np.uint8]) -> None:
        import av

        for packet in self.stream.encode(av.VideoFrame.from_ndarray(bgr, format="bgr24")):
            self.container.mux(packet)

    def close(self) -> None:
        try:
            for packet in self.stream.encode(None):  # flush the encoder's delayed frames
                self.container.mux(packet)
        finally:
            self.container.close()


class _Mp4vWriter:
    """MPEG-4 Part 2 (``mp4v``) through OpenCV: the fallback without PyAV."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*MP4V), fps, size)
        if not self.writer.isOpened():
            raise ReplayError(f"cannot write video {path} (OpenCV has no {MP4V} encoder here)")

    def write(self, bgr: npt.NDArray[np.uint8]) -> None:
        self.writer.write(bgr)

    def close(self) -> None:
        self.writer.release()


class ReplayVideo:
    """Frames of one camera into an MP4 (H.264 when :func:`video_codec` says so, else mp4v) at the frame rate of
    the first stamps (clipped to 1–60 frames/s).

    Frames are (H, W, 3) uint8 **BGR**. The video has the first frame's size, padded by one black row / column to
    even dimensions (yuv420p needs them); a later frame of another size is *letterboxed* into it (scaled to fit,
    aspect ratio kept, black bars; counted in ``letterboxed``), never stretched.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.codec = video_codec()
        self.writer: _H264Writer | _Mp4vWriter | None = None
        self.source: tuple[int, int] | None = None  # (width, height) of the first frame
        self.size: tuple[int, int] | None = None  # (width, height) of the video: the first frame's, made even
        self.fps = VIDEO_DEFAULT_FPS
        self.pending: list[tuple[int | None, npt.NDArray[np.uint8]]] = []
        self.frames = 0
        self.letterboxed = 0
        self.last: npt.NDArray[np.uint8] | None = None

    @property
    def started(self) -> bool:
        """A frame has been added."""
        return self.frames + len(self.pending) > 0

    def last_frame_unavailable(self) -> npt.NDArray[np.uint8]:
        """The previous video frame dimmed with an "unavailable" banner (for a frame that could not be decoded)."""
        from ..overlay import unavailable

        previous = self.last if self.last is not None else np.zeros((64, 64, 3), np.uint8)
        return unavailable(np.ascontiguousarray(previous[..., ::-1] // 2), "frame could not be decoded", "")

    def add(self, stamp: int | None, bgr: npt.NDArray[np.uint8]) -> None:
        """Add one frame with its header stamp (ns; None when unknown)."""
        self.last = bgr
        if self.writer is None:
            self.pending.append((stamp, bgr))
            if len(self.pending) >= VIDEO_RATE_FRAMES:
                self._open()
            return
        self._write(bgr)

    def _open(self) -> None:
        stamps = [s for s, _ in self.pending if s is not None]
        deltas = np.diff(np.array(sorted(stamps), np.float64)) / NS_PER_S
        deltas = deltas[deltas > 0]
        self.fps = float(np.clip(1.0 / np.median(deltas), *VIDEO_FPS_RANGE)) if deltas.size else VIDEO_DEFAULT_FPS
        height, width = self.pending[0][1].shape[:2]
        self.source = (width, height)
        self.size = (width + width % 2, height + height % 2)
        writer = _H264Writer if self.codec == H264 else _Mp4vWriter
        self.writer = writer(self.path, self.fps, self.size)
        for _, frame in self.pending:
            self._write(frame)
        self.pending = []

    def _write(self, bgr: npt.NDArray[np.uint8]) -> None:
        assert self.writer is not None and self.size is not None
        self.writer.write(self._fit(bgr))
        self.frames += 1

    def _fit(self, bgr: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """``bgr`` on a black canvas of the video's size: padded when it is the first frame's size, else
        letterboxed."""
        import cv2

        assert self.size is not None
        width, height = self.size
        h, w = bgr.shape[:2]
        if (w, h) != self.source:
            self.letterboxed += 1
            scale = min(width / w, height / h)
            w, h = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            bgr = np.asarray(cv2.resize(bgr, (w, h), interpolation=interpolation), np.uint8)
        if (w, h) == (width, height):
            return np.ascontiguousarray(bgr)
        canvas = np.zeros((height, width, 3), np.uint8)
        top, left = (height - h) // 2, (width - w) // 2
        canvas[top : top + h, left : left + w] = bgr
        return canvas

    def describe(self) -> dict[str, Any]:
        """The summary's entry: path, codec, frames written, width and height (pixels), frames/s, letterboxed."""
        width, height = self.size or (None, None)
        return {"path": str(self.path), "codec": self.codec, "frames": self.frames, "width": width,
                "height": height, "fps": self.fps, "letterboxed": self.letterboxed}  # fmt: skip

    def close(self) -> None:
        """Write what is pending and finish the file."""
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.close()
