"""Message conversions with the rosbags typestore classes (serialized to CDR and back, as in a bag)."""

from __future__ import annotations

import array
import re
import types as pytypes

import cv2
import numpy as np
import pytest

from meta_ood_perception.brake import BrakeHint
from meta_ood_perception.errors import ConfigError, InputError
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
#: limits that admit the small test frames (the default minimum side is 32 pixels)
SMALL = cv.FrameLimits(min_side=1)


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
    np.testing.assert_array_equal(cv.image_to_rgb(msg, SMALL), RGB)


def test_mono8_and_big_endian_flag_on_8_bit_data():
    gray = RGB[..., 0].copy()
    out = cv.image_to_rgb(raw_image(gray, "mono8", bigendian=1), SMALL)
    assert out.shape == (5, 7, 3) and (out == gray[..., None]).all()


#: encoding → (bytes per pixel, the direct OpenCV conversion of a contiguous (H, W·bpp) buffer, big endian) → RGB
def _sixteen(code):
    def convert(buf, w, big):
        samples = buf.view(">u2" if big else "<u2").astype(np.uint16)
        scaled = cv2.convertScaleAbs(samples, alpha=1 / 257).reshape(buf.shape[0], w, -1)
        return scaled if code is None else cv2.cvtColor(scaled, code)

    return convert


def _cvt(code, channels):
    return lambda buf, w, big: cv2.cvtColor(buf.reshape(buf.shape[0], w, channels)[..., 0] if channels == 1
                                            else buf.reshape(buf.shape[0], w, channels), code)  # fmt: skip


OPENCV = {
    "rgb8": (3, lambda buf, w, big: buf.reshape(buf.shape[0], w, 3)),
    "bgr8": (3, _cvt(cv2.COLOR_BGR2RGB, 3)),
    "8UC3": (3, _cvt(cv2.COLOR_BGR2RGB, 3)),
    "rgba8": (4, _cvt(cv2.COLOR_RGBA2RGB, 4)),
    "bgra8": (4, _cvt(cv2.COLOR_BGRA2RGB, 4)),
    "mono8": (1, _cvt(cv2.COLOR_GRAY2RGB, 1)),
    "8UC1": (1, _cvt(cv2.COLOR_GRAY2RGB, 1)),
    "bayer_rggb8": (1, _cvt(cv2.COLOR_BayerBG2RGB, 1)),
    "bayer_bggr8": (1, _cvt(cv2.COLOR_BayerRG2RGB, 1)),
    "bayer_gbrg8": (1, _cvt(cv2.COLOR_BayerGR2RGB, 1)),
    "bayer_grbg8": (1, _cvt(cv2.COLOR_BayerGB2RGB, 1)),
    "yuv422": (2, _cvt(cv2.COLOR_YUV2RGB_UYVY, 2)),
    "yuv422_yuy2": (2, _cvt(cv2.COLOR_YUV2RGB_YUY2, 2)),
    "rgb16": (6, _sixteen(None)),
    "bgr16": (6, _sixteen(cv2.COLOR_BGR2RGB)),
    "mono16": (2, _sixteen(cv2.COLOR_GRAY2RGB)),
}


def test_the_encoding_table_names_each_supported_encoding_once():
    assert set(OPENCV) == set(cv.ENCODINGS) and len({e.lower() for e in cv.ENCODINGS}) == len(cv.ENCODINGS)
    assert all(cv.ENCODINGS[name].bytes_per_pixel == bpp for name, (bpp, _) in OPENCV.items())


