"""The output side of ``meta-ood replay``: output-path safety, the rosbag2 writer and the annotated video.

Replay never replaces what it did not write: :func:`refuse_input_overlap` keeps every output off the input bag,
:func:`check_outputs` refuses existing outputs without ``overwrite`` (and, with it, folders that are not bags), and
only then :func:`prepare_outputs` removes the old ones. :class:`BagWriter` writes a rosbag2 bag (metadata version
8, MCAP by default) through ``rosbags``; :class:`ReplayVideo` writes the human view of one camera as an MP4.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from . import conversions as cv
from .bag_reader import NS_PER_S, ReplayError

#: message type of each of the node's outputs
OUTPUT_TYPES = {
    "anomaly_mask": "sensor_msgs/msg/Image",
    "anomaly_score": "sensor_msgs/msg/Image",
    "detections": "vision_msgs/msg/Detection2DArray",
    "emergency_brake": "diagnostic_msgs/msg/DiagnosticArray",
}
VIDEO_FOURCC = "mp4v"
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
        out: the output bag folder. others: what (``"summary"``, ``"video"``) → path, or None when not written.
        overwrite: an existing bag folder or file may be replaced.

    Raises:
        ReplayError: an existing output without ``overwrite``; a folder that is not a bag; a summary or video
            inside the output bag; a video OpenCV cannot encode here.
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
    video = others.get("video")
    if video is not None:
        _check_video_encoder(video)
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


def _check_video_encoder(path: Path) -> None:
    """Fail before any processing when OpenCV cannot write MP4 (mp4v) here."""
    import cv2

    probe = path.with_name(f".{path.stem}.probe.mp4")
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter.fourcc(*VIDEO_FOURCC), VIDEO_DEFAULT_FPS, (64, 64))
    ok = writer.isOpened()
    writer.release()
    probe.unlink(missing_ok=True)
    if not ok:
        raise ReplayError(f"cannot write video {path}: OpenCV has no {VIDEO_FOURCC} encoder here (omit --video)")


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
    """

    def __init__(self, path: str | Path, types: cv.RosbagsTypes | None = None, storage: str = "mcap") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ConfigError(f"bag storage must be mcap or sqlite3, got {storage!r}")
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


class ReplayVideo:
    """Frames of one camera into an MP4 (mp4v), at the frame rate of the first stamps (clipped to 1–60 frames/s).

    Frames are (H, W, 3) uint8 **BGR**; a frame of another size is resized to the first one's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer: Any = None
        self.size: tuple[int, int] | None = None
        self.pending: list[tuple[int | None, npt.NDArray[np.uint8]]] = []
        self.frames = 0
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
        import cv2

        stamps = [s for s, _ in self.pending if s is not None]
        deltas = np.diff(np.array(sorted(stamps), np.float64)) / NS_PER_S
        deltas = deltas[deltas > 0]
        fps = float(np.clip(1.0 / np.median(deltas), *VIDEO_FPS_RANGE)) if deltas.size else VIDEO_DEFAULT_FPS
        height, width = self.pending[0][1].shape[:2]
        self.size = (width, height)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*VIDEO_FOURCC), fps, self.size)
        if not self.writer.isOpened():
            raise ReplayError(f"cannot write video {self.path} (OpenCV has no {VIDEO_FOURCC} encoder here)")
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
        """Write what is pending and finish the file."""
        if self.writer is None and self.pending:
            self._open()
        if self.writer is not None:
            self.writer.release()
