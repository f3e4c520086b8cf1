"""numpy ↔ ROS 2 messages, for rclpy's message classes and for the ``rosbags`` typestore classes alike.

Nothing here imports rclpy or rosbags: messages are read through their fields, and written through a
:class:`MessageTypes` that knows where the classes come from (:class:`RclpyTypes` or :class:`RosbagsTypes`). Every
message is constructed with all its fields by keyword (rosbags' classes have no defaults).

Input images (``sensor_msgs/msg/Image``) become (H, W, 3) uint8 RGB. Encodings (:data:`ENCODINGS`, matched without
regard to case), converted with OpenCV as ``cv_bridge`` / ``image_proc`` convert them:

- ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8`` (alpha dropped), ``mono8`` (grey replicated to three channels); ``8UC3``
  is read as ``bgr8`` and ``8UC1`` as ``mono8``.
- ``bayer_rggb8``, ``bayer_bggr8``, ``bayer_gbrg8``, ``bayer_grbg8``: bilinear demosaicing. OpenCV names a Bayer
  pattern by the second row's second and third pixels, so ROS ``bayer_rggb8`` is ``COLOR_BayerBG2RGB``,
  ``bayer_bggr8`` ``COLOR_BayerRG2RGB``, ``bayer_gbrg8`` ``COLOR_BayerGR2RGB`` and ``bayer_grbg8``
  ``COLOR_BayerGB2RGB`` (the mapping of ``cv_bridge`` and ``image_proc``). Any width and height.
- ``yuv422`` (UYVY byte order, ``COLOR_YUV2RGB_UYVY``) and ``yuv422_yuy2`` (YUYV, ``COLOR_YUV2RGB_YUY2``): two
  bytes a pixel, one U/V pair per two pixels, so the width must be even.
- ``rgb16``, ``bgr16``, ``mono16``: 16-bit samples in the byte order ``is_bigendian`` gives, scaled to 8 bits as
  ``round(value / 257)`` (0 → 0, 65535 → 255; OpenCV ``convertScaleAbs(alpha=1/257)``).

``is_bigendian`` has no effect on the 8-bit encodings and is accepted either way. Rows may be padded (``step`` ≥
width · bytes per pixel, any padding); the data must hold exactly ``step · height`` bytes. Any other encoding is
rejected naming it and listing the supported ones.

``sensor_msgs/msg/CompressedImage``: ``format`` naming ``jpeg``/``jpg`` or ``png`` (e.g. ``"jpeg"``,
``"rgb8; jpeg compressed bgr8"``); the data must be a JPEG or a PNG stream (either, whatever the format says),
decoded with OpenCV.

Frame limits (:class:`FrameLimits`, the node's ``max_frame_pixels`` and ``min_frame_side``): a frame of more than
``max_pixels`` pixels (default 4096 × 2160, DCI 4K), with a side under ``min_side`` pixels (default 32) or over the
pipeline's :data:`~meta_ood_perception.preprocessing.MAX_SIDE` is rejected. A raw Image is refused on its declared
``height`` and ``width`` before its data is touched; a compressed one on the size its header declares (JPEG
start-of-frame marker, PNG ``IHDR``) before it is decoded, so a small file declaring a huge frame costs no memory
and no time. Degenerate frames are rejected rather than answered: a JPEG without scan data (no start-of-scan
marker, or one followed by no entropy-coded bytes), a PNG without ``IDAT`` data, a stream without its end marker
(JPEG ``EOI``, PNG ``IEND``: OpenCV would decode the missing rest as grey), a header that declares no size, and
frames under the minimum side. Every problem raises :class:`~meta_ood_perception.errors.InputError` with one
line naming it.

Outputs: ``anomaly_mask`` mono8 (255 = kept anomaly, 0 otherwise), ``anomaly_score`` 32FC1 (native byte order,
``is_bigendian`` set accordingly), ``detections`` ``vision_msgs/msg/Detection2DArray`` (one detection per kept
component: bounding box centre and size in pixels, ``class_id`` ``"anomaly"``, score = 1 − P(false positive), ``id``
empty — the node does not track objects across frames, and vision_msgs leaves ``id`` empty then),
``emergency_brake`` ``diagnostic_msgs/msg/DiagnosticArray`` with one status (see :func:`brake_to_msg`). All outputs
carry the input frame's header.
"""