@pytest.mark.parametrize("encoding", list(OPENCV))
@pytest.mark.parametrize("pad", [0, 5, 6])
@pytest.mark.parametrize("bigendian", [0, 1])
def test_every_encoding_equals_the_direct_opencv_conversion(encoding, pad, bigendian):
    bpp, convert = OPENCV[encoding]
    height, width = (5, 8) if encoding.startswith("yuv") else (5, 7)  # odd sizes where the encoding allows
    buf = np.random.default_rng(len(encoding) + pad).integers(0, 256, (height, width * bpp), dtype=np.uint8)
    msg = roundtrip(
        raw_image(buf, encoding.upper() if pad else encoding, step=width * bpp + pad, width=width, bigendian=bigendian)
    )
    out = cv.image_to_rgb(msg, SMALL)
    expected = convert(buf, width, bool(bigendian) and encoding.endswith("16"))
    assert out.dtype == np.uint8 and out.shape == (height, width, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_colours_they_sampled(pattern):
    colour = np.array([200, 100, 30], np.uint8)  # R, G, B
    height, width = 12, 15
    mosaic = np.zeros((height, width), np.uint8)
    for k, channel in enumerate(pattern):  # the 2×2 tile, row by row, as the ROS encoding names it
        mosaic[k // 2 :: 2, k % 2 :: 2] = colour["rgb".index(channel)]
    out = cv.image_to_rgb(raw_image(mosaic, f"bayer_{pattern}8"), SMALL)
    assert (out[2:-2, 2:-2] == colour).all()


@pytest.mark.parametrize(("encoding", "luma_at"), [("yuv422", 1), ("yuv422_yuy2", 0)])
def test_yuv422_byte_orders(encoding, luma_at):
    height, width = 4, 16
    luma = np.arange(16, 16 + height * width * 3, 3, dtype=np.uint8).reshape(height, width)
    buf = np.full((height, width * 2), 128, np.uint8)  # U = V = 128: no colour
    buf[:, luma_at::2] = luma
    out = cv.image_to_rgb(raw_image(buf, encoding, width=width), SMALL).astype(int)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()  # grey
    order = np.argsort(luma, axis=None)
    assert (np.diff(out[..., 0].reshape(-1)[order]) >= 0).all() and out[..., 0].max() > out[..., 0].min() + 100


@pytest.mark.parametrize("bigendian", [0, 1])
def test_sixteen_bit_samples_scale_to_rounded_value_over_257_in_their_byte_order(bigendian):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    buf = values.astype(">u2" if bigendian else "<u2").view(np.uint8)
    out = cv.image_to_rgb(raw_image(buf, "mono16", width=256, bigendian=bigendian), SMALL)
    expected = ((2 * values.astype(np.int64) + 257) // 514).astype(np.uint8)  # round(v / 257), exact
    assert (out == expected[..., None]).all() and expected[-1, -1] == 255
    pixel = np.array([[[65535, 0, 2570]]], np.uint16).astype(">u2" if bigendian else "<u2").view(np.uint8)
    assert cv.image_to_rgb(raw_image(pixel, "rgb16", width=1, bigendian=bigendian), SMALL).tolist() == [[[255, 0, 10]]]
    assert cv.image_to_rgb(raw_image(pixel, "bgr16", width=1, bigendian=bigendian), SMALL).tolist() == [[[10, 0, 255]]]


def test_yuv422_needs_an_even_width_and_unknown_encodings_list_the_supported_ones():
    with pytest.raises(InputError, match="yuv422 image has an odd width 7"):
        cv.image_to_rgb(raw_image(np.zeros((4, 14), np.uint8), "yuv422", width=7), SMALL)
    with pytest.raises(InputError, match="unsupported image encoding 'bayer_rggb16'") as err:
        cv.image_to_rgb(raw_image(np.zeros((4, 14), np.uint8), "bayer_rggb16", width=7), SMALL)
    assert all(name in str(err.value) for name in cv.ENCODINGS)


class _Untouchable:
    """An Image whose data must not be read."""

    encoding, is_bigendian = "rgb8", 0

    def __init__(self, height, width):
        self.height, self.width, self.step = height, width, width * 3

    @property
    def data(self):
        raise AssertionError("the data was read")


def test_raw_frames_outside_the_limits_are_refused_before_their_data_is_read():
    with pytest.raises(InputError, match=r"rgb8 image of 4000×4000 pixels: 16000000 pixels, over the limit of 8847360"):
        cv.image_to_rgb(_Untouchable(4000, 4000))
    with pytest.raises(InputError, match="rgb8 image of 1×1 pixels: a side under the minimum of 32 pixels"):
        cv.image_to_rgb(_Untouchable(1, 1))
    with pytest.raises(InputError, match="over the limit of 1000"):
        cv.message_to_rgb(_Untouchable(32, 32), cv.FrameLimits(max_pixels=1000, min_side=8))
    uhd = np.random.default_rng(5).integers(0, 256, (2160, 3840, 3), dtype=np.uint8)  # 4K UHD fits by default
    np.testing.assert_array_equal(cv.message_to_rgb(raw_image(uhd, "rgb8")), uhd)
    dci = cv.message_to_rgb(raw_image(np.zeros((2160, 4096), np.uint8), "mono8"))
    assert dci.shape == (2160, 4096, 3)


def test_frame_limits_defaults_and_validation():
    limits = cv.FrameLimits()
    assert (limits.max_pixels, limits.min_side) == (4096 * 2160, 32) == (8_847_360, 32)
    assert limits.problem(2160, 4096) is None and limits.problem(32, 32) is None
    assert "over the limit" in limits.problem(2161, 4096) and "minimum" in limits.problem(31, 1000)
    for kw, text in [({"min_side": 0}, "min_side"), ({"max_pixels": 1000}, "max_pixels"),
                     ({"max_pixels": 10**9}, "max_pixels"), ({"min_side": 2.5}, "integer"),
                     ({"max_pixels": True}, "integer")]:  # fmt: skip
        with pytest.raises(ConfigError, match=text):
            cv.FrameLimits(**kw)
    with pytest.raises(AttributeError):
        limits.min_side = 1


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"encoding": "yuv420"}, "unsupported image encoding 'yuv420' (supported: rgb8, bgr8, "),
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
    with pytest.raises(InputError, match=re.escape(message)) as err:
        cv.image_to_rgb(msg, SMALL)
    assert "\n" not in str(err.value)


def compressed(data, fmt):
    return T.get("sensor_msgs/msg/CompressedImage")(header=header(), format=fmt, data=np.frombuffer(data, np.uint8))


def test_compressed_png_and_jpeg():
    ok, png = cv2.imencode(".png", RGB[..., ::-1])
    assert ok
    np.testing.assert_array_equal(cv.message_to_rgb(roundtrip(compressed(png.tobytes(), "png")), SMALL), RGB)
    smooth = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (32, 1, 3))
    ok, jpg = cv2.imencode(".jpg", smooth[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = cv.message_to_rgb(compressed(jpg.tobytes(), "rgb8; jpeg compressed bgr8"), SMALL)
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).max() <= 8


def _jpeg(pixels: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(pixels[..., ::-1]))
    assert ok
    return data.tobytes()


def _segment_end(jpeg: bytes, marker: bytes) -> int:
    """Offset just after the marker segment ``marker`` (its 2-byte length counts itself)."""
    at = jpeg.index(marker)
    return at + 2 + int.from_bytes(jpeg[at + 2 : at + 4], "big")


def _declaring(jpeg: bytes, height: int, width: int) -> bytes:
    """The JPEG with its start-of-frame marker declaring ``height`` × ``width``."""
    out = bytearray(jpeg)
    sof = out.index(b"\xff\xc0")
    out[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


SMALL_JPEG = _jpeg(np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8))
OK_PNG = cv2.imencode(".png", np.zeros((40, 40, 3), np.uint8))[1].tobytes()
BIG_APP = b"".join(b"\xff\xe1" + (65535).to_bytes(2, "big") + bytes(65533) for _ in range(2))  # 128 KiB of APP1


@pytest.mark.parametrize(
    ("data", "fmt", "message"),
    [
        (b"", "jpeg", "no data"),
        (b"\xff\xd8\xff garbage\xff\xd9", "jpeg", "declares no frame size"),
        (b"\xff\xd8\xff garbage", "jpeg", "truncated JPEG"),
        (b"abc", "theora", "unsupported CompressedImage format"),
        (b"BM" + bytes(60), "png", "neither JPEG nor PNG"),
        (cv2.imencode(".bmp", RGB)[1].tobytes(), "jpeg", "neither JPEG nor PNG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x01\x00\x00\x00\x01\x00\x00", "png", "over the limit"),
        (_declaring(SMALL_JPEG, 4000, 4000), "jpeg", "declares 4000×4000 pixels: 16000000 pixels, over the limit of"),
        (_declaring(SMALL_JPEG, 0, 640), "jpeg", "declares 0×640 pixels: a side under the minimum"),
        (_declaring(SMALL_JPEG, 24, 640), "jpeg", "a side under the minimum of 32 pixels"),
        (_declaring(SMALL_JPEG, 32, 20_000), "jpeg", "a side over the pipeline's limit of 16384"),
        # the size is found past extraneous bytes and past 128 KiB of APP segments (libjpeg reads both)
        (SMALL_JPEG[:2] + b"junk" + BIG_APP + _declaring(SMALL_JPEG, 4000, 4000)[2:], "jpeg", "4000×4000"),
        # headers and the end marker, no scan: OpenCV would answer a grey frame or nothing
        (SMALL_JPEG[: SMALL_JPEG.index(b"\xff\xda")] + b"\xff\xd9", "jpeg", "JPEG has no scan data"),
        (SMALL_JPEG[: _segment_end(SMALL_JPEG, b"\xff\xda")] + b"\xff\xd9", "jpeg", "JPEG has no scan data"),
        (OK_PNG[: OK_PNG.index(b"IDAT") - 4] + OK_PNG[OK_PNG.index(b"IEND") - 4 :], "png", "PNG has no image data"),
        (OK_PNG[:8] + OK_PNG[33:], "png", "declares no frame size"),
    ],
)
def test_bad_compressed_images(data, fmt, message, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decoding)  # every refusal comes before decoding
    with pytest.raises(InputError, match=re.escape(message)) as err:
        cv.compressed_to_rgb(compressed(data, fmt))
    assert "\n" not in str(err.value)


def test_a_stream_opencv_cannot_decode():
    corrupt = bytearray(SMALL_JPEG)
    corrupt[corrupt.index(b"\xff\xc0") + 4] = 3  # a sample precision libjpeg refuses
    with pytest.raises(InputError, match="cannot decode CompressedImage"):
        cv.compressed_to_rgb(compressed(bytes(corrupt), "jpeg"), SMALL)


def test_a_compressed_frame_at_the_limits_is_decoded():
    image = np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    out = cv.compressed_to_rgb(compressed(_jpeg(image), "jpeg"), cv.FrameLimits(max_pixels=32 * 48))
    assert out.shape == (32, 48, 3) and out.flags.c_contiguous
    with pytest.raises(InputError, match="1536 pixels, over the limit of 1535 pixels"):
        cv.compressed_to_rgb(compressed(_jpeg(image), "jpeg"), cv.FrameLimits(max_pixels=32 * 48 - 1))
    with pytest.raises(InputError, match="under the minimum of 33"):
        cv.compressed_to_rgb(compressed(_jpeg(image), "png jpeg"), cv.FrameLimits(min_side=33))


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
    assert det.id == "" and det.bbox.size_x == 5 and det.bbox.size_y == 2  # id: no tracking (vision_msgs)
    assert (det.bbox.center.position.x, det.bbox.center.position.y) == (5.0, 2.5)
    assert det.results[0].hypothesis.class_id == "anomaly" and det.results[0].hypothesis.score == pytest.approx(0.9)
    hint = BrakeHint(True, 0.8, "brake: hazard in corridor", True, True, 3, (1,))
    b = roundtrip(cv.brake_to_msg(hint, h, T))
    assert b.header.stamp.sec == 77 and b.status[0].level == cv.ERROR
    assert cv.msg_to_brake(b) == {"level": 2, "reason": "brake: hazard in corridor", "state": "brake", "active": True,
                                  "available": True, "seen": False, "risk": 0.8}  # fmt: skip
    down = cv.msg_to_brake(cv.brake_to_msg(BrakeHint(False, 1.0, "perception unavailable: x", False), h, T))
    assert down["level"] == cv.STALE and not down["available"] and down["state"] == "unavailable"
    # seen, not worth braking (below brake.min_risk): WARN also on a frame without a hit (held through a dropout)
    for hit in (True, False):
        warn = cv.msg_to_brake(roundtrip(cv.brake_to_msg(BrakeHint(False, 0.1, "warn", True, hit, 2, (1,), seen=True),
                                                         h, T)))  # fmt: skip
        assert warn["level"] == cv.WARN and warn["state"] == "warn" and warn["seen"] and not warn["active"]
    candidate = cv.msg_to_brake(cv.brake_to_msg(BrakeHint(False, 0.1, "candidate", True, True, 1, (1,)), h, T))
    assert candidate["level"] == cv.WARN and candidate["state"] == "candidate"
    clear = cv.msg_to_brake(cv.brake_to_msg(BrakeHint(False, 0.0, "clear", True), h, T))
    assert clear["level"] == cv.OK and clear["state"] == "clear"


def test_data_field_types_of_both_libraries_are_read():
    msg = raw_image(RGB, "rgb8")
    for data in (bytes(msg.data), array.array("B", bytes(msg.data)), list(msg.data), memoryview(bytes(msg.data))):
        fake = pytypes.SimpleNamespace(**{**msg.__dict__, "data": data}) if hasattr(msg, "__dict__") else None
        if fake is None:
            fake = pytypes.SimpleNamespace(encoding="rgb8", height=5, width=7, step=21, is_bigendian=0, data=data)
        np.testing.assert_array_equal(cv.image_to_rgb(fake, SMALL), RGB)
    assert isinstance(cv.RclpyTypes().uint8_array(np.arange(3, dtype=np.uint8)), array.array)
    assert cv.RclpyTypes().byte(2) == b"\x02"


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"height": "x"}, "not integers"), ({"data": [1, 2, 300]}, "not a uint8[] field"), ({"data": 7}, "uint8[]")],
)
def test_malformed_fields_are_bad_input(fields, message):
    msg = pytypes.SimpleNamespace(**{"encoding": "rgb8", "height": 1, "width": 1, "step": 3, "is_bigendian": 0,
                                     "data": [1, 2, 3], **fields})  # fmt: skip
    with pytest.raises(InputError, match=re.escape(message)):
        cv.image_to_rgb(msg, SMALL)


def test_masks_of_any_nonzero_value_or_bool_become_255_and_rclpy_arrays_hold_the_bytes():
    mask = np.zeros((33, 41), np.int16)
    mask[2:5, 3:9], mask[20, 7], mask[30, 40] = 3, -1, 1
    expected = np.where(mask != 0, 255, 0)
    for m in (mask.astype(np.uint8), mask != 0, mask, mask.astype(np.uint8)[:, ::-1][:, ::-1]):
        np.testing.assert_array_equal(cv.image_to_labels(cv.mask_to_msg(m, header(), T)), expected)
    strided = np.arange(60, dtype=np.uint8).reshape(6, 10)[:, ::3]  # not contiguous: copied in C order
    assert bytes(cv.RclpyTypes().uint8_array(strided)) == strided.tobytes()
    score = np.random.default_rng(6).random((5, 8), dtype=np.float32)
    assert bytes(cv.RclpyTypes().uint8_array(score.view(np.uint8))) == score.tobytes()
