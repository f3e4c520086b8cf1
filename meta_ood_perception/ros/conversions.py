"""numpy ↔ ROS 2 messages, for rclpy's message classes and for the ``rosbags`` typestore classes alike.

Nothing here imports rclpy or rosbags: messages are read through their fields, and written through a
:class:`MessageTypes` that knows where the classes come from (:class:`RclpyTypes` or :class:`RosbagsTypes`). Every
message is constructed with all its fields by keyword (rosbags' classes have no defaults).

Input images (``sensor_msgs/msg/Image``): encodings ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8`` (replicated to
three channels); any other encoding is rejected naming it. Rows may be padded (``step`` ≥ width · channels); the
data must hold exactly ``step · height`` bytes. ``is_bigendian`` has no effect on these 8-bit encodings and is
accepted either way. ``sensor_msgs/msg/CompressedImage``: ``format`` naming ``jpeg``/``jpg`` or ``png`` (e.g.
``"jpeg"``, ``"rgb8; jpeg compressed bgr8"``), decoded with OpenCV. Every problem raises ``ValueError`` with one
line naming it.

Outputs: ``anomaly_mask`` mono8 (255 = kept anomaly, 0 otherwise), ``anomaly_score`` 32FC1 (native byte order,
``is_bigendian`` set accordingly), ``detections`` ``vision_msgs/msg/Detection2DArray`` (one detection per kept
component: bounding box centre and size in pixels, ``class_id`` ``"anomaly"``, score = 1 − P(false positive), ``id``
= component id), ``emergency_brake`` ``diagnostic_msgs/msg/DiagnosticArray`` with one status (see
:func:`brake_to_msg`). All outputs carry the input frame's header.
"""

from __future__ import annotations

import array
import importlib
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from ..brake import BrakeHint
from ..preprocessing import MAX_SIDE

#: Supported input encodings and their channel counts.
ENCODINGS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}

#: DiagnosticStatus levels (the ``byte`` constants of ``diagnostic_msgs/msg/DiagnosticStatus``).
OK, WARN, ERROR, STALE = 0, 1, 2, 3

#: vision_msgs 4.x definitions (ROS 2 Humble → Rolling), registered into a rosbags typestore that lacks them.
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\nvision_msgs/BoundingBox2D bbox\n"
        "string id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
}


class MessageTypes(Protocol):
    """Where message classes come from and how their ``uint8[]`` / ``byte`` fields are represented."""

    def get(self, name: str) -> Any:
        """The class of ``name`` (``"pkg/msg/Type"``)."""
        ...

    def uint8_array(self, data: npt.NDArray[np.uint8]) -> Any:
        """A ``uint8[]`` field value holding ``data``'s bytes."""
        ...

    def byte(self, value: int) -> Any:
        """A ``byte`` field value."""
        ...


class RclpyTypes:
    """Message classes of an installed ROS 2 (rclpy's generated Python classes)."""

    def get(self, name: str) -> Any:
        """Import ``pkg.msg.Type``."""
        package, _, type_name = name.split("/")
        return getattr(importlib.import_module(f"{package}.msg"), type_name)

    def uint8_array(self, data: npt.NDArray[np.uint8]) -> Any:
        """``array.array('B')`` — the fast path of the generated setters (bytes would be checked byte by byte)."""
        out = array.array("B")
        out.frombytes(np.ascontiguousarray(data).tobytes())
        return out

    def byte(self, value: int) -> Any:
        """``byte`` fields are ``bytes`` of length 1 in rclpy."""
        return bytes([value])


class RosbagsTypes:
    """Classes of a ``rosbags`` typestore (default: ROS 2 Jazzy, with vision_msgs registered if missing)."""

    def __init__(self, typestore: Any = None) -> None:
        if typestore is None:
            from rosbags.typesys import Stores, get_typestore

            typestore = get_typestore(Stores.ROS2_JAZZY)
        if "vision_msgs/msg/Detection2DArray" not in typestore.types:
            from rosbags.typesys import get_types_from_msg

            types: dict[str, Any] = {}
            for name, text in VISION_MSGS.items():
                types.update(get_types_from_msg(text, name))
            typestore.register(types)
        self.typestore = typestore

    def get(self, name: str) -> Any:
        """The typestore's class for ``name``."""
        return self.typestore.types[name]

    def uint8_array(self, data: npt.NDArray[np.uint8]) -> Any:
        """A flat uint8 numpy array."""
        return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)

    def byte(self, value: int) -> Any:
        """``byte`` fields are ints in rosbags."""
        return int(value)


