"""Outputs are never lost or clobbered: replay / demo refuse to replace what they did not write, a bad bundle fails
before anything is deleted, and partial failures still leave complete summaries and videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.evaluation import PixelMetricsAccumulator
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros.params import NodeConfig
from meta_ood_perception.ros.replay import ReplayError, ReplayOptions, replay
from meta_ood_training.drive_bag import write_drive_bag


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_drive_bag(tmp_path_factory.mktemp("b") / "drive", frames=5, height=64, width=128)


def test_overwrite_replaces_bags_and_files_only(bag, tmp_path):
    folder = tmp_path / "keep"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for options, out in ((ReplayOptions(overwrite=True), folder),
                         (ReplayOptions(overwrite=True, summary=folder), tmp_path / "o")):  # fmt: skip
        with pytest.raises(ReplayError, match="not a bag"):
            replay(bag.path, out, options=options)
    assert (folder / "notes.txt").read_text() == "mine"
    with pytest.raises(ReplayError, match="inside the output bag"):
        replay(bag.path, tmp_path / "o2", options=ReplayOptions(summary=tmp_path / "o2" / "s.json"))


def test_a_bad_bundle_fails_before_the_old_output_is_deleted(bag, tmp_path):
    out = tmp_path / "out"
    replay(bag.path, out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match="bundle"):
        replay(bag.path, out, NodeConfig.from_params({"bundle": str(tmp_path / "missing")}),
               ReplayOptions(overwrite=True))  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == before


def test_video_survives_frames_the_pipeline_fails_on(bag, tmp_path):
    bundle = load_bundle("default")

    class Failing:
        name, description, calls = "failing", "fails every third frame", 0

        def __init__(self, inner):
            self.inner = inner

        def run(self, batch):
            self.calls += 1
            if self.calls % 3 == 0:
                raise RuntimeError("device lost")
            return self.inner.run(batch)

    base = AnomalyPipeline.from_bundle(bundle)
    summary = replay(bag.path, tmp_path / "out", options=ReplayOptions(video=tmp_path / "v.mp4"),
                     pipeline_factory=lambda cfg: AnomalyPipeline(bundle, Failing(base.backend)))  # fmt: skip
    assert summary["frames_rejected"] >= 1 and summary["videos"]["/camera/front/image_raw"]["frames"] == 5


def test_labels_without_hazards_still_give_a_summary(tmp_path):
    from meta_ood_perception.ros import conversions as cv
    from meta_ood_perception.ros.replay import BagWriter

    types = cv.RosbagsTypes()
    drive = write_drive_bag(tmp_path / "d", frames=3, height=64, width=128)
    from rosbags.highlevel import AnyReader

    with BagWriter(tmp_path / "clean") as out, AnyReader([drive.path], default_typestore=types.typestore) as reader:
        for conn, log_time, data in reader.messages():
            msg = reader.deserialize(data, conn.msgtype)
            if conn.topic == drive.label_topic:  # relabel: no hazard anywhere (a drive for counting false alarms)
                labels = cv.image_to_labels(msg).copy()
                labels[labels == 1] = 0
                msg = cv.labels_to_image(labels, msg.header, types)
            out.write(conn.topic, conn.msgtype, msg, log_time)
    options = ReplayOptions(label_topic=drive.label_topic, summary=tmp_path / "s.json")
    summary = replay(tmp_path / "clean", tmp_path / "o", options=options)
    pixel = json.loads((tmp_path / "s.json").read_text())["labels"]["pixel"]
    assert summary["frames_processed"] == 3 and pixel["auroc"] is None and "both classes" in pixel["note"]


def test_a_bad_frame_does_not_corrupt_the_pixel_metrics():
    acc = PixelMetricsAccumulator()
    labels = np.array([[0, 1], [0, 1]], np.uint8)
    acc.update(np.array([[0.1, 0.9], [0.2, 0.8]], np.float32), labels)
    with pytest.raises(ValueError, match="NaN"):
        acc.update(np.array([[0.1, np.nan], [0.2, 0.8]], np.float32), labels)
    assert acc.compute()["auroc"] == 1.0 and acc._counts.sum() == 4
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PixelMetricsAccumulator(quantum=1e-5).update(np.array([[1.5, 0.1]], np.float32), np.array([[1, 0]]))


def test_demo_never_writes_into_a_foreign_folder(tmp_path):
    from meta_ood_training.demo import DemoConfig, run_demo

    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "REPORT.md").write_text("my report")
    with pytest.raises(ValueError, match="not empty"):
        run_demo(DemoConfig(out=foreign, frames=8, height=64, width=128), progress=False)
    assert (foreign / "REPORT.md").read_text() == "my report"
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        run_demo(DemoConfig(out=tmp_path / "file", frames=8, height=64, width=128), progress=False)


def test_the_default_demo_shows_the_meta_classifier_removing_false_positives_and_warns_before_braking(tmp_path):
    """The demo's default drive through the embedded bundle: the hazard is found, the meta classifier removes
    false-positive components and keeps most true detections, and the report counts both. The approaching hazard
    is first seen while small (warn: risk below brake.min_risk) and braked for only once its risk reaches it."""
    from meta_ood_training.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=tmp_path / "demo", frames=60), progress=False)
    meta = summary["labels"]["meta_classifier"]
    assert meta["false_positives_before"] > 0 and meta["false_positives_after"] < meta["false_positives_before"]
    assert meta["true_detections"] > 0 and meta["true_detections_lost"] < meta["true_detections"] / 2
    assert summary["frames_out_of_domain"] == 0
    report = (tmp_path / "demo" / "REPORT.md").read_text()
    assert f"| false-positive components (no hazard pixel) | {meta['false_positives_before']} | " in report

    brake, frames = summary["brake"], summary["frames"]
    min_risk = brake["min_risk"]
    phases = [e["phase"] for e in brake["timeline"]]
    assert "warn" in phases and "brake" in phases and phases.index("warn") < phases.index("brake")
    assert all(f["risk"] < min_risk and not f["active"] for f in frames if f["state"] == "warn")
    first_brake = next(f for f in frames if f["state"] == "brake")
    assert first_brake["active"] and first_brake["risk"] >= min_risk
    assert sum(brake["frames"].values()) == len(frames) and brake["frames"]["warn"] > 0
    on = [e for e in summary["brake_events"] if e["event"] == "on"]
    assert on and on[0]["stamp_ns"] == first_brake["stamp_ns"]  # the brake event is the end of the warning
    assert f"`brake.min_risk` = {min_risk:g}" in report
    assert f"- frames: {brake['frames']['brake']} brake, {brake['frames']['warn']} warn" in report
    assert "| phase | risk |" in report and "| warn |" in report and "| brake |" in report

    # the time the user waited: warm-up and replay, each and together
    warmup, wall = summary["warmup_s"], summary["wall_s"]
    assert warmup > 0 and wall > 0 and summary["demo_s"] >= warmup + wall
    assert f"kernels) | {warmup:.1f} |" in report and f"| {wall:.1f} |" in report
    assert f"| **warm-up + replay** (what `meta-ood replay` takes) | {warmup + wall:.1f} |" in report
    # the output bag: zstd chunks, its size in the report
    assert summary["compression"] == "zstd" and f"output {summary['bag_mb']['anomaly_bag']:.1f} MB" in report
    # ground truth from the drive's labels on every frame record; the hazard is visible in some frames, not all
    from meta_ood_training.synthetic import iter_drive

    _, first_target = next(iter(iter_drive(2027, 60, 256, 512)))
    assert frames[0]["hazard_px"] == np.count_nonzero(first_target == 1)
    assert all(f["hazard_px"] is not None for f in frames) and any(f["hazard_px"] > 0 for f in frames)
    # frames.png: four captioned tiles (2 × 2, a 4-pixel gap), the first warn and brake frames among them
    import cv2

    from meta_ood_perception.overlay import overlay_style
    from meta_ood_training.demo import TILE_GAP_PX, pick_frames

    tiles = cv2.imread(str(tmp_path / "demo" / "frames.png"))
    caption = overlay_style(256).banner_px
    assert tiles.shape == (2 * (256 + caption) + TILE_GAP_PX, 2 * 512 + TILE_GAP_PX, 3)
    picks = pick_frames(frames)
    first_warn = next(i for i, f in enumerate(frames) if f["state"] == "warn")
    assert len(picks) == 4 and first_warn in picks and frames.index(first_brake) in picks
    assert cv2.imread(str(tmp_path / "demo" / "timeline.png")) is not None
    video = summary["videos"]["/camera/front/image_raw"]
    assert video["frames"] == 60 and (video["width"], video["height"]) == (512, 256)


def test_the_demo_brake_timeline_counts_states_and_lists_phase_changes():
    from meta_ood_training.demo import brake_line, brake_section, brake_summary

    states = ["clear", "candidate", "clear", "candidate", "warn", "warn", "brake", "brake", "clear", "unavailable"]
    frames = [{"stamp_ns": 10**9 + i * 10**8, "state": s, "risk": i / 10} for i, s in enumerate(states)]
    brake = brake_summary({"frames": [*frames, {"stamp_ns": None, "state": "unavailable", "risk": 1.0}]}, 0.3)
    assert brake["frames"] == {"clear": 3, "candidate": 2, "warn": 2, "brake": 2, "unavailable": 1}
    timeline = [(round(e["t_s"], 3), e["phase"], e["risk"]) for e in brake["timeline"]]
    assert timeline == [(0.4, "warn", 0.4), (0.6, "brake", 0.6), (0.8, "clear", 0.8), (0.9, "unavailable", 0.9)]
    text = "\n".join(brake_section(brake, 10))
    assert "| 0.4 | warn | 0.40 |" in text and "`brake.min_risk` = 0.3" in text and "of 10 processed" in text
    line = brake_line(brake)
    assert line.startswith("brake hint: warn at 0.4 s (risk 0.40), brake at 0.6 s (risk 0.60), clear at 0.8 s")
    assert line.endswith("; 2 warn, 2 brake frames (min_risk 0.3)")


def test_frame_picks_and_hazard_spans():
    from meta_ood_training.demo import _hazard_spans, pick_frames

    states = ["clear"] * 30 + ["warn"] * 10 + ["brake"] * 60
    picks = pick_frames([{"state": s} for s in states])
    assert len(picks) == 4 and picks == sorted(picks) and {30, 40} <= set(picks)
    even = pick_frames([{"state": "clear"}] * 100)  # evenly spaced from a fifth of the way to the end
    assert even[0] == 20 and even[-1] == 99 and len(even) == 4 and np.ptp(np.diff(even)) <= 1
    t = np.arange(10) * 0.1
    present = [False, True, True, False, False, True, False, False, True, True]
    spans = _hazard_spans(t, present, 0.1)
    assert [(round(a, 2), round(b, 2)) for a, b in spans] == [(0.05, 0.25), (0.45, 0.55), (0.75, 0.95)]


def test_a_demo_without_the_score_topic_says_so(tmp_path):
    from meta_ood_perception.ros.bag_reader import open_reader
    from meta_ood_training.demo import DemoConfig, run_demo

    summary = run_demo(DemoConfig(out=tmp_path / "d", frames=8, height=64, width=128, score=False, compression="lz4"),
                       progress=False)  # fmt: skip
    reader = open_reader(tmp_path / "d" / "anomaly_bag")
    try:
        topics = {c.topic for c in reader.connections}
    finally:
        reader.close()
    assert "/camera/front/anomaly_mask" in topics and not any(t.endswith("anomaly_score") for t in topics)
    report = (tmp_path / "d" / "REPORT.md").read_text()
    assert "(MCAP, lz4 chunks, without the anomaly_score topic)" in report and summary["compression"] == "lz4"
