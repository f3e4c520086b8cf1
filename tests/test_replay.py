"""`meta-ood replay`: real rosbag2 bags in (MCAP, sqlite3), an MCAP bag out, cross-checked with the mcap readers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import NodeConfig
from meta_ood_perception.ros.replay import BagWriter, ReplayError, ReplayOptions, replay
from meta_ood_training.drive_bag import write_drive_bag
from meta_ood_training.synthetic import drive

T = cv.RosbagsTypes()
TOPIC = "/camera/front/image_raw"
LABELS = "/camera/front/anomaly_labels"
OUT_TOPICS = {f"/camera/front/{n}" for n in ("anomaly_mask", "anomaly_score", "detections", "emergency_brake")}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from meta_ood_perception.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def header(stamp_ns: int, frame_id: str = "cam"):
    return cv.make_header(T, stamp_ns, frame_id)


def image_msg(pixels, encoding, stamp_ns, step=None, data=None):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    step = step or rows.shape[1]
    padded = np.zeros((h, step), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return T.get("sensor_msgs/msg/Image")(
        header=header(stamp_ns), height=h, width=w, encoding=encoding, is_bigendian=0, step=step,
        data=padded.reshape(-1) if data is None else data,
    )  # fmt: skip


def read_mcap(bag: Path) -> dict[str, list]:
    """Every message of the output bag, decoded by the mcap + mcap-ros2-support readers (not by rosbags)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    files = list(bag.glob("*.mcap"))
    assert len(files) == 1
    out: dict[str, list] = {}
    with files[0].open("rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        for schema, channel, message, decoded in reader.iter_decoded_messages():
            out.setdefault(channel.topic, []).append(Decoded(schema.name, message.log_time, decoded))
    return out


def chunk_compressions(bag: Path) -> set[str]:
    """The compressions named by the chunk indexes of the bag's MCAP file ("" = uncompressed)."""
    from mcap.reader import make_reader

    with next(bag.glob("*.mcap")).open("rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.chunk_indexes
    return {chunk.compression for chunk in summary.chunk_indexes}


@dataclass
class Decoded:
    schema: str
    log_time_ns: int
    ros_msg: Any


@pytest.fixture(scope="module")
def drive_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "drive"
    return write_drive_bag(path, seed=31, frames=12, height=128, width=256)


def test_replay_writes_mcap_outputs_with_input_stamps_and_metrics(drive_bag, tmp_path):
    out = tmp_path / "out"
    summary_path = tmp_path / "summary.json"
    options = ReplayOptions(label_topic=LABELS, summary=summary_path, video=tmp_path / "v.mp4", per_frame=True)
    summary = replay(drive_bag.path, out, options=options)

    assert summary["frames_in"] == summary["frames_processed"] == 12 and summary["frames_rejected"] == 0
    assert summary["rejections"] == [] and summary["interrupted"] is None
    assert summary["frames_out_of_domain"] == 0 and summary["domain_monitor"]["calibrated"]  # its own world
    for stage in ("decode", "inference", "components", "total"):
        q = summary["latency_ms"][stage]
        assert 0 <= q["p50"] <= q["p95"] <= q["p99"]
    assert summary["labels"]["frames"] == 12 and summary["labels"]["pixel"]["auroc"] > 0.9
    assert 0 <= summary["labels"]["components"]["mean_F1"] <= 1
    counts = summary["labels"]["meta_classifier"]  # the published components against the labels
    per_frame = sum(f["components"] for f in summary["frames"])
    assert counts["components"] == counts["true_detections"] + counts["false_positives_before"] <= per_frame
    assert counts["true_detections"] > 0 and 0 <= counts["true_detections_lost"] <= counts["true_detections"]
    assert counts["false_positives_after"] <= counts["false_positives_before"]
    assert summary["videos"][TOPIC]["frames"] == 12 and (tmp_path / "v.mp4").stat().st_size > 0
    assert summary["compression"] == "zstd" and chunk_compressions(out) == {"zstd"}  # compressed by default
    assert json.loads(summary_path.read_text())["frames_processed"] == 12
    stamps = [f["stamp_ns"] for f in summary["frames"]]
    assert stamps == sorted(stamps)

    metadata = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 8 and metadata["storage_identifier"] == "mcap"
    messages = read_mcap(out)
    assert set(messages) == OUT_TOPICS
    assert all(len(v) == 12 for v in messages.values())
    assert messages["/camera/front/anomaly_mask"][0].schema == "sensor_msgs/msg/Image"
    assert messages["/camera/front/detections"][0].schema == "vision_msgs/msg/Detection2DArray"
    input_stamps = [1_700_000_000_000_000_000 + i * 100_000_000 for i in range(12)]
    for topic, items in messages.items():
        got = [m.ros_msg.header.stamp.sec * 10**9 + m.ros_msg.header.stamp.nanosec for m in items]
        assert got == input_stamps, topic
        assert [m.log_time_ns for m in items] == [s + 2_000_000 for s in input_stamps]
        assert all(m.ros_msg.header.frame_id == "camera_front" for m in items)

    # the outputs equal the pipeline run directly on the same frames
    pipeline = AnomalyPipeline.from_bundle("default")
    frames = drive(31, 12, 128, 256)
    for i in (0, 11):
        expected = pipeline.process(frames[i][0])
        mask = messages["/camera/front/anomaly_mask"][i].ros_msg
        assert (mask.encoding, mask.height, mask.width) == ("mono8", 128, 256)
        got = np.frombuffer(bytes(mask.data), np.uint8).reshape(128, 256)
        np.testing.assert_array_equal(got, expected.mask * 255)
        score = messages["/camera/front/anomaly_score"][i].ros_msg
        assert score.encoding == "32FC1"
        np.testing.assert_allclose(cv.msg_to_score(score), expected.score, atol=1e-6)
        dets = messages["/camera/front/detections"][i].ros_msg.detections
        assert len(dets) == len(expected.kept)
    last = messages["/camera/front/emergency_brake"][-1].ros_msg.status[0]
    assert last.name == "emergency_brake" and {kv.key for kv in last.values} >= {"active", "available", "risk"}
    # the hazard approaches in the ego lane: the hint must come on, and the event is in the summary
    assert any(e["event"] == "on" for e in summary["brake_events"])


def test_sqlite3_input_and_compressed_frames(tmp_path):
    bag = write_drive_bag(tmp_path / "in", seed=5, frames=4, height=96, width=192, encoding="jpeg", storage="sqlite3")
    assert bag.image_topic == TOPIC + "/compressed"
    summary = replay(bag.path, tmp_path / "out")
    assert summary["frames_processed"] == 4
    assert set(summary["cameras"]) == {TOPIC + "/compressed"}
    messages = read_mcap(tmp_path / "out")
    assert set(messages) == OUT_TOPICS and messages["/camera/front/anomaly_mask"][0].ros_msg.width == 192


def test_mixed_encodings_padding_and_bad_frames_are_counted(tmp_path):
    frames = [image for image, _ in drive(9, 6, 96, 192)]
    t0 = 1_000_000_000_000
    good = {}
    with BagWriter(tmp_path / "in") as bag:
        msgs = [
            image_msg(frames[0], "rgb8", t0),
            image_msg(np.ascontiguousarray(frames[1][..., ::-1]), "bgr8", t0 + 1, step=192 * 3 + 7),  # row padding
            image_msg(np.dstack([frames[2], np.full((96, 192), 255, np.uint8)]), "rgba8", t0 + 2),
            image_msg(frames[3], "nv21", t0 + 3),  # unsupported encoding
            image_msg(frames[4], "rgb8", t0 + 4, data=np.zeros(96 * 192 * 3 - 100, np.uint8)),  # truncated frame
            image_msg(frames[5][..., 0].copy(), "mono8", t0 + 6),
        ]
        for i, msg in enumerate(msgs):
            bag.write(TOPIC, "sensor_msgs/msg/Image", msg, t0 + i * 10)
        # a message cut in the middle of its CDR bytes
        raw = T.typestore.serialize_cdr(image_msg(frames[0], "rgb8", t0 + 5), "sensor_msgs/msg/Image")
        bag.write_raw(TOPIC, "sensor_msgs/msg/Image", raw[:40], t0 + 55)
        good = {0: frames[0], 1: frames[1], 2: frames[2]}
    summary = replay(tmp_path / "in", tmp_path / "out", options=ReplayOptions(per_frame=True))
    assert summary["frames_in"] == 7
    assert summary["frames_processed"] == 4 and summary["frames_rejected"] == 3
    reasons = {r["stamp_ns"]: r["reason"] for r in summary["rejections"]}
    assert "nv21" in reasons[t0 + 3]
    assert "bytes" in reasons[t0 + 4]
    assert any("corrupt message" in r for r in reasons.values())
    messages = read_mcap(tmp_path / "out")
    masks = {m.ros_msg.header.stamp.nanosec: m.ros_msg for m in messages["/camera/front/anomaly_mask"]}
    pipeline = AnomalyPipeline.from_bundle("default")
    for i, frame in good.items():
        expected = pipeline.process(frame).mask * 255
        np.testing.assert_array_equal(np.frombuffer(bytes(masks[t0 % 10**9 + i].data), np.uint8).reshape(96, 192),
                                      expected)  # fmt: skip
    # rejected frames with a readable header still get a brake message saying perception was unavailable
    brakes = {m.ros_msg.header.stamp.nanosec: m.ros_msg for m in messages["/camera/front/emergency_brake"]}
    down = cv.msg_to_brake(brakes[t0 % 10**9 + 3])
    assert down["level"] == cv.STALE and not down["available"] and "nv21" in down["reason"]
    assert len(brakes) == 7  # 4 processed + 2 rejected + the corrupt message, whose stamp is still readable
    corrupt = cv.msg_to_brake(brakes[t0 % 10**9 + 5])
    assert not corrupt["available"] and "corrupt message" in corrupt["reason"]


def test_cli_errors_are_one_line_and_list_image_topics(drive_bag, tmp_path):
    res = cli("replay", str(drive_bag.path), "--out", str(tmp_path / "o"), "--image-topic", "/nope")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nope" in lines[0] and TOPIC in lines[0] and LABELS in lines[0]
    not_bag = tmp_path / "notes.txt"
    not_bag.write_text("hello")
    res = cli("replay", str(not_bag), "--out", str(tmp_path / "o2"))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and "not a readable" in res.stderr
    res = cli("replay", str(tmp_path / "missing"), "--out", str(tmp_path / "o3"))
    assert res.returncode == 2 and "no such file" in res.stderr
    res = cli("replay", str(drive_bag.path), "--out", str(tmp_path / "o4"), "--image-topic", LABELS + "x")
    assert res.returncode == 2
    assert not (tmp_path / "o").exists() and not (tmp_path / "o4").exists()


def test_cli_replay_and_existing_output(drive_bag, tmp_path):
    out = tmp_path / "out"
    res = cli("replay", str(drive_bag.path), "--out", str(out), "--image-topic", TOPIC, "--label-topic", LABELS,
              "--summary", str(tmp_path / "s.json"), "--no-score", "--compression", "lz4")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "demonstrator trained only on the synthetic world" in res.stderr  # the default bundle says what it is
    assert "/camera/front/anomaly_score" not in read_mcap(out)
    assert chunk_compressions(out) == {"lz4"}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames_processed"] == 12 and summary["labels"]["pixel"]["auprc"] > 0.5
    res = cli("replay", str(drive_bag.path), "--out", str(out))
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert cli("replay", str(drive_bag.path), "--out", str(out), "--overwrite").returncode == 0


def test_bad_settings_and_empty_bag(drive_bag, tmp_path):
    with pytest.raises(ReplayError, match="must differ"):
        replay(drive_bag.path, drive_bag.path)
    with BagWriter(tmp_path / "empty") as bag:
        bag.writer.add_connection(TOPIC, "sensor_msgs/msg/Image", typestore=T.typestore)
    with pytest.raises(ReplayError, match="holds no messages"):
        replay(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="parameter threshold"):
        NodeConfig.from_params({"threshold": 1.5})
    with pytest.raises(ValueError, match="bundle"):
        replay(drive_bag.path, tmp_path / "o", NodeConfig.from_params({"bundle": str(tmp_path / "no_bundle")}))


def interrupted_replay(bag: Path, tmp_path: Path, marker: str, sig: signal.Signals, *options: str) -> int:
    """Run ``meta-ood -v replay BAG --out tmp/out --summary tmp/s.json OPTIONS``, send ``sig`` once its log shows
    ``marker``; returns the exit status."""
    code = "import sys; from meta_ood_perception.cli import main; sys.exit(main(sys.argv[1:]))"
    args = [sys.executable, "-c", code, "-v", "replay", str(bag), "--out", str(tmp_path / "out"),
            "--summary", str(tmp_path / "s.json"), *options]  # fmt: skip
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        if marker in line or time.monotonic() > deadline:
            break
    proc.send_signal(sig)
    proc.stderr.read()
    return proc.wait(timeout=60)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_leaves_a_readable_bag_with_every_processed_frame(tmp_path, sig, status):
    bag = write_drive_bag(tmp_path / "in", seed=3, frames=400, height=64, width=128, label_topic=None)
    assert interrupted_replay(bag.path, tmp_path, "frame 20 of", sig) == status
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"] == sig.name and 20 <= summary["frames_processed"] < 400
    messages = read_mcap(tmp_path / "out")
    assert len(messages["/camera/front/anomaly_mask"]) == summary["frames_processed"]
    assert len(messages["/camera/front/emergency_brake"]) == summary["frames_processed"]


def test_frames_outside_the_bundles_domain_are_counted_and_make_the_brake_unavailable(tmp_path):
    import matplotlib.cbook as cbook
    from PIL import Image

    from meta_ood_training.demo import domain_line

    with cbook.get_sample_data("grace_hopper.jpg") as f:  # a real photograph: not the default bundle's world
        photo = np.asarray(Image.open(f).convert("RGB").crop((0, 150, 512, 406)).resize((256, 128)))
    street = [image for image, _ in drive(9, 6, 128, 256)]
    frames = [*street[:3], *[photo] * 6, *street[3:]]
    with BagWriter(tmp_path / "in") as bag:
        for i, frame in enumerate(frames):
            bag.write(TOPIC, "sensor_msgs/msg/Image", image_msg(frame, "rgb8", 1000 + i), 1000 + i)
    summary = replay(tmp_path / "in", tmp_path / "out", options=ReplayOptions(per_frame=True))
    assert summary["frames_processed"] == 12 and summary["frames_out_of_domain"] == 6
    assert summary["cameras"][TOPIC]["frames_out_of_domain"] == 6
    assert summary["domain_monitor"] == {"calibrated": True, "domain_patience": 3, "calibration_frames": 1800}
    assert [f["in_domain"] for f in summary["frames"]] == [True] * 3 + [False] * 6 + [True] * 3
    assert [f["available"] for f in summary["frames"]] == [True] * 5 + [False] * 4 + [True] * 3
    events = [(e["event"], e["stamp_ns"]) for e in summary["brake_events"]]
    assert ("unavailable", 1005) in events and ("available", 1009) in events
    down = next(e for e in summary["brake_events"] if e["event"] == "unavailable")
    assert "outside the bundle's domain" in down["reason"]
    brakes = [cv.msg_to_brake(m.ros_msg) for m in read_mcap(tmp_path / "out")["/camera/front/emergency_brake"]]
    assert [b["level"] == cv.STALE for b in brakes] == [False] * 5 + [True] * 4 + [False] * 3
    assert "domain" in brakes[5]["reason"] and not brakes[5]["available"]
    assert "6 of 12" in domain_line({**summary, "frames_processed": 12})


def test_a_fail_safe_reset_restarts_the_run_of_frames_outside_the_domain_as_in_the_node(monkeypatch):
    """A fault (or an explicit fail-safe output with ``reset``) restarts the whole pipeline history — the brake
    history and the run of frames outside the domain — in the processor itself, so replay (which has no scheduler
    to reset the pipeline) and the node treat the same sequence alike."""
    import matplotlib.cbook as cbook
    from PIL import Image

    from meta_ood_perception.backends import BackendError
    from meta_ood_perception.ros.params import camera_topics
    from meta_ood_perception.ros.processor import CameraProcessor

    with cbook.get_sample_data("grace_hopper.jpg") as f:  # a real photograph: not the default bundle's world
        photo = np.asarray(Image.open(f).convert("RGB").crop((0, 150, 512, 406)).resize((256, 128)))
    pipeline = AnomalyPipeline.from_bundle("default")  # domain_patience 3
    processor = CameraProcessor(camera_topics(TOPIC), pipeline, T)
    stamps = iter(range(1000, 2000))

    def photos(n: int) -> list[bool]:
        return [processor.process(image_msg(photo, "rgb8", next(stamps))).brake.available for _ in range(n)]

    assert photos(2) == [True, True]  # two frames outside: not yet unavailable

    def lost(batch: Any) -> Any:
        raise BackendError("device lost")

    with monkeypatch.context() as m:
        m.setattr(pipeline.backend, "run", lost)
        fault = processor.process(image_msg(photo, "rgb8", next(stamps)))
    assert fault.error is not None and fault.error.kind == "fault" and not fault.brake.available
    assert photos(3) == [True, True, False]  # the run restarted after the fault, as the node's reset restarts it
    processor.unavailable(header(next(stamps)), "no input for 2.0 s")  # reset=True (default)
    assert photos(3) == [True, True, False]
    processor.unavailable(header(next(stamps)), "message does not deserialize", reset=False)
    assert photos(1) == [False]  # without reset the run goes on


def test_cameras_in_one_namespace_get_outputs_under_their_own_topics(tmp_path):
    frames = [image for image, _ in drive(9, 2, 64, 128)]
    with BagWriter(tmp_path / "in") as bag:
        for i, frame in enumerate(frames):
            bag.write("/cam/rgb", "sensor_msgs/msg/Image", image_msg(frame, "rgb8", 10 + i), 10 + i)
            bag.write("/cam/bgr", "sensor_msgs/msg/Image",
                      image_msg(np.ascontiguousarray(frame[..., ::-1]), "bgr8", 10 + i), 10 + i)  # fmt: skip
    summary = replay(tmp_path / "in", tmp_path / "out")
    assert summary["frames_processed"] == 4
    topics = set(read_mcap(tmp_path / "out"))
    assert {"/cam/rgb/anomaly_mask", "/cam/bgr/anomaly_mask", "/cam/bgr/emergency_brake"} <= topics
    config = NodeConfig.from_params({"image_topics": ["/cam/rgb", "/cam/bgr", "/other/front/image_raw"]})
    assert [c.outputs["anomaly_mask"] for c in config.cameras] == [
        "/cam/rgb/anomaly_mask",
        "/cam/bgr/anomaly_mask",
        "/other/front/anomaly_mask",
    ]


class Gated:
    """A backend that holds its first frame until ``gate`` opens: the pipeline falls behind a camera by as many
    frames as arrive meanwhile, whatever the machine's speed."""

    name, description = "gated", "waits for the gate, then runs the default backend"

    def __init__(self, inner: Any, gate: threading.Event) -> None:
        self.inner, self.gate = inner, gate

    def run(self, batch: Any) -> Any:
        assert self.gate.wait(timeout=120), "the gate never opened"
        return self.inner.run(batch)


@pytest.fixture(scope="module")
def fast_bag(tmp_path_factory):
    """30 frames recorded at 200 Hz (5 ms apart), with labels."""
    return write_drive_bag(tmp_path_factory.mktemp("fast") / "drive", seed=7, frames=30, height=64, width=128,
                           fps=200.0)  # fmt: skip


def gated_factory(gate: threading.Event):
    from meta_ood_perception.bundle import load_bundle

    bundle = load_bundle("default")
    base = AnomalyPipeline.from_bundle(bundle)
    return lambda cfg: AnomalyPipeline(bundle, Gated(base.backend, gate), cfg.pipeline)


def test_realtime_replay_drops_the_frames_the_pipeline_cannot_keep_up_with(fast_bag, tmp_path):
    """The first frame is held until every frame has reached the scheduler (``on_frame`` after the last one opens
    the gate): as in the live node, each newer frame replaces the waiting one, and the newest is processed."""
    gate = threading.Event()

    def fed(done: int, total: int) -> None:
        if done == total:
            gate.set()

    options = ReplayOptions(label_topic=LABELS, per_frame=True, realtime=True, video=tmp_path / "v.mp4",
                            summary=tmp_path / "s.json")  # fmt: skip
    start = time.monotonic()
    live = replay(fast_bag.path, tmp_path / "live", options=options, pipeline_factory=gated_factory(gate),
                  on_frame=fed)  # fmt: skip
    wall = time.monotonic() - start
    span = 29 * 0.005
    assert live["mode"] == "realtime" and live["recorded_span_s"] == pytest.approx(span)
    assert wall >= span - 0.005 and live["wall_s"] >= span - 0.005  # paced at the recorded rate: a lower bound
    assert live["frames_in"] == 30 and live["frames_rejected"] == 0
    # one frame was in the (held) worker, every later one replaced the waiting one but the last
    assert 1 <= live["frames_processed"] <= 2 and live["frames_dropped"] == 30 - live["frames_processed"]
    assert live["cameras"][TOPIC]["frames_dropped"] == live["frames_dropped"]
    stamps = [f["stamp_ns"] for f in live["frames"]]
    input_stamps = [1_700_000_000_000_000_000 + i * 5_000_000 for i in range(30)]
    assert stamps == sorted(set(stamps)) and set(stamps) <= set(input_stamps)
    assert stamps[-1] == input_stamps[-1]  # the newest frame is never dropped
    receipt, total = live["receipt_latency_ms"], live["latency_ms"]["total"]
    assert receipt["p50"] <= receipt["p95"] <= receipt["p99"]
    assert receipt["p99"] >= total["p99"] and receipt["mean"] >= total["mean"]  # receipt → output ⊇ processing
    assert "receipt" not in live["latency_ms"]
    # labels: every processed frame scored, the labels of the dropped frames left over
    assert live["labels"]["frames"] == live["frames_processed"] and live["labels"]["frames_without_label"] == 0
    assert live["labels"]["labels_without_frame"] == live["frames_dropped"]
    assert live["videos"][TOPIC]["frames"] == live["frames_processed"]
    assert json.loads((tmp_path / "s.json").read_text())["frames_dropped"] == live["frames_dropped"]
    # only processed frames reach the output bag, with their input headers and log times
    messages = read_mcap(tmp_path / "live")
    assert set(messages) == OUT_TOPICS
    for topic, items in messages.items():
        got = [m.ros_msg.header.stamp.sec * 10**9 + m.ros_msg.header.stamp.nanosec for m in items]
        assert got == stamps, topic
        assert [m.log_time_ns for m in items] == [s + 2_000_000 for s in stamps]
        assert all(m.ros_msg.header.frame_id == "camera_front" for m in items)

    # the gate is open now: every frame, none waiting
    every = replay(
        fast_bag.path, tmp_path / "every", options=ReplayOptions(per_frame=True), pipeline_factory=gated_factory(gate)
    )
    assert every["mode"] == "every_frame" and every["frames_dropped"] == 0 and every["receipt_latency_ms"] is None
    assert every["frames_processed"] == 30 and [f["stamp_ns"] for f in every["frames"]] == input_stamps
    # a processed frame's outputs do not depend on the mode
    mask = {m.ros_msg.header.stamp.nanosec: bytes(m.ros_msg.data) for m in read_mcap(tmp_path / "every")[
        "/camera/front/anomaly_mask"]}  # fmt: skip
    last = messages["/camera/front/anomaly_mask"][-1].ros_msg
    assert bytes(last.data) == mask[last.header.stamp.nanosec]


def test_cli_realtime_says_which_mode_ran(drive_bag, tmp_path):
    res = cli("replay", str(drive_bag.path), "--out", str(tmp_path / "o"), "--realtime", "--summary",
              str(tmp_path / "s.json"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["mode"] == "realtime" and summary["recorded_span_s"] == pytest.approx(1.1)
    assert summary["wall_s"] >= 1.1 - 0.005
    assert summary["frames_processed"] + summary["frames_dropped"] == 12
    assert "replay (realtime)" in res.stderr and "dropped; receipt-to-output p50" in res.stderr
    assert len(read_mcap(tmp_path / "o")["/camera/front/anomaly_mask"]) == summary["frames_processed"]


def test_a_signal_stops_a_realtime_replay_with_a_readable_bag(tmp_path):
    bag = write_drive_bag(tmp_path / "in", seed=3, frames=300, height=64, width=128, label_topic=None)  # 30 s
    assert interrupted_replay(bag.path, tmp_path, "frame 5 of", signal.SIGINT, "--realtime") == 130
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["interrupted"] == "SIGINT" and summary["mode"] == "realtime"
    assert 5 <= summary["frames_in"] < 300 and 1 <= summary["frames_processed"] <= summary["frames_in"]
    messages = read_mcap(tmp_path / "out")
    assert len(messages["/camera/front/anomaly_mask"]) == summary["frames_processed"]
    assert len(messages["/camera/front/emergency_brake"]) == summary["frames_processed"]


# ------------------------------------------------------------------------------- videos and compressed bags


def h264_or_skip() -> None:
    from meta_ood_perception.ros.replay_output import H264, video_codec

    if video_codec() != H264:
        pytest.skip("PyAV with libx264 is not installed (extra video): videos are mp4v here")


def probe_video(path: Path) -> dict[str, Any]:
    """Codec, pixel format, size and frame count of an MP4, read by PyAV (FFmpeg's demuxer and decoder)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return {"codec": stream.codec_context.name, "pix_fmt": stream.codec_context.pix_fmt, "frames": frames,
                "size": (stream.codec_context.width, stream.codec_context.height)}  # fmt: skip


def test_each_camera_gets_an_h264_video_at_its_own_size(tmp_path):
    """Two cameras of different sizes (one of odd width and height): one browser-playable video each (H.264,
    yuv420p, the index before the data), at the camera's size made even, named after the camera."""
    h264_or_skip()
    small = [image for image, _ in drive(9, 3, 64, 128)]
    odd = [image for image, _ in drive(9, 3, 97, 161)]
    with BagWriter(tmp_path / "in") as bag:
        for i in range(3):
            bag.write("/front/image_raw", "sensor_msgs/msg/Image", image_msg(small[i], "rgb8", 10 + i), 10 + i)
            bag.write("/rear/image_raw", "sensor_msgs/msg/Image", image_msg(odd[i], "rgb8", 10 + i), 10 + i)
    summary = replay(tmp_path / "in", tmp_path / "out", options=ReplayOptions(video=tmp_path / "drive.mp4"))
    front, rear = tmp_path / "drive_front.mp4", tmp_path / "drive_rear.mp4"
    assert not (tmp_path / "drive.mp4").exists()
    assert summary["videos"]["/front/image_raw"]["path"] == str(front)
    assert summary["videos"]["/rear/image_raw"]["path"] == str(rear)
    assert probe_video(front) == {"codec": "h264", "pix_fmt": "yuv420p", "frames": 3, "size": (128, 64)}
    assert probe_video(rear) == {"codec": "h264", "pix_fmt": "yuv420p", "frames": 3, "size": (162, 98)}
    for path in (front, rear):
        head = path.read_bytes()
        assert 0 <= head.find(b"moov") < head.find(b"mdat")  # faststart: a browser plays it while loading
    assert summary["videos"]["/rear/image_raw"]["letterboxed"] == 0
    # replaying again refuses to replace the per-camera videos without --overwrite
    with pytest.raises(ReplayError, match=r"drive_front\.mp4 exists"):
        replay(tmp_path / "in", tmp_path / "out2", options=ReplayOptions(video=tmp_path / "drive.mp4"))


def test_a_frame_of_another_size_is_letterboxed_not_stretched(tmp_path):
    """A camera whose frame size changes mid-bag: the later frames keep their aspect ratio inside the first size,
    with black bars (decoded back, whatever the codec)."""
    import cv2

    from meta_ood_perception.ros.replay_output import ReplayVideo

    video = ReplayVideo(tmp_path / "v.mp4")
    wide = np.full((64, 128, 3), 200, np.uint8)
    square = np.full((128, 128, 3), 200, np.uint8)
    for i in range(9):
        video.add(i * 100_000_000, wide)
    video.add(9 * 100_000_000, square)
    video.close()
    assert (video.frames, video.letterboxed, video.size, video.fps) == (10, 1, (128, 64), 10.0)
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 10 and frames[-1].shape == (64, 128, 3)
    last = frames[-1].mean(axis=(0, 2))  # per column: the square is 64 wide, centred
    assert last[:24].max() < 30 and last[104:].max() < 30 and last[40:88].min() > 170
    assert frames[0].mean(axis=(0, 2)).min() > 170  # the first size fills the frame


def test_without_h264_the_video_is_mp4v_with_one_warning(drive_bag, tmp_path, monkeypatch, caplog):
    import cv2

    from meta_ood_perception.ros import replay_output

    monkeypatch.setattr(replay_output, "video_codec", lambda: replay_output.MP4V)
    with caplog.at_level("WARNING"):
        summary = replay(drive_bag.path, tmp_path / "out", options=ReplayOptions(video=tmp_path / "v.mp4"))
    warnings = [r for r in caplog.records if "MPEG-4 Part 2" in r.getMessage()]
    assert len(warnings) == 1 and "[video]" in warnings[0].getMessage()
    assert summary["videos"][TOPIC]["codec"] == "mp4v" and summary["videos"][TOPIC]["frames"] == 12
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode().lower()
    assert fourcc in ("mp4v", "fmp4") and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 12  # MPEG-4 Part 2


def test_compressed_output_bags_round_trip_and_are_smaller(drive_bag, tmp_path):
    """zstd and lz4 chunks: the same messages as uncompressed (mcap's reader, rosbags' reader and the salvage
    reader all decode them), in fewer bytes; ROS 2 sees no file or message compression in metadata.yaml."""
    from meta_ood_perception.ros.bag_reader import open_reader
    from meta_ood_perception.ros.salvage import SalvageReader

    sizes, contents = {}, {}
    for compression in ("none", "zstd", "lz4"):
        out = tmp_path / compression
        summary = replay(drive_bag.path, out, options=ReplayOptions(compression=compression))
        assert summary["compression"] == compression
        assert chunk_compressions(out) == {"" if compression == "none" else compression}
        sizes[compression] = sum(p.stat().st_size for p in out.glob("*.mcap"))
        contents[compression] = {t: [bytes(m.ros_msg.data) if hasattr(m.ros_msg, "data") else m.log_time_ns
                                     for m in items] for t, items in read_mcap(out).items()}  # fmt: skip
        metadata = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        assert metadata["compression_mode"] == "" and metadata["compression_format"] == ""
        reader = open_reader(out)
        try:
            assert sum(1 for _ in reader.messages()) == 4 * 12
        finally:
            reader.close()
        salvaged = SalvageReader(next(out.glob("*.mcap")))
        try:
            assert sum(1 for _ in salvaged.messages()) == 4 * 12 and salvaged.error is None
        finally:
            salvaged.close()
    assert contents["zstd"] == contents["none"] == contents["lz4"]
    assert sizes["zstd"] < sizes["none"] and sizes["lz4"] < sizes["none"]


def test_a_compressed_input_bag_replays_like_an_uncompressed_one(tmp_path):
    frames = [image for image, _ in drive(4, 3, 64, 128)]
    for compression in ("none", "zstd"):
        with BagWriter(tmp_path / f"in_{compression}", compression=compression) as bag:
            for i, frame in enumerate(frames):
                bag.write(TOPIC, "sensor_msgs/msg/Image", image_msg(frame, "rgb8", 10 + i), 10 + i)
        replay(tmp_path / f"in_{compression}", tmp_path / f"out_{compression}")
    masks = {c: [bytes(m.ros_msg.data) for m in read_mcap(tmp_path / f"out_{c}")["/camera/front/anomaly_mask"]]
             for c in ("none", "zstd")}  # fmt: skip
    assert len(masks["zstd"]) == 3 and masks["zstd"] == masks["none"]


def test_bad_compression_settings_are_refused(tmp_path):
    from meta_ood_perception.errors import ConfigError

    with pytest.raises(ConfigError, match="'gzip'"):
        ReplayOptions(compression="gzip")
    with pytest.raises(ConfigError, match="needs mcap"):
        BagWriter(tmp_path / "b", storage="sqlite3", compression="zstd")
    assert not (tmp_path / "b").exists()