def _buffer(data: Any) -> npt.NDArray[np.uint8]:
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
    if isinstance(data, bytes | bytearray | memoryview | array.array):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(list(data), dtype=np.uint8)


def image_to_rgb(msg: Any) -> npt.NDArray[np.uint8]:
    """``sensor_msgs/msg/Image`` → (H, W, 3) uint8 RGB (see the module docstring for what is accepted)."""
    encoding = str(msg.encoding).lower()
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(f"image has zero size ({height}×{width})")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ValueError(f"image of {height}×{width} pixels exceeds the {MAX_SIDE}-pixel limit")
    if step < width * channels:
        raise ValueError(f"image step {step} is smaller than width·channels = {width * channels} for {encoding}")
    data = _buffer(msg.data)
    if data.size != step * height:
        raise ValueError(f"image data holds {data.size} bytes, step·height = {step * height} expected")
    pixels = data.reshape(height, step)[:, : width * channels].reshape(height, width, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[..., ::-1])
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[..., :3])
    if encoding == "bgra8":
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.repeat(pixels, 3, axis=2)


def compressed_to_rgb(msg: Any) -> npt.NDArray[np.uint8]:
    """``sensor_msgs/msg/CompressedImage`` (jpeg / png) → (H, W, 3) uint8 RGB."""
    fmt = str(msg.format).lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise ValueError(f"unsupported CompressedImage format {msg.format!r} (supported: jpeg, png)")
    data = _buffer(msg.data)
    if data.size == 0:
        raise ValueError(f"CompressedImage ({msg.format!r}) holds no data")
    if not _fits(data):
        height, width = _declared_size(data) or (0, 0)
        raise ValueError(f"CompressedImage ({msg.format!r}) declares {height}×{width} pixels: larger than "
                         f"{MAX_SIDE} pixels a side or {MAX_DECODED_PIXELS} pixels")  # fmt: skip
    truncated = _truncated(data)
    if truncated:
        raise ValueError(f"CompressedImage ({msg.format!r}, {data.size} bytes) is a truncated {truncated}")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ValueError(f"cannot decode CompressedImage ({msg.format!r}, {data.size} bytes)")
    return np.ascontiguousarray(bgr[..., ::-1])


def _truncated(data: npt.NDArray[np.uint8]) -> str | None:
    """Name the format ("JPEG" / "PNG") when the stream lacks its end marker, else None (OpenCV would decode the
    missing rest as grey)."""
    head, tail = bytes(data[:8]), bytes(data[-32:])
    if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
        return "JPEG (no end-of-image marker)"
    if head == b"\x89PNG\r\n\x1a\n" and b"IEND" not in tail:
        return "PNG (no IEND chunk)"
    return None


#: Largest compressed image decoded, pixels (8K UHD is 33 M): a small file must not allocate gigabytes.
MAX_DECODED_PIXELS = 40_000_000


def _fits(data: npt.NDArray[np.uint8]) -> bool:
    """Refuse decompression bombs before decoding: PNG and JPEG state their size in their headers."""
    size = _declared_size(data)
    if size is None:
        return True
    height, width = size
    return 0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_DECODED_PIXELS


