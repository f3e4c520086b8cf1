"""The real node under real rclpy (ROS 2 Jazzy wheels, Fast DDS), in a private network namespace.

These tests run in ``.venv-ros`` (see ``requirements-ros.txt``) through ``tests/test_ros_node.py``, which starts
them inside ``unshare -n`` with loopback multicast, ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a fixed
``ROS_DOMAIN_ID``, and passes the drive frames in ``META_OOD_ROS_FRAMES`` (an npz written by the main venv).
In any other interpreter they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) is not installed in this venv: see requirements-ros.txt")
if os.environ.get("META_OOD_ROS_NETNS") != "1":
    pytest.skip("real-ROS tests run only inside the private network namespace (tests/test_ros_node.py)",
                allow_module_level=True)  # fmt: skip

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from meta_ood_perception.ros import conversions as cv  # noqa: E402
from meta_ood_perception.ros.node import AnomalyNode  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOPIC = "/cam/front/image_raw"
T = cv.RclpyTypes()


@pytest.fixture(scope="module")
def frames():
    data = np.load(os.environ["META_OOD_ROS_FRAMES"])
    return data["images"]


@pytest.fixture(scope="module")
def photos():
    """Real photographs (not street scenes) at the drive's frame size, written by tests/test_ros_node.py."""
    return np.load(os.environ["META_OOD_ROS_FRAMES"])["photos"]


@pytest.fixture(scope="module")
def ros():
    rclpy.init(args=["--ros-args", "--disable-external-lib-logs"])
    yield
    rclpy.shutdown()


