"""``meta-ood demo``: a synthetic drive as a rosbag, replayed through the embedded default bundle on the CPU.

Writes into one folder: ``drive/`` (the input bag: camera frames and their hazard labels), ``anomaly_bag/`` (the
node's outputs, MCAP with zstd-compressed chunks), ``annotated.mp4`` (H.264 with PyAV, else mp4v: mask overlay,
component boxes labelled ``hazard c`` with c = 1 − P(false positive), brake state), ``timeline.png`` (brake risk
against ``brake.min_risk``, warn and brake phases, components kept and removed, latency per frame, and when the
labels show the hazard), ``latency.png`` (per-stage latency), ``frames.png`` (four annotated frames, each with its
frame number, time and brake state; the first warn and brake frames among them), ``summary.json`` (the replay
summary) and ``REPORT.md`` (pixel and component metrics, the brake hint's timeline — warn: hazard seen, not yet
worth braking; brake: active — and its events, latency, the time spent: warm-up and replay, bag sizes). Needs no
GPU, ROS or dataset.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from meta_ood_perception.brake import BrakeState
from meta_ood_perception.errors import ConfigError, FaultError
from meta_ood_perception.overlay import banner, overlay_style
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.bag_compression import DEFAULT_COMPRESSION, check_compression
from meta_ood_perception.ros.bag_reader import deserialize, open_reader
from meta_ood_perception.ros.params import NodeConfig
from meta_ood_perception.ros.replay import ReplayOptions, replay

from .drive_bag import write_drive_bag

LOG = logging.getLogger(__name__)
MARKER = ".meta_ood_demo"
OUTPUTS = ("drive", "anomaly_bag", "annotated.mp4", "timeline.png", "latency.png", "frames.png", "summary.json",
           "REPORT.md")  # fmt: skip
VIDEO_NAMES = {"h264": "H.264", "mp4v": "MPEG-4 Part 2: install the video extra for H.264"}
CAPTION = (48, 48, 48)
TILE_GAP_PX = 4  # white gap between the tiles of frames.png
HAZARD_SHADE, HAZARD_ALPHA = (
    "tab:blue",
    0.12,
)  # timeline.png: frames whose labels show the hazard  # BGR: the caption bar of a frames.png tile
#: The phases the brake timeline tells apart: a candidate (a hit, not yet persistent) is still clear.
PHASES: dict[BrakeState, str] = {"clear": "clear", "candidate": "clear", "warn": "warn", "brake": "brake",
                                 "unavailable": "unavailable"}  # fmt: skip


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings: output folder, the drive (seed, frames, size, rate), the bundle / backend to replay with, and
    the output bag's contents (``score``: write the anomaly_score topic) and MCAP chunk compression."""

    out: Path = Path("meta_ood_demo")
    seed: int = 2027
    frames: int = 200
    height: int = 256
    width: int = 512
    fps: float = 10.0
    bundle: str = "default"
    backend: str = "onnxruntime"
    score: bool = True
    compression: str = DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        check_compression(self.compression)
        if self.frames < 8:
            raise ConfigError(f"demo needs at least 8 frames, got {self.frames}")
        if min(self.height, self.width) < 64:
            raise ConfigError(f"demo frames must be at least 64×64, got {self.height}×{self.width}")