from __future__ import annotations

import array
import importlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from ..brake import BrakeHint
from ..errors import ConfigError, InputError
from ..preprocessing import MAX_PIXELS, MAX_SIDE
from ..reports import first_line

#: DCI 4K (4096 × 2160): the default largest frame, pixels.
DCI_4K_PIXELS = 4096 * 2160
#: Default smallest frame side, pixels.
MIN_FRAME_SIDE = 32

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
        out.frombytes(np.ascontiguousarray(data).data.cast("B"))  # one copy (``tobytes`` would add one)
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


@dataclass(frozen=True)
class FrameLimits:
    """Frame sizes accepted from a camera (see the module docstring).

    Attributes:
        max_pixels: most pixels (height · width) a frame may have; at most the pipeline's own limit
            (:data:`~meta_ood_perception.preprocessing.MAX_PIXELS`). Node parameter ``max_frame_pixels``.
        min_side: smallest height and width, pixels (≥ 1). Node parameter ``min_frame_side``.

    Raises:
        ConfigError: a value that is not an integer or out of range (``min_side`` ² must not exceed ``max_pixels``).
    """

    max_pixels: int = DCI_4K_PIXELS
    min_side: int = MIN_FRAME_SIDE

    def __post_init__(self) -> None:
        for name in ("max_pixels", "min_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"frame limit {name} must be an integer, got {value!r}")
        if self.min_side < 1:
            raise ConfigError(f"frame limit min_side must be at least 1 pixel, got {self.min_side}")
        if not self.min_side**2 <= self.max_pixels <= MAX_PIXELS:
            raise ConfigError(f"frame limit max_pixels must lie in [min_side² = {self.min_side**2}, {MAX_PIXELS}], "
                              f"got {self.max_pixels}")  # fmt: skip

    def problem(self, height: int, width: int) -> str | None:
        """Why a frame of ``height`` × ``width`` pixels is refused (the limit it breaks), or None if it fits."""
        if height * width > self.max_pixels:
            return f"{height * width} pixels, over the limit of {self.max_pixels} pixels (max_frame_pixels)"
        if min(height, width) < self.min_side:
            return f"a side under the minimum of {self.min_side} pixels (min_frame_side)"
        if max(height, width) > MAX_SIDE:
            return f"a side over the pipeline's limit of {MAX_SIDE} pixels"
        return None


#: The default limits: DCI 4K at most, 32 pixels a side at least.
DEFAULT_FRAME_LIMITS = FrameLimits()

#: (H, W·bytes per pixel) uint8 rows (a view, possibly with padded rows), width, big endian → (H, W, 3) uint8 RGB.
Converter = Callable[[npt.NDArray[np.uint8], int, bool], npt.NDArray[np.uint8]]


@dataclass(frozen=True)
class Encoding:
    """One supported ``sensor_msgs/msg/Image`` encoding.

    Attributes:
        bytes_per_pixel: bytes of one pixel in a row. convert: the :data:`Converter`.
        even_width: the width must be even (4:2:2 chroma: one U/V pair per two pixels).
    """

    bytes_per_pixel: int
    convert: Converter
    even_width: bool = False


def _pixels(rows: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """(H, W·c) rows → an (H, W, c) view, or (H, W) for one byte a pixel."""
    channels = rows.shape[1] // width
    return rows.reshape(rows.shape[0], width) if channels == 1 else rows.reshape(rows.shape[0], width, channels)


def _rgb8(rows: npt.NDArray[np.uint8], width: int, bigendian: bool) -> npt.NDArray[np.uint8]:
    return np.ascontiguousarray(_pixels(rows, width))


def _opencv(code: int) -> Converter:
    """A converter through ``cv2.cvtColor(pixels, code)``."""

    def convert(rows: npt.NDArray[np.uint8], width: int, bigendian: bool) -> npt.NDArray[np.uint8]:
        return np.asarray(cv2.cvtColor(_pixels(rows, width), code), dtype=np.uint8)

    return convert


def _sixteen_bit(code: int | None) -> Converter:
    """A converter of 16-bit samples: scaled to 8 bits (``round(value / 257)``), then ``cv2.cvtColor(code)``
    (None: already RGB)."""

    def convert(rows: npt.NDArray[np.uint8], width: int, bigendian: bool) -> npt.NDArray[np.uint8]:
        samples = rows.view(np.dtype(">u2" if bigendian else "<u2"))
        if not samples.dtype.isnative or samples.strides[0] % samples.itemsize:  # OpenCV: native, aligned rows
            samples = samples.astype(np.uint16)
        scaled = np.asarray(cv2.convertScaleAbs(samples, alpha=1.0 / 257.0), dtype=np.uint8)
        return _rgb8(scaled, width, bigendian) if code is None else _opencv(code)(scaled, width, bigendian)

    return convert


_BGR8 = Encoding(3, _opencv(cv2.COLOR_BGR2RGB))
_MONO8 = Encoding(1, _opencv(cv2.COLOR_GRAY2RGB))

#: Every supported input encoding, as ROS names it, once (see the module docstring).
ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(3, _rgb8),
    "bgr8": _BGR8,
    "rgba8": Encoding(4, _opencv(cv2.COLOR_RGBA2RGB)),
    "bgra8": Encoding(4, _opencv(cv2.COLOR_BGRA2RGB)),
    "mono8": _MONO8,
    "8UC3": _BGR8,
    "8UC1": _MONO8,
    "bayer_rggb8": Encoding(1, _opencv(cv2.COLOR_BayerBG2RGB)),
    "bayer_bggr8": Encoding(1, _opencv(cv2.COLOR_BayerRG2RGB)),
    "bayer_gbrg8": Encoding(1, _opencv(cv2.COLOR_BayerGR2RGB)),
    "bayer_grbg8": Encoding(1, _opencv(cv2.COLOR_BayerGB2RGB)),
    "yuv422": Encoding(2, _opencv(cv2.COLOR_YUV2RGB_UYVY), even_width=True),
    "yuv422_yuy2": Encoding(2, _opencv(cv2.COLOR_YUV2RGB_YUY2), even_width=True),
    "rgb16": Encoding(6, _sixteen_bit(None)),
    "bgr16": Encoding(6, _sixteen_bit(cv2.COLOR_BGR2RGB)),
    "mono16": Encoding(2, _sixteen_bit(cv2.COLOR_GRAY2RGB)),
}
_BY_NAME = {name.lower(): encoding for name, encoding in ENCODINGS.items()}


def _buffer(data: Any) -> npt.NDArray[np.uint8]:
    """A ``uint8[]`` message field → flat uint8 array (a view of numpy arrays, bytes and ``array.array``)."""
    try:
        if isinstance(data, np.ndarray):
            return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else data.astype(np.uint8).reshape(-1)
        if isinstance(data, bytes | bytearray | memoryview | array.array):
            return np.frombuffer(data, dtype=np.uint8)
        return np.asarray(list(data), dtype=np.uint8)
    except (TypeError, ValueError, OverflowError) as err:
        raise InputError(f"image data is not a uint8[] field: {first_line(err)}") from None


def _dimensions(msg: Any) -> tuple[int, int, int]:
    """An Image's (height, width, step)."""
    try:
        return int(msg.height), int(msg.width), int(msg.step)
    except (TypeError, ValueError, OverflowError) as err:
        raise InputError(f"image height / width / step are not integers: {first_line(err)}") from None


def image_to_rgb(msg: Any, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> npt.NDArray[np.uint8]:
    """``sensor_msgs/msg/Image`` → (H, W, 3) uint8 RGB (see the module docstring for what is accepted).

    Raises:
        InputError: unsupported encoding, a size outside ``limits`` (checked before the data is read), an odd width
            for yuv422, a step shorter than a row, data that is not ``step · height`` bytes.
    """
    encoding = _BY_NAME.get(str(msg.encoding).lower())
    if encoding is None:
        raise InputError(f"unsupported image encoding {msg.encoding!r} (supported: {', '.join(ENCODINGS)})")
    height, width, step = _dimensions(msg)
    if height <= 0 or width <= 0:
        raise InputError(f"image has zero size ({height}×{width})")
    problem = limits.problem(height, width)
    if problem:
        raise InputError(f"{msg.encoding} image of {height}×{width} pixels: {problem}")
    if encoding.even_width and width % 2:
        raise InputError(f"{msg.encoding} image has an odd width {width} (4:2:2 needs pairs of pixels)")
    row = width * encoding.bytes_per_pixel
    if step < row:
        raise InputError(f"image step {step} is smaller than width·bytes per pixel = {row} for {msg.encoding}")
    data = _buffer(msg.data)
    if data.size != step * height:
        raise InputError(f"image data holds {data.size} bytes, step·height = {step * height} expected")
    try:
        return encoding.convert(data.reshape(height, step)[:, :row], width, bool(msg.is_bigendian))
    except cv2.error as err:
        raise InputError(f"cannot convert {msg.encoding} image of {height}×{width}: {first_line(err)}") from None


def compressed_to_rgb(msg: Any, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> npt.NDArray[np.uint8]:
    """``sensor_msgs/msg/CompressedImage`` (JPEG / PNG) → (H, W, 3) uint8 RGB.

    Raises:
        InputError: an unsupported format, no data, data that is neither JPEG nor PNG, a declared size outside
            ``limits`` (checked before decoding), a truncated or degenerate stream, a stream OpenCV cannot decode.
    """
    fmt = str(msg.format).lower()
    if not any(k in fmt for k in ("jpeg", "jpg", "png")):
        raise InputError(f"unsupported CompressedImage format {msg.format!r} (supported: jpeg, png)")
    data = _buffer(msg.data)
    what = f"CompressedImage ({msg.format!r}, {data.size} bytes)"
    if data.size == 0:
        raise InputError(f"CompressedImage ({msg.format!r}) holds no data")
    raw = data.tobytes()
    layout = _jpeg_layout(raw) if raw[:2] == _JPEG_SOI else _png_layout(raw) if raw[:8] == _PNG_SIGNATURE else None
    if layout is None:
        raise InputError(f"cannot decode {what}: neither JPEG nor PNG data")
    size, degenerate = layout
    problem = None if size is None else limits.problem(*size)
    if size is not None and problem:
        raise InputError(f"{what} declares {size[0]}×{size[1]} pixels: {problem}")
    truncated = _truncated(raw)
    if truncated:
        raise InputError(f"{what} is a truncated {truncated}")
    if size is None:
        raise InputError(f"cannot decode {what}: its header declares no frame size")
    if degenerate:
        raise InputError(f"{what}: {degenerate}")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as err:
        raise InputError(f"cannot decode {what}: {first_line(err)}") from None
    if bgr is None or bgr.size == 0:
        raise InputError(f"cannot decode {what}")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


_JPEG_SOI, _JPEG_EOI = b"\xff\xd8", b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (SOF0 … SOF15 less DHT, JPG and DAC), start of scan, markers without a length.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_SOS = 0xDA
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def _truncated(raw: bytes) -> str | None:
    """Name the format ("JPEG" / "PNG") when the stream lacks its end marker, else None (OpenCV would decode the
    missing rest as grey)."""
    tail = raw[-32:]
    if raw[:2] == _JPEG_SOI and _JPEG_EOI not in tail:
        return "JPEG (no end-of-image marker)"
    if raw[:8] == _PNG_SIGNATURE and b"IEND" not in tail:
        return "PNG (no IEND chunk)"
    return None


def _jpeg_layout(raw: bytes) -> tuple[tuple[int, int] | None, str | None]:
    """Walk a JPEG's marker segments up to the first scan, as libjpeg reads them (bytes between segments are
    skipped): ((height, width) of the first start-of-frame marker or None, why the stream has no image data or
    None). Only segment headers are read, never the entropy-coded data."""
    size: tuple[int, int] | None = None
    i, n = 2, len(raw)
    while i + 1 < n:
        if raw[i] != 0xFF:  # extraneous bytes: libjpeg skips to the next marker
            i = raw.find(b"\xff", i)
            if i < 0:
                break
            continue
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x00:  # a stuffed 0xFF outside a scan: extraneous
            i += 2
            continue
        if marker == _JPEG_EOI[1]:
            break
        if marker in _STANDALONE:
            i += 2
            continue
        if i + 4 > n:
            break
        length = int.from_bytes(raw[i + 2 : i + 4], "big")
        if marker in _SOF and size is None and i + 9 <= n:
            size = int.from_bytes(raw[i + 5 : i + 7], "big"), int.from_bytes(raw[i + 7 : i + 9], "big")
        if marker == _SOS:
            scan = i + 2 + length  # the first entropy-coded byte; a marker there means an empty scan
            empty = scan + 1 >= n or (raw[scan] == 0xFF and raw[scan + 1] != 0x00)
            return size, "JPEG has no scan data (no entropy-coded bytes after the start of scan)" if empty else None
        i += 2 + max(length, 2)
    return size, "JPEG has no scan data (no start-of-scan marker)"


def _png_layout(raw: bytes) -> tuple[tuple[int, int] | None, str | None]:
    """Walk a PNG's chunks up to the first ``IDAT``: ((height, width) from ``IHDR`` or None, why the stream has no
    image data or None). Only chunk headers are read."""
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        return None, None
    size = int.from_bytes(raw[20:24], "big"), int.from_bytes(raw[16:20], "big")
    i = 8
    while i + 8 <= len(raw):
        length, kind = int.from_bytes(raw[i : i + 4], "big"), raw[i + 4 : i + 8]
        if kind == b"IDAT" and length > 0:
            return size, None
        if kind == b"IEND":
            break
        i += 12 + length
    return size, "PNG has no image data (no IDAT chunk)"


def message_to_rgb(msg: Any, limits: FrameLimits = DEFAULT_FRAME_LIMITS) -> npt.NDArray[np.uint8]:
    """Image or CompressedImage (told apart by their fields) → (H, W, 3) uint8 RGB, refused outside ``limits``."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg, limits)
    return image_to_rgb(msg, limits)


def image_to_labels(msg: Any) -> npt.NDArray[np.uint8]:
    """A mono8 label image (0 in-distribution, 1 anomaly, 255 void) → (H, W) uint8."""
    if str(msg.encoding).lower() not in ("mono8", "8uc1"):
        raise InputError(f"label image must be mono8, got {msg.encoding!r}")
    height, width, step = _dimensions(msg)
    data = _buffer(msg.data)
    if height <= 0 or width <= 0 or step < width or data.size != step * height:
        raise InputError(f"label image {height}×{width}, step {step}, {data.size} bytes is inconsistent")
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
    """(H, W) uint8 or bool mask (non-zero = anomaly) → mono8 Image, 255 = anomaly."""
    pixels = np.ascontiguousarray(mask)
    if pixels.dtype in (np.uint8, np.bool_):  # OpenCV: 25× faster than np.where at 4K
        binary = np.asarray(cv2.threshold(pixels.view(np.uint8), 0, 255, cv2.THRESH_BINARY)[1], dtype=np.uint8)
    else:
        binary = np.where(pixels != 0, np.uint8(255), np.uint8(0))
    return _image(header, types, binary, "mono8", False)


def score_to_msg(score: npt.NDArray[np.float32], header: Any, types: MessageTypes) -> Any:
    """(H, W) float32 score → 32FC1 Image in native byte order."""
    return _image(header, types, np.ascontiguousarray(score, np.float32), "32FC1", sys.byteorder == "big")


def msg_to_score(msg: Any) -> npt.NDArray[np.float32]:
    """32FC1 Image → (H, W) float32 (byte order from ``is_bigendian``)."""
    if msg.encoding != "32FC1":
        raise InputError(f"score image must be 32FC1, got {msg.encoding!r}")
    dtype = np.dtype(">f4" if msg.is_bigendian else "<f4")
    rows = _buffer(msg.data).reshape(int(msg.height), int(msg.step))[:, : int(msg.width) * 4]
    return np.ascontiguousarray(rows).view(dtype).astype(np.float32).reshape(int(msg.height), int(msg.width))


def detections_to_msg(components: Iterable[Any], header: Any, types: MessageTypes) -> Any:
    """Kept components (objects with ``bbox`` (x0, y0, x1, y1 inclusive), ``p_false_positive``, ``kept``)
    → ``vision_msgs/msg/Detection2DArray``; ``Detection2D.id`` is empty (no tracking across frames: the component
    ids are per frame, and vision_msgs asks for an empty id when detections are not tracked)."""
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
            t("vision_msgs/msg/Detection2D")(header=copy_header(header, types), results=[hypothesis], bbox=bbox, id="")
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
    """STALE (3) perception unavailable, ERROR (2) brake hint active (state ``brake``), WARN (1) a hazard seen but
    not (yet) worth braking (state ``warn``: persistent, risk below ``brake.min_risk``; or ``candidate``: a hit not
    yet persistent), OK (0) clear."""
    if not hint.available:
        return STALE
    if hint.active:
        return ERROR
    return WARN if hint.seen or hint.hit else OK


def brake_to_msg(hint: BrakeHint, header: Any, types: MessageTypes, name: str = "emergency_brake") -> Any:
    """The brake hint as a ``DiagnosticArray`` stamped with the frame's header: one status, level
    :func:`brake_level`, message = the reason, values ``state`` (clear / candidate / warn / brake / unavailable),
    ``active``, ``available``, ``seen``, ``risk``, ``hit``, ``hits_in_window``, ``components``."""
    values = {
        "state": hint.state, "active": hint.active, "available": hint.available, "seen": hint.seen,
        "risk": float(hint.risk), "hit": hint.hit, "hits_in_window": hint.hits_in_window,
        "components": ",".join(map(str, hint.component_ids)),
    }  # fmt: skip
    status = diagnostic_status(types, brake_level(hint), name, hint.reason, str(header.frame_id), values)
    return diagnostic_array(header, [status], types)


def msg_to_brake(msg: Any) -> dict[str, Any]:
    """Read a brake DiagnosticArray back: ``{"level", "reason", "state", "active", "available", "seen", "risk"}``."""
    status = msg.status[0]
    values = {kv.key: kv.value for kv in status.values}
    level = status.level[0] if isinstance(status.level, bytes) else int(status.level)
    return {
        "level": level, "reason": status.message, "state": values.get("state", ""),
        "active": values.get("active") == "true", "available": values.get("available") == "true",
        "seen": values.get("seen") == "true", "risk": float(values.get("risk", "nan")),
    }  # fmt: skip


def stamp_ns(header: Any) -> int:
    """Header stamp in integer nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def rgb_to_image(image: npt.NDArray[np.uint8], header: Any, types: MessageTypes, encoding: str = "rgb8") -> Any:
    """(H, W, 3) uint8 RGB → Image (``rgb8`` or ``bgr8``), e.g. to write synthetic drives as bags."""
    if encoding not in ("rgb8", "bgr8"):
        raise InputError(f"rgb_to_image writes rgb8 or bgr8, not {encoding!r}")
    pixels = image if encoding == "rgb8" else image[..., ::-1]
    return _image(header, types, np.ascontiguousarray(pixels), encoding, False)


def labels_to_image(labels: npt.NDArray[np.uint8], header: Any, types: MessageTypes) -> Any:
    """(H, W) uint8 labels (0 / 1 / 255) → mono8 Image."""
    return _image(header, types, np.ascontiguousarray(labels, np.uint8), "mono8", False)