class Probe:
    """A test node: publishes frames, records every output of the anomaly node."""

    def __init__(self, node_params: list[Parameter]):
        self.node = AnomalyNode(parameter_overrides=node_params)
        self.probe = rclpy.create_node("probe")
        self.pub = self.probe.create_publisher(Image, TOPIC, 10)
        self.got: dict[str, list] = {"mask": [], "score": [], "brake": [], "diag": []}
        sub = self.probe.create_subscription
        sub(Image, "/cam/front/anomaly_mask", lambda m: self.got["mask"].append(m), 50)
        sub(Image, "/cam/front/anomaly_score", lambda m: self.got["score"].append(m), 50)
        sub(DiagnosticArray, "/cam/front/emergency_brake", lambda m: self.got["brake"].append(m), 50)
        sub(DiagnosticArray, "/diagnostics", lambda m: self.got["diag"].append(m), 50)
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.wait(lambda: self.pub.get_subscription_count() > 0, 10, "discovery")

    def wait(self, cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    def send(self, msg):
        self.pub.publish(msg)

    def diag(self):
        """Values of the latest /diagnostics status of the camera."""
        for array in reversed(self.got["diag"]):
            for s in array.status:
                if s.name.endswith("cam/front"):
                    return s, {kv.key: kv.value for kv in s.values}
        return None, {}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


def image(pixels, encoding="rgb8", stamp=(100, 0), step=None, data=None, height=None, width=None):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    step = step or rows.shape[1]
    if data is None:
        data = np.zeros((h, step), np.uint8)
        data[:, : rows.shape[1]] = rows
    msg = Image(header=Header(frame_id="cam_front"), height=h if height is None else height,
                width=w if width is None else width, encoding=encoding, is_bigendian=0, step=step)  # fmt: skip
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.data = T.uint8_array(data)
    return msg


def frame_outputs(brakes, stamps):
    """The brake message of each frame among ``brakes``, in order: only messages with one of ``stamps``, and a
    heartbeat that republished the previous message (the topic's deadline, when a frame takes longer than the
    heartbeat period) collapsed into it."""
    ours = [b for b in brakes if (b.header.stamp.sec, b.header.stamp.nanosec) in stamps]
    return [b for i, b in enumerate(ours) if i == 0 or b.header.stamp != ours[i - 1].header.stamp]


PARAMS = [Parameter("image_topics", value=[TOPIC]), Parameter("diagnostics_period_s", value=0.2),
          Parameter("input_timeout_s", value=0.8), Parameter("qos.reliability", value="reliable")]  # fmt: skip
# For tests about something else than missing input: on a loaded machine the pauses between a test's frames must
# not turn the camera STALE (and reset the brake window), which a 0.8 s input timeout would.
STEADY = [*(q for q in PARAMS if q.name != "input_timeout_s"), Parameter("input_timeout_s", value=10.0)]


def test_frames_with_a_hazard_give_masks_stamps_brake_and_diagnostics(ros, frames):
    p = Probe(STEADY)
    try:
        stamps = []
        for i, frame in enumerate(frames):
            encoding = "bgr8" if i % 2 else "rgb8"
            pixels = frame[..., ::-1] if i % 2 else frame
            msg = image(
                np.ascontiguousarray(pixels), encoding, stamp=(200 + i, 5), step=frame.shape[1] * 3 + 4 * (i % 3)
            )
            stamps.append((200 + i, 5))
            p.send(msg)
            p.wait(lambda n=i + 1: len(p.got["mask"]) >= n, 20, f"mask {i}")
        h, w = frames.shape[1:3]
        masks = p.got["mask"]
        assert [(m.header.stamp.sec, m.header.stamp.nanosec) for m in masks] == stamps
        assert all(m.header.frame_id == "cam_front" and m.encoding == "mono8" and (m.height, m.width) == (h, w)
                   for m in masks)  # fmt: skip
        values = set(np.unique(np.concatenate([np.frombuffer(m.data, np.uint8) for m in masks])))
        assert values <= {0, 255} and 255 in values

        def per_frame():  # heartbeats before the first frame carry other stamps; republished hints collapse
            return frame_outputs(p.got["brake"], stamps)

        p.wait(lambda: len(per_frame()) >= len(frames) and len(p.got["score"]) >= len(frames), 5, "brake, score")
        brakes = [cv.msg_to_brake(b) for b in per_frame()]
        assert all(b["available"] for b in brakes)
        assert brakes[-1]["active"], brakes[-1]  # the hazard is close and in the lane
        assert [(b.header.stamp.sec, b.header.stamp.nanosec) for b in per_frame()] == stamps
        assert cv.msg_to_score(p.got["score"][0]).shape == (h, w)
        time.sleep(0.5)
        status, values = p.diag()
        assert status is not None and values["frames_processed"] == str(len(frames)), values
        assert values["frames_rejected"] == "0" and float(values["latency_total_p50_ms"]) > 0
    finally:
        p.close()


def test_bad_frames_are_dropped_counted_and_the_node_stays_alive(ros, frames):
    p = Probe(STEADY)
    try:
        good = frames[-1]
        bad = [
            image(good, "nv21", stamp=(300, 1)),  # unsupported encoding
            image(good, "rgb8", stamp=(300, 2), data=np.zeros(100, np.uint8)),  # truncated
            image(good, "rgb8", stamp=(300, 3), height=0, width=0, data=np.zeros(0, np.uint8)),  # zero size
            image(good, "rgb8", stamp=(300, 4), step=10, data=np.zeros(10 * len(good), np.uint8)),  # step < a row
            image(good, "16UC1", stamp=(300, 5)),  # lying / unsupported encoding
        ]

        def of(stamp):
            return [b for b in p.got["brake"] if (b.header.stamp.sec, b.header.stamp.nanosec) == stamp]

        for msg in bad:  # one at a time: a frame waiting while the worker is busy may be replaced by the next
            p.send(msg)
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            p.wait(lambda s=stamp: of(s), 10, f"fail-safe brake message of {stamp}")
        down = [cv.msg_to_brake(of((300, k))[0]) for k in range(1, len(bad) + 1)]
        assert all(not d["available"] and d["level"] == cv.STALE for d in down)
        assert "nv21" in down[0]["reason"]
        p.send(image(good, "rgb8", stamp=(301, 0)))
        p.wait(lambda: len(p.got["mask"]) >= 1, 20, "mask after bad frames")
        assert p.got["mask"][0].header.stamp.sec == 301
        time.sleep(0.5)
        _, values = p.diag()
        assert values["frames_rejected"] == str(len(bad)) and values["frames_processed"] == "1", values
        assert values["frames_received"] == str(len(bad) + 1)
    finally:
        p.close()


def test_no_input_is_reported_as_unavailable_not_as_clear(ros):
    p = Probe(PARAMS)
    try:
        p.wait(lambda: any(not cv.msg_to_brake(b)["available"] for b in p.got["brake"]), 5, "unavailable heartbeat")
        hint = next(cv.msg_to_brake(b) for b in p.got["brake"] if not cv.msg_to_brake(b)["available"])
        assert "first frame" in hint["reason"] and hint["level"] == cv.STALE
        status, _ = p.diag()
        assert status is not None and status.level == bytes([cv.STALE])
        p.send(image(np.zeros((64, 128, 3), np.uint8), stamp=(150, 0)))  # one frame, then silence
        p.wait(lambda: len(p.got["mask"]) >= 1, 20, "the only frame's mask")

        def no_input():
            return [h for h in map(cv.msg_to_brake, p.got["brake"]) if "no input" in h["reason"]]

        p.wait(no_input, 10, "the no-input heartbeat after the frame")
        assert not no_input()[0]["available"] and no_input()[0]["level"] == cv.STALE
    finally:
        p.close()


def test_parameters_are_validated_at_start_and_at_runtime(ros):
    with pytest.raises(ValueError, match="parameter threshold"):
        AnomalyNode(parameter_overrides=[Parameter("threshold", value=1.5)])
    with pytest.raises(ValueError, match=r"qos\.reliability"):
        AnomalyNode(parameter_overrides=[Parameter("qos.reliability", value="sometimes")])
    p = Probe(PARAMS)
    try:
        res = p.node.set_parameters([Parameter("threshold", value=2.0)])[0]
        assert not res.successful and "threshold" in res.reason
        res = p.node.set_parameters([Parameter("bundle", value="/elsewhere")])[0]
        assert not res.successful and "read-only" in res.reason  # declared read_only: restart-only
        res = p.node.set_parameters([Parameter("brake.persistence_k", value=5)])[0]  # k > n
        assert not res.successful and "persistence" in res.reason
        res = p.node.set_parameters([Parameter("threshold", value=0.8), Parameter("brake.min_area_px", value=50)])
        assert all(r.successful for r in res)
        res = p.node.set_parameters([Parameter("road_class", value="runway")])[0]
        assert not res.successful and "road_class" in res.reason
        p.send(image(np.zeros((64, 128, 3), np.uint8), stamp=(500, 0)))  # changes apply before the next frame
        p.wait(lambda: len(p.got["mask"]) >= 1, 20, "a frame after the change")
        pipeline = p.node.cameras[0].processor.pipeline
        assert pipeline.threshold == 0.8 and pipeline.brake_policy.config.min_area_px == 50
    finally:
        p.close()


def test_frames_outside_the_domain_make_the_brake_unavailable_and_the_camera_stale(ros, frames, photos):
    # a long input timeout: "no input" must not mask what the domain monitor says between frames
    p = Probe([*(q for q in PARAMS if q.name != "input_timeout_s"), Parameter("input_timeout_s", value=30.0)])
    try:
        res = p.node.set_parameters([Parameter("domain_patience", value=0)])[0]
        assert not res.successful and "domain_patience" in res.reason
        assert p.node.set_parameters([Parameter("domain_patience", value=2)])[0].successful  # a live parameter
        stamps = [(800 + i, 0) for i in range(10)]

        def ours(first):
            return frame_outputs(p.got["brake"], first)

        for i, stamp in enumerate(stamps):  # ten frames of photographs
            p.send(image(photos[i % len(photos)], stamp=stamp))
            p.wait(lambda n=i + 1: len(ours(stamps)) >= n, 20, f"brake {i}")
        brakes = [cv.msg_to_brake(b) for b in ours(stamps)]
        assert [b["available"] for b in brakes] == [True] + [False] * 9  # patience 2
        assert all("domain" in b["reason"] and b["level"] == cv.STALE for b in brakes[1:])
        p.wait(lambda: p.diag()[1].get("frames_out_of_domain") == "10", 5, "/diagnostics after the photographs")
        status, values = p.diag()
        assert status.level == bytes([cv.STALE]) and "domain" in status.message and values["domain"] == "outside"
        back = [(900, 0)]
        p.send(image(frames[0], stamp=back[0]))  # the synthetic world again
        p.wait(lambda: len(ours(back)) == 1, 20, "brake after the photographs")
        assert cv.msg_to_brake(ours(back)[0])["available"]
        count = len(p.got["diag"])
        p.wait(lambda: len(p.got["diag"]) > count + 1, 5, "diagnostics after the return")
        assert p.diag()[0].level == bytes([cv.OK]) and p.diag()[1]["domain"] == "in"
    finally:
        p.close()


def _run_node(*ros_args: str, timeout: float = 60) -> subprocess.Popen[str]:
    exe = Path(sys.executable).parent / "anomaly_node"
    return subprocess.Popen([str(exe), "--ros-args", *ros_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def test_console_script_with_the_shipped_parameter_file(ros, frames):
    for arg, text in (("threshold:=3.0", "parameter threshold"), ("threshold:=high", "parameter threshold"),
                      ("image_topics:=[not/absolute]", "not/absolute")):  # fmt: skip
        bad = _run_node("-p", arg)
        out, _ = bad.communicate(timeout=60)
        assert bad.returncode == 2 and text in out and "Traceback" not in out, out
    node = _run_node("--params-file", str(ROOT / "config" / "anomaly_node.param.yaml"),
                     "-p", f"image_topics:=[{TOPIC}]", "-p", "max_rate_hz:=30",
                     "-p", "use_sim_time:=false")  # fmt: skip
    probe = rclpy.create_node("script_probe")
    got = []
    probe.create_subscription(Image, "/cam/front/anomaly_mask", got.append, 10)
    pub = probe.create_publisher(Image, TOPIC, 10)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not got:
            if pub.get_subscription_count():
                pub.publish(image(frames[-1], stamp=(400, 0)))
            rclpy.spin_once(probe, timeout_sec=0.2)
        assert got and got[0].header.stamp.sec == 400
    finally:
        node.terminate()
        out, _ = node.communicate(timeout=30)
        probe.destroy_node()
    assert "ready" in out, out


class Flaky:
    """Backend wrapper: raises on the calls in ``fail``, sleeps ``stall_s`` on the calls in ``stall``."""

    def __init__(self, inner, fail=(), stall=(), stall_s=0.0):
        self.inner, self.fail, self.stall, self.stall_s, self.calls = inner, set(fail), set(stall), stall_s, 0
        self.name, self.description = "flaky", "flaky"

    def run(self, batch):
        call, self.calls = self.calls, self.calls + 1
        if call in self.fail:
            raise RuntimeError("CUDA error: device lost")
        if call in self.stall:
            time.sleep(self.stall_s)
        return self.inner.run(batch)


def _levels(p):
    return [s.level[0] for a in p.got["diag"] for s in a.status if s.name.endswith("cam/front")]


def test_backend_faults_report_error_then_recovery_and_unavailable_brake(ros, frames):
    p = Probe(STEADY)
    try:
        pipeline = p.node.cameras[0].processor.pipeline
        pipeline.backend = Flaky(pipeline.backend, fail=range(0, 4))

        def failed():
            return [b for b in p.got["brake"] if 600 <= b.header.stamp.sec < 604]

        for i in range(4):
            p.send(image(frames[-1], stamp=(600 + i, 0)))
            p.wait(lambda n=i + 1: len(failed()) >= n, 20, f"brake {i}")
        p.wait(lambda: cv.ERROR in _levels(p), 5, "ERROR on /diagnostics")
        down = [cv.msg_to_brake(b) for b in failed()]
        assert all(not d["available"] and "backend failure" in d["reason"] for d in down)
        for i in range(3):
            p.send(image(frames[-1], stamp=(700 + i, 0)))
            p.wait(lambda n=i + 1: len(p.got["mask"]) >= n, 20, f"mask {i} after recovery")
        count = len(p.got["diag"])
        p.wait(lambda: len(p.got["diag"]) > count + 1, 5, "diagnostics after recovery")
        assert _levels(p)[-1] == cv.OK
        _, values = p.diag()
        assert values["faults"] == "4" and values["frames_processed"] == "3"
    finally:
        p.close()


def test_stalled_backend_gives_an_unavailable_heartbeat(ros, frames):
    p = Probe([*PARAMS[:1], Parameter("diagnostics_period_s", value=0.1), Parameter("input_timeout_s", value=0.5)])
    try:
        pipeline = p.node.cameras[0].processor.pipeline
        pipeline.backend = Flaky(pipeline.backend, stall={0}, stall_s=2.0)
        p.send(image(frames[-1], stamp=(800, 0)))
        p.wait(lambda: any("backend stalled" in cv.msg_to_brake(b)["reason"] for b in p.got["brake"]), 5,
               "stalled heartbeat")  # fmt: skip
        assert cv.ERROR in _levels(p)
        p.wait(lambda: len(p.got["mask"]) >= 1, 10, "the stalled frame's outputs")
    finally:
        p.close()


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: Frames the probe publishes per output it receives in the overload test: the feed is about this many times the
#: node's throughput as the probe measures it, whatever the machine's speed.
FRAMES_PER_OUTPUT = 4
#: The probe spaces its frames by the median of the node's last this-many output periods, / FRAMES_PER_OUTPUT.
SPACING_OUTPUTS = 8


def test_overload_drops_stale_frames_and_bounds_latency(ros, frames):
    """The node as its own process (as on a vehicle), fed FRAMES_PER_OUTPUT frames per output it sends, spread over
    its output period as measured in this run: the stale frames are dropped (in the slot or the DDS queue), every
    frame is accounted for, receipt latency stays within output periods of the same run, memory stays flat."""
    node = _run_node("-p", f"image_topics:=[{TOPIC}]", "-p", "diagnostics_period_s:=0.2", "-p", "input_timeout_s:=5.0")
    probe = rclpy.create_node("overload_probe")
    diags: list = []
    outputs: list[float] = []  # arrival times of the node's masks (one per processed frame)
    probe.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    probe.create_subscription(Image, "/cam/front/anomaly_mask", lambda m: outputs.append(time.monotonic()), 50)
    pub = probe.create_publisher(Image, TOPIC, 10)
    small = np.ascontiguousarray(frames[-1][::2, ::2])
    count = int(os.environ.get("META_OOD_ROS_OVERLOAD_FRAMES", "600"))
    published = 0

    def publish() -> None:
        nonlocal published
        pub.publish(image(small, stamp=(900 + published // 1000, (published % 1000) * 1000)))
        published += 1

    def spin_until(condition, seconds: float, what: str) -> None:
        end = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < end, f"timed out waiting for {what}"
            rclpy.spin_once(probe, timeout_sec=0.02)

    try:
        spin_until(lambda: pub.get_subscription_count() > 0 and probe.count_publishers("/cam/front/anomaly_mask") > 0,
                   60, "discovery")  # fmt: skip
        settle = time.monotonic() + 1.0  # both sides matched: let it settle
        spin_until(lambda: time.monotonic() > settle, 5, "the settling second")
        # steady state, measured in this run: one frame at a time, the output period after the first few
        periods = []
        for i in range(15):
            sent = time.monotonic()
            publish()
            spin_until(lambda i=i: len(outputs) > i, 60, f"the output of warm-up frame {i}")
            periods.append(outputs[-1] - sent)
        warm, steady = len(outputs), float(np.median(periods[5:]))
        start, next_at = time.monotonic(), time.monotonic()
        progress, deadline = 0, start + 60
        while published < warm + count:
            seen = len(outputs) - warm
            now = time.monotonic()
            if seen > progress:
                progress, deadline = seen, now + 60
            assert now < deadline, f"no output from the node for 60 s after {seen} outputs"
            behind = published - warm < FRAMES_PER_OUTPUT * seen  # short of FRAMES_PER_OUTPUT for an output seen
            if (now >= next_at or behind) and published - warm < FRAMES_PER_OUTPUT * (seen + 1):
                publish()
                recent = np.diff(outputs[-SPACING_OUTPUTS - 1 :]) if seen > SPACING_OUTPUTS else [steady]
                next_at = now + float(np.median(recent)) / FRAMES_PER_OUTPUT
                if published == warm + count // 10:
                    rss_warm = _rss(node.pid)
            rclpy.spin_once(probe, timeout_sec=max(0.0, min(next_at - time.monotonic(), 0.05)))
        elapsed = time.monotonic() - start
        intervals = np.diff(outputs[warm - 1 :])  # the node's output period under overload, as the probe sees it

        def settled() -> bool:  # the last diagnostics count every frame: nothing waits, nothing more to arrive
            v = {kv.key: kv.value for kv in diags[-1].status[0].values} if diags else {}
            return bool(v) and int(v["frames_processed"]) + int(v["frames_dropped"]) == int(v["frames_received"]) \
                and published - int(v["frames_received"]) - int(v["frames_superseded"]) <= 2  # fmt: skip

        spin_until(settled, 30, "the diagnostics to count every frame")
        values = {kv.key: kv.value for kv in diags[-1].status[0].values}
        received, processed = int(values["frames_received"]), int(values["frames_processed"])
        dropped, superseded = int(values["frames_dropped"]), int(values["frames_superseded"])
        receipt = np.array([float(values["latency_receipt_p50_ms"]), float(values["latency_receipt_p99_ms"])])
        period = np.array([np.percentile(intervals, 50), intervals.max()]) * 1e3
        print(f"\nROS overload (node process): {published} frames in {elapsed:.1f} s, {len(intervals)} outputs, "
              f"steady-state period {steady * 1e3:.1f} ms, output period p50 {period[0]:.1f} / max {period[1]:.1f} "
              f"ms: {values}")  # fmt: skip
        assert int(values["frames_rejected"]) == 0, values
        assert processed + dropped == received, values  # nothing waits: every received frame is done or dropped
        # every published frame is accounted for, but for the last few: a frame superseded after the last one the
        # node received leaves no gap in the sequence numbers to count
        assert 0 <= published - received - superseded <= 2, values
        assert published - warm >= 2 * (processed - warm), values  # the feed outpaced the node at least twice over
        assert dropped + superseded >= count // 2, values  # ... and its stale frames were dropped, not queued
        # a frame waits at most for the frame in progress: receipt latency within two of the node's output periods
        # (p50 against p50; p99 against the longest period, as one hiccup is in both of a frame's periods)
        assert receipt[0] <= 2 * period[0] and receipt[1] <= 2 * period[1], (receipt, period)
        growth = _rss(node.pid) / rss_warm - 1
        print(f"RSS growth after the first 10 %: {100 * growth:.2f} %")
        assert growth < 0.05
    finally:
        node.terminate()
        node.communicate(timeout=30)
        probe.destroy_node()


def _stream_then_signal(frames, sig: int) -> tuple[int, str, float, int]:
    """Start the node as a process, stream frames at ~20 Hz, send ``sig`` once outputs flow (while frames keep
    coming). Returns (exit status, output, seconds from the signal to the exit, masks received)."""
    node = _run_node("-p", f"image_topics:=[{TOPIC}]", "-p", "input_timeout_s:=10.0")
    probe = rclpy.create_node(f"signal_probe_{sig}")
    masks: list = []
    probe.create_subscription(Image, "/cam/front/anomaly_mask", masks.append, 10)
    pub = probe.create_publisher(Image, TOPIC, 10)
    frame = frames[-1]
    try:
        end = time.monotonic() + 60
        i = 0
        while time.monotonic() < end and len(masks) < 3:
            if pub.get_subscription_count():
                pub.publish(image(frame, stamp=(1000 + i, 0)))
                i += 1
            rclpy.spin_once(probe, timeout_sec=0.05)
        assert len(masks) >= 3, "no outputs before the signal"
        for k in range(5):  # frames in flight when the signal arrives
            pub.publish(image(frame, stamp=(2000 + k, 0)))
            time.sleep(0.01)
        node.send_signal(sig)
        sent = time.monotonic()
        while node.poll() is None and time.monotonic() - sent < 30:
            pub.publish(image(frame, stamp=(3000, 0)))
            rclpy.spin_once(probe, timeout_sec=0.02)
        took = time.monotonic() - sent
        out, _ = node.communicate(timeout=30)
        return node.returncode, out, took, len(masks)
    finally:
        if node.poll() is None:
            node.kill()
            node.communicate(timeout=30)
        probe.destroy_node()


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_signal_while_streaming_exits_cleanly(ros, frames, name):
    import signal

    status, out, took, _ = _stream_then_signal(frames, getattr(signal, name))
    assert status == 0, out
    assert "Traceback" not in out and "RCLError" not in out and "internal error" not in out, out
    assert "faults" not in out and "backend failure" not in out, out
    print(f"\n{name} while streaming: exit status {status} {took:.2f} s after the signal")
    assert took < 2.0 + 1.0, f"{name}: exit took {took:.2f} s"  # 2 s in the issue; +1 s for a loaded CI machine


def test_overlay_only_while_subscribed(ros, frames):
    p = Probe(STEADY)
    try:
        cam = p.node.cameras[0]
        built = []
        original = cam.processor.overlay
        cam.processor.overlay = lambda frame: built.append(1) or original(frame)
        p.send(image(frames[-1], stamp=(1100, 0)))
        p.wait(lambda: len(p.got["mask"]) >= 1, 20, "mask without an overlay subscriber")
        assert built == [] and cam.publishers["anomaly_overlay"].get_subscription_count() == 0
        overlays: list = []
        p.probe.create_subscription(Image, "/cam/front/anomaly_overlay", overlays.append, 10)
        p.wait(lambda: cam.publishers["anomaly_overlay"].get_subscription_count() > 0, 10, "overlay discovery")
        p.send(image(frames[-1], stamp=(1101, 7)))
        p.wait(lambda: len(overlays) >= 1, 20, "overlay")
        o = overlays[0]
        h, w = frames.shape[1:3]
        assert (o.encoding, o.height, o.width, o.step) == ("rgb8", h, w, 3 * w)
        assert (o.header.stamp.sec, o.header.stamp.nanosec, o.header.frame_id) == (1101, 7, "cam_front")
        pixels = np.frombuffer(o.data, np.uint8).reshape(h, w, 3)
        assert not np.array_equal(pixels, frames[-1])  # drawn on: banner, tint, boxes
        assert built == [1]
    finally:
        p.close()


def test_emergency_brake_offers_deadline_and_liveliness_and_silence_is_detected(ros):
    from rclpy.duration import Duration
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import DurabilityPolicy, LivelinessPolicy, QoSProfile

    p = Probe([*PARAMS[:1], Parameter("diagnostics_period_s", value=0.25)])
    try:
        infos = p.probe.get_publishers_info_by_topic("/cam/front/emergency_brake")
        assert len(infos) == 1
        qos = infos[0].qos_profile
        assert qos.deadline == Duration(seconds=0.5) and qos.liveliness_lease_duration == Duration(seconds=0.5)
        assert qos.liveliness == LivelinessPolicy.AUTOMATIC and qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        missed: list = []
        requested = QoSProfile(depth=1, deadline=Duration(seconds=0.5))
        late: list = []
        p.probe.create_subscription(DiagnosticArray, "/cam/front/emergency_brake", late.append, requested,
                                    event_callbacks=SubscriptionEventCallbacks(deadline=missed.append))  # fmt: skip
        # a consumer that subscribes late still hears the hint: before the first frame it says "unavailable"
        p.wait(lambda: late, 10, "a brake hint for a late subscriber")
        assert not cv.msg_to_brake(late[-1])["available"] and "first frame" in cv.msg_to_brake(late[-1])["reason"]
        p.executor.remove_node(p.node)
        p.node.destroy_node()  # the node dies: the topic goes silent
        p.wait(lambda: missed, 10, "a requested-deadline-missed event after the node stopped")
    finally:
        p.executor.shutdown()
        p.probe.destroy_node()


def test_lifecycle_node_configures_activates_and_deactivates(ros, frames):
    from rclpy.lifecycle import TransitionCallbackReturn

    from meta_ood_perception.ros.lifecycle_node import AnomalyLifecycleNode

    bad = AnomalyLifecycleNode(parameter_overrides=[Parameter("bundle", value="/no/such/bundle")])
    try:
        assert bad.trigger_configure() != TransitionCallbackReturn.SUCCESS and bad.perception is None
    finally:
        bad.destroy_node()
    node = AnomalyLifecycleNode(parameter_overrides=STEADY)
    probe = rclpy.create_node("lifecycle_probe")
    masks: list = []
    brakes: list = []
    probe.create_subscription(Image, "/cam/front/anomaly_mask", masks.append, 10)
    probe.create_subscription(DiagnosticArray, "/cam/front/emergency_brake", brakes.append, 10)
    pub = probe.create_publisher(Image, TOPIC, 10)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def wait(cond, what, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            time.sleep(0.02)
        assert cond(), f"timed out waiting for {what}"

    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        time.sleep(0.5)
        assert pub.get_subscription_count() == 0  # configured, not yet listening
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait(lambda: pub.get_subscription_count() > 0, "the camera subscription after activate")
        pub.publish(image(frames[-1], stamp=(1200, 0)))
        wait(lambda: masks, "a mask while active")
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        wait(lambda: any("inactive" in cv.msg_to_brake(b)["reason"] for b in brakes), "the inactive brake hint")
        count = len(masks)
        pub.publish(image(frames[-1], stamp=(1201, 0)))
        time.sleep(1.0)
        assert len(masks) == count  # nothing is processed while inactive
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS and node.perception is None
        # configured again: one parameter callback (the released instance no longer validates changes)
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.set_parameters([Parameter("threshold", value=0.8)])[0].successful
        assert node.perception.config.pipeline.threshold == 0.8
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.destroy_node()


def test_two_cameras_in_one_node_keep_their_outputs_apart(ros, frames):
    rear = "/cam/rear/image_raw"
    p = Probe([Parameter("image_topics", value=[TOPIC, rear]), *STEADY[1:]])
    try:
        rear_masks: list = []
        rear_brakes: list = []
        p.probe.create_subscription(Image, "/cam/rear/anomaly_mask", rear_masks.append, 50)
        p.probe.create_subscription(DiagnosticArray, "/cam/rear/emergency_brake", rear_brakes.append, 50)
        pub_rear = p.probe.create_publisher(Image, rear, 10)
        p.wait(lambda: pub_rear.get_subscription_count() > 0, 10, "rear discovery")
        for i in range(3):
            p.send(image(frames[i], stamp=(1300 + i, 0)))
            pub_rear.publish(image(frames[-1 - i], stamp=(1400 + i, 0)))
            p.wait(lambda n=i + 1: len(p.got["mask"]) >= n and len(rear_masks) >= n, 20, f"both masks {i}")
        assert [m.header.stamp.sec for m in p.got["mask"]] == [1300, 1301, 1302]
        assert [m.header.stamp.sec for m in rear_masks] == [1400, 1401, 1402]
        p.wait(lambda: {b.header.stamp.sec for b in rear_brakes} >= {1400, 1401, 1402}, 10, "rear brake hints")
        assert not {b.header.stamp.sec for b in rear_brakes} & {1300, 1301, 1302}
        p.wait(lambda: any(len(a.status) == 2 for a in p.got["diag"]), 5, "a /diagnostics status per camera")
    finally:
        p.close()


def test_build_only_loads_warms_and_exits(ros):
    node = _run_node("-p", "trt_build_only:=true", "-p", f"image_topics:=[{TOPIC}]")
    out, _ = node.communicate(timeout=120)
    assert node.returncode == 0 and "build only" in out and "Traceback" not in out, out