def run_demo(config: DemoConfig, progress: bool = True) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the replay summary with ``"brake"`` (:func:`brake_summary`)
    and ``"paths"`` added."""
    out = config.out
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise ConfigError(f"demo output {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise ConfigError(f"demo output folder {out} is not empty and was not written by meta-ood demo; choose --out")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by meta-ood demo; its next run replaces the files it wrote here\n")
    for name in OUTPUTS:  # only the demo's own files are replaced
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
    t0 = time.perf_counter()
    drive = write_drive_bag(out / "drive", seed=config.seed, frames=config.frames, height=config.height,
                            width=config.width, fps=config.fps, progress=progress)  # fmt: skip
    t_bag = time.perf_counter() - t0
    node = NodeConfig.from_params({"bundle": config.bundle, "backend": config.backend, "publish_score": config.score,
                                   "image_topics": [drive.image_topic]})  # fmt: skip
    options = ReplayOptions(
        image_topics=(drive.image_topic,), label_topic=drive.label_topic, summary=out / "summary.json",
        video=out / "annotated.mp4", overwrite=True, per_frame=True, compression=config.compression,
    )  # fmt: skip
    with tqdm(total=config.frames, desc="replay", disable=not progress) as bar:
        summary = replay(out / "drive", out / "anomaly_bag", node, options,
                         on_frame=lambda done, total: bar.update(done - bar.n))  # fmt: skip
    summary["drive_bag_s"] = t_bag
    summary["brake"] = brake_summary(summary, node.pipeline.brake.min_risk)
    if drive.label_topic is not None:
        hazards = hazard_pixels(out / "drive", drive.label_topic)
        for record in summary["frames"]:
            record["hazard_px"] = hazards.get(record["stamp_ns"])
    plot_timeline(summary, out / "timeline.png")
    plot_latency(summary, out / "latency.png")
    sample_frames(out / "annotated.mp4", out / "frames.png", summary["frames"])
    summary["bag_mb"] = {"drive": folder_mb(out / "drive"), "anomaly_bag": folder_mb(out / "anomaly_bag")}
    summary["demo_s"] = time.perf_counter() - t0
    (out / "REPORT.md").write_text(report(summary, config))
    summary["paths"] = {name: str(out / name) for name in OUTPUTS}
    return summary


def hazard_pixels(bag: Path, label_topic: str) -> dict[int, int]:
    """Header stamp (ns) → pixels labelled hazard (1) in each label image of ``label_topic`` in ``bag``."""
    reader = open_reader(bag)
    try:
        connections = [c for c in reader.connections if c.topic == label_topic]
        counts = {}
        for connection, _, raw in reader.messages(connections=connections):
            msg = deserialize(reader, raw, connection)
            counts[cv.stamp_ns(msg.header)] = int(np.count_nonzero(cv.image_to_labels(msg) == 1))
        return counts
    finally:
        reader.close()


def folder_mb(path: Path) -> float:
    """Size of the files under ``path``, MB (10⁶ bytes)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def _hazard_spans(t: npt.NDArray[np.float64], present: list[bool], period: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of frames whose labels show the hazard, each frame covering ±period / 2."""
    spans: list[tuple[float, float]] = []
    for i, here in enumerate(present):
        if not here:
            continue
        start, end = t[i] - period / 2, t[i] + period / 2
        if spans and i > 0 and present[i - 1]:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans


def plot_timeline(summary: dict[str, Any], path: Path) -> None:
    """Brake risk (against ``min_risk`` when ``summary["brake"]`` has it) with the warn and brake phases, the
    components kept and removed by the meta classifier (stacked bars), and total latency per frame (needs
    ``per_frame`` records); frames whose labels show the hazard (records with ``hazard_px`` > 0) are shaded on
    every panel, and the hazard's size in the labels is drawn beside the components."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    frames = [f for f in summary["frames"] if f["stamp_ns"] is not None]
    t0 = frames[0]["stamp_ns"] if frames else 0
    t = np.array([(f["stamp_ns"] - t0) / 1e9 for f in frames])
    period = float(np.median(np.diff(t))) if t.size > 1 else 0.1
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True, height_ratios=(1.2, 1, 0.8))
    hazard = [bool(f.get("hazard_px")) for f in frames]
    for ax in axes:
        for start, end in _hazard_spans(t, hazard, period):
            ax.axvspan(start, end, color=HAZARD_SHADE, alpha=HAZARD_ALPHA, linewidth=0)
    axes[0].plot(t, [f["risk"] for f in frames], color="tab:red", label="risk")
    min_risk = summary.get("brake", {}).get("min_risk")
    if min_risk is not None:
        axes[0].axhline(min_risk, color="tab:red", linestyle="--", linewidth=0.8, label=f"min_risk {min_risk:g}")
    phases = [PHASES[f["state"]] for f in frames]
    axes[0].fill_between(t, 0, [0.12 if p == "warn" else 0.0 for p in phases], color="tab:orange", alpha=0.6,
                         step="mid", label="warn: hazard seen, not yet worth braking")  # fmt: skip
    axes[0].fill_between(t, 0, [0.12 if p == "brake" else 0.0 for p in phases], color="darkred", alpha=0.7,
                         step="mid", label="brake hint active")  # fmt: skip
    handles, _ = axes[0].get_legend_handles_labels()
    if any(hazard):
        handles.append(Patch(color=HAZARD_SHADE, alpha=HAZARD_ALPHA, label="hazard in the labels (ground truth)"))
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("brake risk")
    axes[0].legend(handles=handles, loc="upper left", fontsize=8)
    kept = np.array([f["kept"] for f in frames])
    removed = np.array([f["components"] for f in frames]) - kept
    axes[1].bar(t, kept, width=period, color="tab:red", label="kept (hazard)")
    axes[1].bar(t, removed, width=period, bottom=kept, color="0.65", label="removed by the meta classifier")
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set_ylabel("components")
    handles, _ = axes[1].get_legend_handles_labels()
    if any(hazard):  # the labelled hazard's size, on its own axis
        size = axes[1].twinx()
        size.plot(t, [f.get("hazard_px") or 0 for f in frames], color=HAZARD_SHADE, linestyle="--", linewidth=1,
                  label="hazard in the labels, pixels (right axis)")  # fmt: skip
        size.set_ylim(bottom=0)
        size.set_ylabel("hazard, pixels", color=HAZARD_SHADE)
        handles += size.get_legend_handles_labels()[0]
    axes[1].legend(handles=handles, loc="upper left", fontsize=8)
    axes[2].plot(t, [f["total_ms"] or np.nan for f in frames], color="tab:blue", linewidth=1)
    axes[2].set_ylabel("latency, ms")
    axes[2].set_xlabel("time since the first frame, s")
    axes[2].set_ylim(bottom=0)
    fig.suptitle("Synthetic drive: a hazard approaches in the ego lane")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def brake_summary(summary: dict[str, Any], min_risk: float) -> dict[str, Any]:
    """The brake hint over the drive, from the replay's per-frame records (one camera).

    Returns:
        ``{"min_risk", "frames": {state: frames in it} for every :data:`~meta_ood_perception.brake.BrakeState`,
        "timeline": [{"t_s", "phase", "risk"}]}``: the changes of phase (:data:`PHASES`: clear, warn, brake,
        unavailable) in stamp order, ``t_s`` seconds since the first frame, ``risk`` the hint's risk then.
    """
    frames = [f for f in summary.get("frames", []) if f["stamp_ns"] is not None]
    counts = {state: 0 for state in PHASES}
    timeline: list[dict[str, Any]] = []
    phase = "clear"
    for f in frames:
        counts[f["state"]] += 1
        if PHASES[f["state"]] != phase:
            phase = PHASES[f["state"]]
            timeline.append({"t_s": (f["stamp_ns"] - frames[0]["stamp_ns"]) / 1e9, "phase": phase, "risk": f["risk"]})
    return {"min_risk": min_risk, "frames": counts, "timeline": timeline}


