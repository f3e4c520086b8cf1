"""Hostile input through the node's code path (CameraProcessor + LatestFrameScheduler) and through replay.

Every case is a message a camera driver, a broken bridge or a damaged recording could produce. Each must give one
clear line, be counted, never raise, and leave processing of the next good frame intact. The real rclpy node runs a
subset of these in tests/ros; here they run without ROS on the same classes the node uses.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics
from meta_ood_perception.ros.processor import CameraProcessor
from meta_ood_perception.ros.replay import BagWriter, ReplayOptions, replay
from meta_ood_perception.ros.scheduler import LatestFrameScheduler
from meta_ood_training.synthetic import drive

T = cv.RosbagsTypes()
TOPIC = "/cam/front/image_raw"
CTOPIC = "/cam/front/image_raw/compressed"
REAR = "/cam/rear/image_raw/compressed"
FRAME = drive(17, 6, 96, 160)[-1][0]
H, W = FRAME.shape[:2]


def header(stamp: int):
    return cv.make_header(T, stamp, "cam")


def raw(stamp, encoding="rgb8", height=H, width=W, step=None, data=None, bigendian=0, pixels=FRAME):
    if data is None:
        rows = np.ascontiguousarray(pixels).reshape(pixels.shape[0], -1)
        step = step or rows.shape[1]
        data = np.zeros((rows.shape[0], step), np.uint8)
        data[:, : min(step, rows.shape[1])] = rows[:, :step]
    step = step if step is not None else width * 3
    return T.get("sensor_msgs/msg/Image")(
        header=header(stamp),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=bigendian,
        step=step,
        data=np.asarray(data, np.uint8).ravel(),
    )


def compressed(stamp, fmt, data):
    return T.get("sensor_msgs/msg/CompressedImage")(
        header=header(stamp), format=fmt, data=np.frombuffer(bytes(data), np.uint8)
    )


def _encoded(ext: str) -> bytes:
    ok, data = cv2.imencode(ext, np.ascontiguousarray(FRAME[..., ::-1]))
    assert ok
    return data.tobytes()


JPEG, PNG = _encoded(".jpg"), _encoded(".png")
BOMB = bytearray(PNG[:64])
BOMB[16:24] = (200_000).to_bytes(4, "big") + (200_000).to_bytes(4, "big")


def _declaring(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` with its start-of-frame marker declaring ``height`` × ``width`` pixels."""
    out = bytearray(jpeg)
    sof = out.find(b"\xff\xc0")
    out[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


JPEG_BOMB = _declaring(JPEG, 9000, 9000)  # 81 MP declared: within the side limit, over the pixel limit
#: the issue's case: a few hundred bytes (a 16×16 JPEG) declaring 4000 × 4000 (19 s and 2.7 GB before the limit)
TINY = np.random.default_rng(2).integers(0, 256, (16, 16, 3), dtype=np.uint8)
SMALL_BOMB = _declaring(cv2.imencode(".jpg", TINY)[1].tobytes(), 4000, 4000)
#: JPEG headers and the end-of-image marker, no scan (OpenCV decodes it as a grey frame)
HEADERS_ONLY = JPEG[: JPEG.find(b"\xff\xda")] + b"\xff\xd9"
_SOS_END = JPEG.find(b"\xff\xda") + 2 + int.from_bytes(JPEG[JPEG.find(b"\xff\xda") + 2 :][:2], "big")
EMPTY_SCAN = JPEG[:_SOS_END] + b"\xff\xd9"  # a start of scan followed by the end marker
NO_IDAT = PNG[: PNG.find(b"IDAT") - 4] + PNG[PNG.find(b"IEND") - 4 :]

#: (case, message factory(stamp) or raw CDR bytes, reason substring; None = must be accepted)
CASES = [
    ("unsupported encoding nv21", lambda s: raw(s, "nv21"), "nv21"),
    ("16-bit encoding 16UC1", lambda s: raw(s, "16UC1"), "16UC1"),
    ("float encoding 32FC1 (big endian)", lambda s: raw(s, "32FC1", bigendian=1), "32FC1"),
    ("16-bit bayer encoding", lambda s: raw(s, "bayer_rggb16"), "bayer_rggb16"),
    (
        "yuv422 of odd width",
        lambda s: raw(s, "yuv422", width=W - 1, step=(W - 1) * 2, data=np.zeros(H * (W - 1) * 2)),
        "odd width",
    ),
    ("1×1 rgb8 frame", lambda s: raw(s, height=1, width=1, pixels=FRAME[:1, :1]), "minimum of 32 pixels"),
    ("16-pixel-high strip", lambda s: raw(s, height=16, pixels=FRAME[:16]), "minimum of 32 pixels"),
    (
        "over the 4K limit",
        lambda s: raw(s, height=2161, width=4096, step=4096 * 3, data=np.zeros(8)),
        "limit of 8847360",
    ),
    ("empty encoding string", lambda s: raw(s, ""), "unsupported image encoding"),
    ("step smaller than a row", lambda s: raw(s, step=W * 3 - 1, data=np.zeros(H * (W * 3 - 1))), "step"),
    ("data shorter than step·height", lambda s: raw(s, data=np.zeros(H * W * 3 - 7)), "bytes"),
    ("data longer than step·height", lambda s: raw(s, data=np.zeros(H * W * 3 + 9)), "bytes"),
    ("rgb8 data of a mono8 frame", lambda s: raw(s, data=np.zeros(H * W)), "bytes"),
    ("zero width", lambda s: raw(s, width=0, step=0, data=np.zeros(0)), "zero size"),
    ("zero height", lambda s: raw(s, height=0, data=np.zeros(0)), "zero size"),
    ("huge dimensions", lambda s: raw(s, height=100_000, width=100_000, step=300_000, data=np.zeros(16)), "limit"),
    ("undecodable JPEG", lambda s: compressed(s, "jpeg", b"\xff\xd8" + bytes(300) + b"\xff\xd9"), "cannot decode"),
    ("truncated JPEG", lambda s: compressed(s, "jpeg", JPEG[: len(JPEG) // 2]), "truncated JPEG"),
    ("truncated PNG", lambda s: compressed(s, "png", PNG[: len(PNG) // 2]), "truncated PNG"),
    ("PNG decompression bomb", lambda s: compressed(s, "png", bytes(BOMB) + PNG[64:]), "declares 200000×200000"),
    ("JPEG decompression bomb", lambda s: compressed(s, "jpeg", JPEG_BOMB), "over the limit of 8847360 pixels"),
    ("small JPEG declaring 4000×4000", lambda s: compressed(s, "jpeg", SMALL_BOMB), "4000×4000 pixels: 16000000"),
    ("JPEG of headers and end marker", lambda s: compressed(s, "jpeg", HEADERS_ONLY), "JPEG has no scan data"),
    ("JPEG with an empty scan", lambda s: compressed(s, "jpeg", EMPTY_SCAN), "JPEG has no scan data"),
    ("PNG without IDAT", lambda s: compressed(s, "png", NO_IDAT), "PNG has no image data"),
    ("BMP labelled as png", lambda s: compressed(s, "png", _encoded(".bmp")), "neither JPEG nor PNG"),
    ("empty CompressedImage", lambda s: compressed(s, "jpeg", b""), "no data"),
    ("unsupported compression tiff", lambda s: compressed(s, "tiff", PNG), "tiff"),
    ("random bytes as PNG", lambda s: compressed(s, "png", np.random.default_rng(1).bytes(999)), "cannot decode"),
    # accepted: the flag has no meaning for 8-bit data; padding and other 8-bit layouts are legal
    ("rgb8 with is_bigendian set", lambda s: raw(s, bigendian=1), None),
    (
        "bgra8 with row padding",
        lambda s: raw(s, "bgra8", step=W * 4 + 12, pixels=np.dstack([FRAME[..., ::-1], np.zeros((H, W), np.uint8)])),
        None,
    ),
    ("mono8", lambda s: raw(s, "mono8", step=W, pixels=FRAME[..., 1].copy()), None),
    ("8UC3 (as bgr8)", lambda s: raw(s, "8UC3", pixels=FRAME[..., ::-1]), None),
    ("bayer_grbg8", lambda s: raw(s, "bayer_grbg8", step=W, pixels=FRAME[..., 1].copy()), None),
    ("yuv422 (UYVY)", lambda s: raw(s, "yuv422", step=W * 2, pixels=FRAME[..., :2]), None),
    (
        "mono16, big endian, padded rows",
        lambda s: raw(s, "mono16", step=W * 2 + 6, bigendian=1, pixels=FRAME[..., :2]),
        None,
    ),
    ("smallest frame: 32×32", lambda s: raw(s, height=32, width=32, pixels=FRAME[:32, :32]), None),
    ("PNG labelled as jpeg", lambda s: compressed(s, "jpeg", PNG), None),
]


@pytest.fixture(scope="module")
def pipeline():
    return AnomalyPipeline.from_bundle("default")


def _processor(pipeline):
    return CameraProcessor(camera_topics(CTOPIC), pipeline, T)


def test_at_least_twenty_kinds_of_bad_input():
    assert sum(reason is not None for _, _, reason in CASES) >= 20


@pytest.mark.parametrize(("case", "make", "reason"), CASES, ids=[c[0] for c in CASES])
def test_each_case_is_one_line_counted_and_the_next_frame_works(pipeline, case, make, reason):
    processor = _processor(pipeline)
    frame = processor.process(make(1_000))
    if reason is None:
        assert (
            frame.error is None and frame.result is not None and frame.result.score.shape[:2] == frame.image.shape[:2]
        )
    else:
        assert frame.error is not None and frame.result is None
        assert reason in frame.error.reason and "\n" not in frame.error.reason
        assert frame.error.kind == "input"
        down = cv.msg_to_brake(frame.messages["emergency_brake"])
        assert not down["available"] and down["level"] == cv.STALE and reason in down["reason"]
    good = processor.process(raw(2_000))
    assert good.error is None and good.result.mask.shape == (H, W)


def test_a_4k_frame_is_accepted_by_default(pipeline):
    uhd = cv2.resize(FRAME, (3840, 2160), interpolation=cv2.INTER_LINEAR)
    frame = _processor(pipeline).process(raw(1_000, height=2160, width=3840, pixels=uhd))
    assert frame.error is None and frame.result.mask.shape == (2160, 3840)
    assert frame.messages["anomaly_mask"].height == 2160 and frame.messages["anomaly_mask"].width == 3840


def test_the_processor_applies_its_frame_limits_before_decoding(pipeline):
    tight = CameraProcessor(camera_topics(CTOPIC), pipeline, T, limits=cv.FrameLimits(max_pixels=H * W - 1))
    frame = tight.process(raw(1_000))
    assert frame.error is not None and frame.error.kind == "input" and frame.image is None
    assert f"{H * W} pixels, over the limit of {H * W - 1} pixels" in frame.error.reason
    assert tight.process(compressed(2_000, "png", PNG)).error.reason.endswith(f"over the limit of {H * W - 1} "
                                                                              "pixels (max_frame_pixels)")  # fmt: skip
    loose = CameraProcessor(camera_topics(CTOPIC), pipeline, T, limits=cv.FrameLimits(min_side=1))
    tiny = loose.process(raw(3_000, height=8, width=8, pixels=FRAME[:8, :8]))
    assert tiny.error is None and tiny.result.mask.shape == (8, 8)


def test_the_scheduler_counts_every_case_and_reports_it(pipeline):
    processor = _processor(pipeline)
    scheduler = LatestFrameScheduler([CTOPIC], lambda cam, msg, received: processor.process(msg))
    scheduler.start()
    try:
        for i, (_, make, _) in enumerate(CASES):
            scheduler.submit(CTOPIC, make(i))
            deadline = time.monotonic() + 30
            while scheduler.cameras[CTOPIC].stats.frames_processed + scheduler.cameras[CTOPIC].stats.frames_rejected \
                    < i + 1 and time.monotonic() < deadline:  # fmt: skip
                time.sleep(0.005)
    finally:
        scheduler.stop()
    stats = scheduler.cameras[CTOPIC].stats
    bad = sum(reason is not None for _, _, reason in CASES)
    assert stats.frames_in == len(CASES) and stats.frames_rejected == bad
    assert stats.frames_processed == len(CASES) - bad and stats.faults == 0
    assert [r.stamp_ns for r in stats.rejections] == [i for i, c in enumerate(CASES) if c[2] is not None]
    level, _, _ = scheduler.health(CTOPIC, timeout_s=60)
    assert level == cv.OK  # the last frames were good


def test_replay_of_a_bag_holding_every_case(tmp_path):
    t0 = 1_700_000_000_000_000_000
    with BagWriter(tmp_path / "in") as bag:
        for i, (_, make, _) in enumerate(CASES):
            msg = make(t0 + i * 1000)
            msgtype = msg.__msgtype__
            topic = REAR if msgtype.endswith("CompressedImage") else TOPIC
            bag.write(topic, msgtype, msg, t0 + i * 1000)
        good = T.typestore.serialize_cdr(raw(t0 + 10**6), "sensor_msgs/msg/Image")
        bag.write_raw(TOPIC, "sensor_msgs/msg/Image", good[:57], t0 + 10**6)  # cut CDR
        bag.write_raw(TOPIC, "sensor_msgs/msg/Image", b"\x00\x01\x00\x00" + bytes(5), t0 + 10**6 + 1)
    summary = replay(tmp_path / "in", tmp_path / "out", options=ReplayOptions(image_topics=(TOPIC, REAR)))
    bad = [c for c in CASES if c[2] is not None]
    assert summary["frames_in"] == len(CASES) + 2
    assert summary["frames_rejected"] == len(bad) + 2
    assert summary["frames_processed"] == len(CASES) - len(bad)
    reasons = [r["reason"] for r in summary["rejections"]]
    for case, _, reason in bad:
        assert any(reason in r for r in reasons), case
    assert sum("corrupt message" in r for r in reasons) == 2
    assert all("\n" not in r for r in reasons)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from meta_ood_perception.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and text in lines[0], result.stderr


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    from meta_ood_training.drive_bag import write_drive_bag

    return write_drive_bag(tmp_path_factory.mktemp("bag") / "drive", frames=6, height=64, width=128)


def test_damaged_and_empty_bags_are_one_line_errors(small_bag, tmp_path):
    mcap = next(small_bag.path.glob("*.mcap"))
    cases = {}
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "metadata.yaml").write_bytes((small_bag.path / "metadata.yaml").read_bytes())
    (truncated / mcap.name).write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    cases[truncated] = "not a readable"
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    cases[garbage] = "not a readable"
    junk_meta = tmp_path / "junk_meta"
    junk_meta.mkdir()
    (junk_meta / "metadata.yaml").write_text("::: [")
    (junk_meta / mcap.name).write_bytes(mcap.read_bytes())
    cases[junk_meta] = "not a readable"
    bad_db = tmp_path / "bad.db3"
    bad_db.write_bytes(b"SQLite format 3\x00" + bytes(200))
    cases[bad_db] = "not a readable"
    empty = tmp_path / "empty"
    with BagWriter(empty) as bag:
        bag.writer.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=T.typestore)
    cases[empty] = "holds no messages"
    no_images = tmp_path / "no_images"
    with BagWriter(no_images) as bag:
        bag.write("/chatter", "std_msgs/msg/String", T.get("std_msgs/msg/String")(data="hi"), 1)
    cases[no_images] = "has no image topics"
    for path, text in cases.items():
        _one_line_error(cli("replay", str(path), "--out", str(tmp_path / f"out_{path.name}")), 2, text)
        assert not (tmp_path / f"out_{path.name}").exists()


def test_a_bag_that_fails_while_reading_keeps_what_was_processed(small_bag, tmp_path, monkeypatch):
    import rosbags.highlevel

    original = rosbags.highlevel.AnyReader.messages

    def failing(self, *args, **kwargs):
        for i, item in enumerate(original(self, *args, **kwargs)):
            if i == 3:
                raise ValueError("chunk CRC mismatch")
            yield item

    monkeypatch.setattr(rosbags.highlevel.AnyReader, "messages", failing)
    summary = replay(small_bag.path, tmp_path / "out", options=ReplayOptions(reorder_window=0))
    assert summary["read_error"] == "the input bag is damaged after 3 messages: chunk CRC mismatch"
    assert summary["frames_processed"] == 3
    from rosbags.highlevel import AnyReader

    monkeypatch.setattr(rosbags.highlevel.AnyReader, "messages", original)
    with AnyReader([tmp_path / "out"]) as reader:
        assert sum(1 for c, _, _ in reader.messages() if c.topic.endswith("anomaly_mask")) == 3


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--bundle", "/nonexistent/bundle"], "bundle"),
        (["--backend", "tflite"], "tflite"),
        (["--provider", "cuda"], "cuda"),
        (["--threshold", "1.5"], "parameter threshold"),
        (["--image-topic", "relative/topic"], "relative/topic"),
    ],
)
def test_bad_settings_are_one_line_errors(small_bag, tmp_path, args, text):
    _one_line_error(cli("replay", str(small_bag.path), "--out", str(tmp_path / "out"), *args), 2, text)


def test_bad_parameter_file_is_a_one_line_error(small_bag, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("anomaly_node:\n  ros__parameters:\n    brake:\n      persistence_k: 9\n")
    _one_line_error(cli("replay", str(small_bag.path), "--out", str(tmp_path / "o"), "--params", str(params)), 2,
                    "persistence")  # fmt: skip
    params.write_text("anomaly_node:\n  ros__parameters:\n    treshold: 0.5\n")
    _one_line_error(cli("replay", str(small_bag.path), "--out", str(tmp_path / "o"), "--params", str(params)), 2,
                    "unknown parameter(s) treshold")  # fmt: skip


def test_broken_bundles_stop_replay_with_one_line(small_bag, tmp_path):
    import shutil

    from meta_ood_perception.bundle import DEFAULT_BUNDLE

    bundle = tmp_path / "bundle"
    shutil.copytree(Path(DEFAULT_BUNDLE), bundle)
    (bundle / "model.onnx").write_bytes(b"not onnx")
    _one_line_error(cli("replay", str(small_bag.path), "--out", str(tmp_path / "o"), "--bundle", str(bundle)), 2,
                    "SHA-256")  # fmt: skip
    assert load_bundle("default").num_classes == 19


def test_rosbag1_input_is_processed_in_header_stamp_order(tmp_path):
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ros1 = get_typestore(Stores.ROS1_NOETIC)
    image_type = ros1.types["sensor_msgs/msg/Image"]
    header_type, time_type = ros1.types["std_msgs/msg/Header"], ros1.types["builtin_interfaces/msg/Time"]
    frames = [image for image, _ in drive(3, 4, 64, 128)]
    stamps = [5, 2, 9, 7]  # seconds, out of order in the recording; seq 0 first
    with Writer(tmp_path / "in.bag") as bag:
        conn = bag.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=ros1)
        for seq, (frame, sec) in enumerate(zip(frames, stamps, strict=True)):
            msg = image_type(header=header_type(seq=seq, stamp=time_type(sec=sec, nanosec=0), frame_id="cam"),
                             height=64, width=128, encoding="rgb8", is_bigendian=0, step=384,
                             data=frame.reshape(-1))  # fmt: skip
            bag.write(conn, 10**9 * (seq + 1), ros1.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    summary = replay(tmp_path / "in.bag", tmp_path / "out", options=ReplayOptions(per_frame=True))
    assert summary["frames_processed"] == 4
    assert [f["stamp_ns"] // 10**9 for f in summary["frames"]] == sorted(stamps)


def test_outputs_never_overwrite_the_input(small_bag, tmp_path):
    from meta_ood_perception.ros.replay import ReplayError

    inside = small_bag.path / "out"
    for out, options in ((small_bag.path.parent, ReplayOptions(overwrite=True)), (inside, ReplayOptions()),
                         (tmp_path / "o", ReplayOptions(summary=small_bag.path, overwrite=True))):  # fmt: skip
        with pytest.raises(ReplayError, match="input bag"):
            replay(small_bag.path, out, options=options)
    assert small_bag.path.is_dir() and any(small_bag.path.glob("*.mcap"))


def test_labels_belong_to_the_camera_in_their_namespace(tmp_path):
    from meta_ood_training.drive_bag import write_drive_bag

    front = write_drive_bag(tmp_path / "front", frames=3, height=64, width=128)
    with BagWriter(tmp_path / "two") as bag:
        from rosbags.highlevel import AnyReader

        with AnyReader([front.path], default_typestore=T.typestore) as reader:
            for conn, log_time, data in reader.messages():
                bag.write_raw(conn.topic, conn.msgtype, data, log_time)
                if conn.topic == front.image_topic:  # a second, synchronized camera with the same stamps
                    bag.write_raw("/camera/rear/image_raw", conn.msgtype, data, log_time)
    summary = replay(tmp_path / "two", tmp_path / "out", options=ReplayOptions(label_topic=front.label_topic))
    assert summary["frames_processed"] == 6 and summary["labels"]["frames"] == 3


def test_a_recording_cut_short_is_salvaged_on_request(small_bag, tmp_path):
    mcap = next(small_bag.path.glob("*.mcap"))
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "metadata.yaml").write_bytes((small_bag.path / "metadata.yaml").read_bytes())
    (cut / mcap.name).write_bytes(mcap.read_bytes()[: mcap.stat().st_size * 7 // 10])
    _one_line_error(cli("replay", str(cut), "--out", str(tmp_path / "o1")), 2, "--salvage")
    result = cli("replay", str(cut), "--out", str(tmp_path / "o2"), "--salvage", "--summary", str(tmp_path / "s.json"),
                 "--label-topic", small_bag.label_topic)  # fmt: skip
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads((tmp_path / "s.json").read_text())
    assert "cut short" in summary["salvaged"]["damage"]
    assert 2 <= summary["frames_processed"] < small_bag.frames and summary["frames_rejected"] == 0
    full = replay(small_bag.path, tmp_path / "full", options=ReplayOptions(per_frame=True))
    part = replay(cut, tmp_path / "part", options=ReplayOptions(per_frame=True, salvage=True))

    def key(frames):
        return [(f["stamp_ns"], f["kept"], f["components"], f["active"]) for f in frames]

    assert key(part["frames"]) == key(full["frames"][: len(part["frames"])])  # the salvaged frames, unchanged


def test_garbage_cannot_be_salvaged(tmp_path):
    garbage = tmp_path / "x.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + bytes(50))
    _one_line_error(cli("replay", str(garbage), "--out", str(tmp_path / "o"), "--salvage"), 2, "cannot salvage")
