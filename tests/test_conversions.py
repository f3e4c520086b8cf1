"""Message conversions with the rosbags typestore classes (serialized to CDR and back, as in a bag)."""

from __future__ import annotations

import array
import types as pytypes

import cv2
import numpy as np
import pytest

from meta_ood_perception.brake import BrakeHint
from meta_ood_perception.pipeline import ComponentInfo
from meta_ood_perception.ros import conversions as cv

T = cv.RosbagsTypes()


def header(sec=12, nanosec=345, frame_id="cam_front"):
    return cv.copy_header(pytypes.SimpleNamespace(stamp=pytypes.SimpleNamespace(sec=sec, nanosec=nanosec),
                                                  frame_id=frame_id), T)  # fmt: skip


def roundtrip(msg):
    store = T.typestore
    return store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def raw_image(pixels, encoding, step=None, data=None, height=None, width=None, bigendian=0):
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1)
    step = step or row.shape[1]
    padded = np.zeros((h, max(step, row.shape[1])), np.uint8)
    padded[:, : row.shape[1]] = row
    padded = padded[:, :step]
    return T.get("sensor_msgs/msg/Image")(
        header=header(), height=height if height is not None else h, width=width if width is not None else w,
        encoding=encoding, is_bigendian=bigendian, step=step, data=padded.reshape(-1) if data is None else data,
    )  # fmt: skip


RGB = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("encoding", "pixels"),
    [
        ("rgb8", RGB),
        ("bgr8", RGB[..., ::-1]),
        ("rgba8", np.dstack([RGB, np.full((5, 7), 9, np.uint8)])),
        ("bgra8", np.dstack([RGB[..., ::-1], np.full((5, 7), 9, np.uint8)])),
    ],
)
@pytest.mark.parametrize("pad", [0, 5])
def test_color_encodings_with_row_padding(encoding, pixels, pad):
    msg = roundtrip(raw_image(np.ascontiguousarray(pixels), encoding, step=pixels.shape[1] * pixels.shape[2] + pad))
    np.testing.assert_array_equal(cv.image_to_rgb(msg), RGB)


def test_mono8_and_big_endian_flag_on_8_bit_data():
    gray = RGB[..., 0].copy()
    out = cv.image_to_rgb(raw_image(gray, "mono8", bigendian=1))
    assert out.shape == (5, 7, 3) and (out == gray[..., None]).all()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
        ({"encoding": "16UC1"}, "unsupported image encoding"),
        ({"step": 10}, "step 10 is smaller"),
        ({"data": np.zeros(10, np.uint8)}, "holds 10 bytes"),
        ({"data": np.zeros(5 * 21 + 1, np.uint8)}, "holds 106 bytes"),
        ({"height": 0}, "zero size"),
        ({"width": 100_000}, "limit"),
    ],
)
def test_bad_images_raise_one_line_errors(kw, message):
    encoding = kw.pop("encoding", "rgb8")
    msg = raw_image(RGB, encoding, **kw)
    with pytest.raises(ValueError, match=message):
        cv.image_to_rgb(msg)


def compressed(data, fmt):
    return T.get("sensor_msgs/msg/CompressedImage")(header=header(), format=fmt, data=np.frombuffer(data, np.uint8))


def test_compressed_png_and_jpeg():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    np.testing.assert_array_equal(cv.message_to_rgb(roundtrip(compressed(png.tobytes(), "png"))), RGB)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    ok, jpg = cv2.imencode(".jpg", smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = cv.message_to_rgb(compressed(jpg.tobytes(), "rgb8; jpeg compressed bgr8"))
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).max() <= 8


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "jpeg", "no data"),
        (b"\xff\xd8\xff garbage\xff\xd9", "jpeg", "cannot decode"),
        (b"\xff\xd8\xff garbage", "jpeg", "truncated JPEG"),
        (b"abc", "theora", "unsupported CompressedImage format"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x00\x00\x00\x01\x00\x00", "png", "larger than"),
    ],
)
def test_bad_compressed_images(data, fmt, message):
    with pytest.raises(ValueError, match=message):
        cv.compressed_to_rgb(compressed(data, fmt))


def test_outputs_carry_the_header_and_round_trip():
    h = header(sec=77, nanosec=5, frame_id="cam_left")
    mask = np.zeros((6, 9), np.uint8)
    mask[2:4, 3:8] = 1
    m = roundtrip(cv.mask_to_msg(mask, h, T))
    assert (m.encoding, m.height, m.width, m.step) == ("mono8", 6, 9, 9)
    assert m.header.stamp.sec == 77 and m.header.stamp.nanosec == 5 and m.header.frame_id == "cam_left"
    np.testing.assert_array_equal(cv.image_to_labels(m), mask * 255)
    score = np.random.default_rng(1).random((6, 9)).astype(np.float32)
    s = roundtrip(cv.score_to_msg(score, h, T))
    assert s.encoding == "32FC1" and s.step == 36
    np.testing.assert_array_equal(cv.msg_to_score(s), score)
    comps = [
        ComponentInfo(1, (3, 2, 7, 3), 10, (5.0, 2.5), 0.1, True, 10),
        ComponentInfo(2, (0, 0, 0, 0), 1, (0.0, 0.0), 0.9, False, 0),
    ]
    d = roundtrip(cv.detections_to_msg(comps, h, T))
    assert len(d.detections) == 1 and d.header.stamp.sec == 77
    det = d.detections[0]
    assert det.id == "1" and det.bbox.size_x == 5 and det.bbox.size_y == 2
    assert (det.bbox.center.position.x, det.bbox.center.position.y) == (5.0, 2.5)
    assert det.results[0].hypothesis.class_id == "anomaly" and det.results[0].hypothesis.score == pytest.approx(0.9)
    hint = BrakeHint(True, 0.8, "brake: hazard in corridor", True, True, 3, (1,))
    b = roundtrip(cv.brake_to_msg(hint, h, T))
    assert b.header.stamp.sec == 77 and b.status[0].level == cv.ERROR
    assert cv.msg_to_brake(b) == {"level": 2, "reason": "brake: hazard in corridor", "active": True,
                                  "available": True, "risk": 0.8}  # fmt: skip
    down = cv.msg_to_brake(cv.brake_to_msg(BrakeHint(False, 1.0, "perception unavailable: x", False), h, T))
    assert down["level"] == cv.STALE and not down["available"]


def test_data_field_types_of_both_libraries_are_read():
    msg = raw_image(RGB, "rgb8")
    for data in (bytes(msg.data), array.array("B", bytes(msg.data)), list(msg.data), memoryview(bytes(msg.data))):
        fake = pytypes.SimpleNamespace(**{**msg.__dict__, "data": data}) if hasattr(msg, "__dict__") else None
        if fake is None:
            fake = pytypes.SimpleNamespace(encoding="rgb8", height=5, width=7, step=21, is_bigendian=0, data=data)
        np.testing.assert_array_equal(cv.image_to_rgb(fake), RGB)
    assert isinstance(cv.RclpyTypes().uint8_array(np.arange(3, dtype=np.uint8)), array.array)
    assert cv.RclpyTypes().byte(2) == b"\x02"