def brake_line(brake: dict[str, Any]) -> str:
    """One log line on the brake hint (see :func:`brake_summary`): its phase changes, then frames warn / brake."""
    changes = ", ".join(f"{e['phase']} at {e['t_s']:.1f} s (risk {e['risk']:.2f})" for e in brake["timeline"])
    return (f"brake hint: {changes or 'clear throughout'}; {brake['frames']['warn']} warn, {brake['frames']['brake']} "
            f"brake frames (min_risk {brake['min_risk']:g})")  # fmt: skip


def brake_section(brake: dict[str, Any], processed: int) -> list[str]:
    """REPORT.md lines on the brake hint: frames per phase and its timeline (see :func:`brake_summary`)."""
    n = brake["frames"]
    lines = [
        "## Brake hint", "",
        f"A hazard that persists in the corridor is *seen*; the hint turns *active* (brake) only once its risk reaches "
        f"`brake.min_risk` = {brake['min_risk']:g} (risk = share of the last frames that hit × (1 − P(false "
        "positive)) × corridor area / `full_risk_area_px`, capped at 1). Until then it *warns*: hazard seen, not "
        "yet worth braking (DiagnosticStatus WARN).", "",
        f"- frames: {n['brake']} brake, {n['warn']} warn, {n['candidate']} candidate (a hit, not yet persistent), "
        f"{n['clear']} clear, {n['unavailable']} unavailable, of {processed} processed", "",
        "| time, s | phase | risk |", "|---|---|---|",
    ]  # fmt: skip
    lines += [f"| {_fmt(e['t_s'], 1)} | {e['phase']} | {_fmt(e['risk'], 2)} |" for e in brake["timeline"]]
    if not brake["timeline"]:
        lines.append("| — | clear throughout | — |")
    return [*lines, ""]