def _declared_size(data: npt.NDArray[np.uint8]) -> tuple[int, int] | None:
    """(height, width) from a PNG IHDR or a JPEG start-of-frame marker; None if not found."""
    head = bytes(data[:32])
    if len(head) >= 24 and head[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head[:2] != b"\xff\xd8":
        return None
    raw, i = bytes(data[: 1 << 16]), 2  # the frame header comes early; scan at most 64 KiB of marker segments
    while i + 9 <= len(raw) and raw[i] == 0xFF:
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOF0 … SOF15
            return int.from_bytes(raw[i + 5 : i + 7], "big"), int.from_bytes(raw[i + 7 : i + 9], "big")
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(raw[i + 2 : i + 4], "big")
    return None


def message_to_rgb(msg: Any) -> npt.NDArray[np.uint8]:
    """Image or CompressedImage (told apart by their fields) → (H, W, 3) uint8 RGB."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg)
    return image_to_rgb(msg)


def image_to_labels(msg: Any) -> npt.NDArray[np.uint8]:
    """A mono8 label image (0 in-distribution, 1 anomaly, 255 void) → (H, W) uint8."""
    if str(msg.encoding).lower() not in ("mono8", "8uc1"):
        raise ValueError(f"label image must be mono8, got {msg.encoding!r}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    data = _buffer(msg.data)
    if height <= 0 or width <= 0 or step < width or data.size != step * height:
        raise ValueError(f"label image {height}×{width}, step {step}, {data.size} bytes is inconsistent")
    return np.ascontiguousarray(data.reshape(height, step)[:, :width])


def make_header(types: MessageTypes, stamp_ns: int, frame_id: str = "") -> Any:
    """A ``std_msgs/msg/Header`` stamped ``stamp_ns`` (integer nanoseconds)."""
    stamp = types.get("builtin_interfaces/msg/Time")(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
    return types.get("std_msgs/msg/Header")(stamp=stamp, frame_id=frame_id)


def copy_header(header: Any, types: MessageTypes) -> Any:
    """A new ``std_msgs/msg/Header`` with the same stamp and frame id."""
    stamp = types.get("builtin_interfaces/msg/Time")(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
    return types.get("std_msgs/msg/Header")(stamp=stamp, frame_id=str(header.frame_id))


def _image(header: Any, types: MessageTypes, pixels: npt.NDArray[Any], encoding: str, bigendian: bool) -> Any:
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    step = pixels.strides[0]
    data = types.uint8_array(pixels.view(np.uint8))
    return types.get("sensor_msgs/msg/Image")(
        header=copy_header(header, types), height=int(height), width=int(width), encoding=encoding,
        is_bigendian=int(bigendian), step=int(step), data=data,
    )  # fmt: skip


def mask_to_msg(mask: npt.NDArray[np.uint8], header: Any, types: MessageTypes) -> Any:
    """(H, W) mask (non-zero = anomaly) → mono8 Image, 255 = anomaly."""
    return _image(header, types, np.where(mask > 0, np.uint8(255), np.uint8(0)), "mono8", False)


def score_to_msg(score: npt.NDArray[np.float32], header: Any, types: MessageTypes) -> Any:
    """(H, W) float32 score → 32FC1 Image in native byte order."""
    return _image(header, types, np.ascontiguousarray(score, np.float32), "32FC1", sys.byteorder == "big")


def msg_to_score(msg: Any) -> npt.NDArray[np.float32]:
    """32FC1 Image → (H, W) float32 (byte order from ``is_bigendian``)."""
    if msg.encoding != "32FC1":
        raise ValueError(f"score image must be 32FC1, got {msg.encoding!r}")
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    rows = _buffer(msg.data).reshape(int(msg.height), int(msg.step))[:, : int(msg.width) * 4]
    return np.ascontiguousarray(rows).view(dtype).astype(np.float32).reshape(int(msg.height), int(msg.width))


def detections_to_msg(components: Iterable[Any], header: Any, types: MessageTypes) -> Any:
    """Kept components (objects with ``id``, ``bbox`` (x0, y0, x1, y1 inclusive), ``p_false_positive``, ``kept``)
    → ``vision_msgs/msg/Detection2DArray``."""
    t = types.get
    detections = []
    for c in components:
        if not c.kept:
            continue
        x0, y0, x1, y1 = c.bbox
        center = t("vision_msgs/msg/Pose2D")(
            position=t("vision_msgs/msg/Point2D")(x=(x0 + x1) / 2.0, y=(y0 + y1) / 2.0), theta=0.0
        )
        bbox = t("vision_msgs/msg/BoundingBox2D")(center=center, size_x=float(x1 - x0 + 1), size_y=float(y1 - y0 + 1))
        pose = t("geometry_msgs/msg/PoseWithCovariance")(
            pose=t("geometry_msgs/msg/Pose")(
                position=t("geometry_msgs/msg/Point")(x=0.0, y=0.0, z=0.0),
                orientation=t("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0),
            ),
            covariance=np.zeros(36, np.float64) if isinstance(types, RosbagsTypes) else [0.0] * 36,
        )
        hypothesis = t("vision_msgs/msg/ObjectHypothesisWithPose")(
            hypothesis=t("vision_msgs/msg/ObjectHypothesis")(class_id="anomaly", score=1.0 - float(c.p_false_positive)),
            pose=pose,
        )
        detections.append(
            t("vision_msgs/msg/Detection2D")(
                header=copy_header(header, types), results=[hypothesis], bbox=bbox, id=str(c.id)
            )
        )
    return t("vision_msgs/msg/Detection2DArray")(header=copy_header(header, types), detections=detections)


def diagnostic_status(
    types: MessageTypes, level: int, name: str, message: str, hardware_id: str, values: Mapping[str, Any]
) -> Any:
    """One ``diagnostic_msgs/msg/DiagnosticStatus`` (values rendered with ``str``; bools as true / false)."""
    kv = types.get("diagnostic_msgs/msg/KeyValue")
    rendered = [kv(key=str(k), value=_text(v)) for k, v in values.items()]
    return types.get("diagnostic_msgs/msg/DiagnosticStatus")(
        level=types.byte(level), name=name, message=message, hardware_id=hardware_id, values=rendered
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def diagnostic_array(header: Any, statuses: Sequence[Any], types: MessageTypes) -> Any:
    """``diagnostic_msgs/msg/DiagnosticArray`` with ``header`` copied."""
    return types.get("diagnostic_msgs/msg/DiagnosticArray")(header=copy_header(header, types), status=list(statuses))


def brake_level(hint: BrakeHint) -> int:
    """STALE (3) perception unavailable, ERROR (2) brake hint active, WARN (1) a hit not yet persistent, OK (0)."""
    if not hint.available:
        return STALE
    if hint.active:
        return ERROR
    return WARN if hint.hit else OK


def brake_to_msg(hint: BrakeHint, header: Any, types: MessageTypes, name: str = "emergency_brake") -> Any:
    """The brake hint as a ``DiagnosticArray`` stamped with the frame's header: one status, level
    :func:`brake_level`, message = the reason, values ``active``, ``available``, ``risk``, ``hit``,
    ``hits_in_window``, ``components``."""
    values = {
        "active": hint.active, "available": hint.available, "risk": float(hint.risk), "hit": hint.hit,
        "hits_in_window": hint.hits_in_window, "components": ",".join(map(str, hint.component_ids)),
    }  # fmt: skip
    status = diagnostic_status(types, brake_level(hint), name, hint.reason, str(header.frame_id), values)
    return diagnostic_array(header, [status], types)


def msg_to_brake(msg: Any) -> dict[str, Any]:
    """Read a brake DiagnosticArray back: ``{"level", "reason", "active", "available", "risk"}``."""
    status = msg.status[0]
    values = {kv.key: kv.value for kv in status.values}
    level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
    return {
        "level": level, "reason": status.message, "active": values.get("active") == "true",
        "available": values.get("available") == "true", "risk": float(values.get("risk", "nan")),
    }  # fmt: skip


def stamp_ns(header: Any) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def rgb_to_image(image: npt.NDArray[np.uint8], header: Any, types: MessageTypes, encoding: str = "rgb8") -> Any:
    """(H, W, 3) uint8 RGB → Image (``rgb8`` or ``bgr8``), e.g. to write synthetic drives as bags."""
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"rgb_to_image writes rgb8 or bgr8, not {encoding!r}")
    pixels = image if encoding == "rgb8" else image[..., ::-1]
    return _image(header, types, np.ascontiguousarray(pixels), encoding, False)


def labels_to_image(labels: npt.NDArray[np.uint8], header: Any, types: MessageTypes) -> Any:
    """(H, W) uint8 labels (0 / 1 / 255) → mono8 Image."""
    return _image(header, types, np.ascontiguousarray(labels, np.uint8), "mono8", False)