def plot_latency(summary: dict[str, Any], path: Path) -> None:
    """Per-stage p50 / p95 / p99 latency as grouped bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = list(summary["latency_ms"])
    x = np.arange(len(stages))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for i, q in enumerate(("p50", "p95", "p99")):
        ax.bar(x + (i - 1) * 0.27, [summary["latency_ms"][s][q] for s in stages], 0.27, label=q)
    ax.set_xticks(x, stages, rotation=30)
    ax.set_ylabel("ms")
    ax.set_title(f"Per-stage latency ({summary['backend']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pick_frames(records: list[dict[str, Any]], count: int = 4) -> list[int]:
    """Indices of ``count`` records to show: the first frame of each warn and brake phase (in time order), then
    evenly spaced frames from a fifth of the way in; sorted, at most ``count``."""
    total = len(records)
    picks: list[int] = []
    for i, record in enumerate(records):
        phase = PHASES.get(record.get("state", "clear"), "clear")
        previous = PHASES.get(records[i - 1].get("state", "clear"), "clear") if i else "clear"
        if phase in ("warn", "brake") and phase != previous and len(picks) < count // 2:
            picks.append(i)
    for i in np.linspace(total // 5, total - 1, count).astype(int).tolist() if total else []:
        if len(picks) < count and all(abs(i - p) > total // (4 * count) for p in picks):
            picks.append(i)
    return sorted(set(picks))[:count]


def sample_frames(video: Path, path: Path, records: list[dict[str, Any]] | None = None, count: int = 4) -> None:
    """``count`` frames of the annotated video (:func:`pick_frames`), 2 per row, as a PNG, each under a caption:
    frame number, time since the first frame and brake state, from ``records`` (the replay's per-frame records of the
    video's camera, one per video frame); without them, or when their number differs from the video's frames, the
    caption gives the video frame number only."""
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    records = [r for r in records or [] if r.get("error") is None]
    matched = len(records) == total
    picks = pick_frames(records if matched else [{}] * total, count)
    frames = []
    for i in range(max(picks, default=-1) + 1):
        ok, frame = capture.read()
        if not ok:
            break
        if i in picks:
            frames.append(
                _captioned(np.asarray(frame, np.uint8), _caption(i, total, records[i] if matched else None, records))
            )
    capture.release()
    if not frames:
        raise FaultError(f"cannot read frames back from {video}")
    while len(frames) % 2:
        frames.append(np.zeros_like(frames[0]))
    h, w = frames[0].shape[:2]
    column, row = (
        np.full((h, TILE_GAP_PX, 3), 255, np.uint8),
        np.full((TILE_GAP_PX, 2 * w + TILE_GAP_PX, 3), 255, np.uint8),
    )
    rows = [np.hstack([frames[i], column, frames[i + 1]]) for i in range(0, len(frames), 2)]
    cv2.imwrite(str(path), np.vstack([part for r in rows for part in (r, row)][:-1]))


def _caption(i: int, total: int, record: dict[str, Any] | None, records: list[dict[str, Any]]) -> str:
    """``frame 41 / 200   t = 4.0 s   warn`` (1-based frame number; without a record, the video frame only)."""
    if record is None or record.get("stamp_ns") is None:
        return f"video frame {i + 1} / {total}"
    t = (record["stamp_ns"] - records[0]["stamp_ns"]) / 1e9
    return f"frame {i + 1} / {total}   t = {t:.1f} s   {PHASES.get(record['state'], record['state'])}"


def _captioned(bgr: npt.NDArray[np.uint8], text: str) -> npt.NDArray[np.uint8]:
    """``bgr`` under a dark caption bar (the overlay's banner, sized for the frame) holding ``text``."""
    style = overlay_style(bgr.shape[0])
    bar = np.zeros((style.banner_px, bgr.shape[1], 3), np.uint8)
    banner(bar, text, CAPTION, style)
    return np.vstack([bar, bgr])


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def meta_section(summary: dict[str, Any]) -> list[str]:
    """REPORT.md lines on what the meta classifier removed (from the per-frame records and the label counts)."""
    frames = [f for f in summary.get("frames", []) if f.get("error") is None]
    total = sum(f["components"] for f in frames)
    kept = sum(f["kept"] for f in frames)
    lines = [
        "## The meta classifier",
        "",
        f"Over {len(frames)} frames the score crossed the threshold in {total} components; the meta classifier "
        f"removed {total - kept} of them (P(false positive) at or above the bundle's cut) and kept {kept}.",
    ]
    counts = summary.get("labels", {}).get("meta_classifier")
    if counts and counts["components"]:
        fp, fp_after = counts["false_positives_before"], counts["false_positives_after"]
        lines += ["", "| against the drive's labels | before the meta classifier | after |", "|---|---|---|",
                  f"| false-positive components (no hazard pixel) | {fp} | {fp_after} |",
                  f"| true detections (touch the hazard) | {counts['true_detections']} | "
                  f"{counts['true_detections'] - counts['true_detections_lost']} |"]  # fmt: skip
    return [*lines, ""]


def domain_line(summary: dict[str, Any]) -> str:
    """The REPORT.md line on the domain monitor: frames outside the bundle's domain, or that the monitor is off."""
    monitor = summary.get("domain_monitor") or {}
    out = summary.get("frames_out_of_domain", 0)
    if not monitor.get("calibrated"):
        return "- frames outside the bundle's domain: not checked (the bundle has no domain calibration)"
    return (f"- frames outside the bundle's domain: {out} of {summary['frames_processed']} (the brake hint is "
            f"unavailable after {monitor.get('domain_patience')} in a row)")  # fmt: skip


def report(summary: dict[str, Any], config: DemoConfig) -> str:
    """REPORT.md text from a replay summary."""
    labels = summary.get("labels", {})
    pixel, comp = labels.get("pixel", {}), labels.get("components", {})
    lines = [
        "# meta-ood demo", "",
        f"A synthetic drive (seed {config.seed}, {config.frames} frames of {config.height}×{config.width} at "
        f"{config.fps:g} frames/s; a road hazard approaches in the ego lane) written as a rosbag2 bag, replayed "
        f"through bundle `{config.bundle}` with {summary['backend']}.", "",
        f"- frames: {summary['frames_in']} in, {summary['frames_processed']} processed, "
        f"{summary['frames_rejected']} rejected", domain_line(summary),
        *size_lines(summary, config), "", *time_lines(summary),
        *([f"**Interrupted by {summary['interrupted']}**: the figures below cover the frames processed before it.",
           ""] if summary.get("interrupted") else []),
        "## Detection quality (against the drive's hazard labels)", "",
        "| pixel AUROC | FPR95 | AUPRC | SMIYC sIoU | PPV | mean F1 |", "|---|---|---|---|---|---|",
        f"| {_fmt(pixel.get('auroc'))} | {_fmt(pixel.get('fpr95'))} | {_fmt(pixel.get('auprc'))} | "
        f"{_fmt(comp.get('sIoU_gt'))} | {_fmt(comp.get('PPV'))} | {_fmt(comp.get('mean_F1'))} |", "",
        *meta_section(summary),
        *(brake_section(summary["brake"], summary["frames_processed"]) if "brake" in summary else []),
        "## Brake events", "", "| time, s | event | risk | reason |", "|---|---|---|---|",
    ]  # fmt: skip
    t0 = next((f["stamp_ns"] for f in summary.get("frames", []) if f["stamp_ns"] is not None), 0)
    for e in summary["brake_events"]:
        when = (e["stamp_ns"] - t0) / 1e9 if e["stamp_ns"] is not None else float("nan")
        lines.append(f"| {_fmt(when, 1)} | {e['event']} | {_fmt(e['risk'], 2)} | {e['reason']} |")
    if not summary["brake_events"]:
        lines.append("| — | none | — | — |")
    lines += ["", "## Latency per stage, ms", "", "| stage | p50 | p95 | p99 |", "|---|---|---|---|"]
    for stage, q in summary["latency_ms"].items():
        lines.append(f"| {stage} | {q['p50']:.1f} | {q['p95']:.1f} | {q['p99']:.1f} |")
    videos = summary.get("videos") or {}
    codec = str(next(iter(videos.values()))["codec"]) if videos else "none"
    lines += ["", "## Files", "", "- `drive/`: input bag (camera frames + hazard labels)",
              f"- `anomaly_bag/`: the node's outputs (MCAP, {summary.get('compression', 'none')} chunks)",
              f"- `annotated.mp4` ({VIDEO_NAMES.get(codec, codec)}), `frames.png`: overlays. A red box is a kept "
              "component labelled `hazard c`: c = 1 − P(false positive), the meta classifier's confidence that it "
              "is a true hazard; grey boxes are components it removed; the yellow outline is the brake corridor",
              "- `timeline.png`, `latency.png`: plots (blue shading in `timeline.png`: frames whose labels show the "
              "hazard)", "- `summary.json`: the replay summary, machine-readable", ""]  # fmt: skip
    return "\n".join(lines)


def time_lines(summary: dict[str, Any]) -> list[str]:
    """REPORT.md's time table: the drive bag, the warm-up (bundle, backend, first frame: kernels compiled on a first
    run), the replay, warm-up + replay (what a user of ``meta-ood replay`` waits) and the whole demo."""
    warmup, wall = summary.get("warmup_s", 0.0), summary["wall_s"]
    return [
        "| time | s |", "|---|---|",
        f"| writing the drive bag | {_fmt(summary.get('drive_bag_s'), 1)} |",
        "| warm-up: loading the bundle and the backend, the first frame (on a first run this compiles the "
        f"kernels) | {_fmt(warmup, 1)} |",
        f"| replay: {summary['frames_processed']} frames at {summary['frames_per_s']:.1f} frames/s | {_fmt(wall, 1)} |",
        f"| **warm-up + replay** (what `meta-ood replay` takes) | {_fmt(warmup + wall, 1)} |",
        f"| whole demo (with the drive bag, plots and frames.png) | {_fmt(summary.get('demo_s'), 1)} |", "",
    ]  # fmt: skip


def size_lines(summary: dict[str, Any], config: DemoConfig) -> list[str]:
    """REPORT.md's line on the bags' sizes (when measured)."""
    sizes = summary.get("bag_mb")
    if not sizes:
        return []
    score = "with" if config.score else "without"
    return [f"- bags: output {sizes['anomaly_bag']:.1f} MB (MCAP, {summary.get('compression', 'none')} chunks, "
            f"{score} the anomaly_score topic), input drive {sizes['drive']:.1f} MB"]  # fmt: skip
