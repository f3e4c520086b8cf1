"""``meta-ood demo``: a synthetic drive as a rosbag, replayed through the embedded default bundle on the CPU.

Writes into one folder: ``drive/`` (the input bag: camera frames and their hazard labels), ``anomaly_bag/`` (the
node's outputs, MCAP), ``annotated.mp4`` (mask overlay, component boxes, brake state), ``timeline.png`` (brake risk
against ``brake.min_risk``, warn and brake phases, components, latency per frame), ``latency.png`` (per-stage
latency), ``frames.png`` (four annotated frames), ``summary.json`` (the replay summary) and ``REPORT.md`` (pixel and
component metrics, the brake hint's timeline — warn: hazard seen, not yet worth braking; brake: active — and its
events, latency). Needs no GPU, ROS or dataset.
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
from tqdm import tqdm

from meta_ood_perception.brake import BrakeState
from meta_ood_perception.errors import ConfigError, FaultError
from meta_ood_perception.ros.params import NodeConfig
from meta_ood_perception.ros.replay import ReplayOptions, replay

from .drive_bag import write_drive_bag

LOG = logging.getLogger(__name__)
MARKER = ".meta_ood_demo"
OUTPUTS = ("drive", "anomaly_bag", "annotated.mp4", "timeline.png", "latency.png", "frames.png", "summary.json",
           "REPORT.md")  # fmt: skip
#: The phases the brake timeline tells apart: a candidate (a hit, not yet persistent) is still clear.
PHASES: dict[BrakeState, str] = {"clear": "clear", "candidate": "clear", "warn": "warn", "brake": "brake",
                                 "unavailable": "unavailable"}  # fmt: skip


@dataclass(frozen=True)
class DemoConfig:
    """Demo settings: output folder, the drive (seed, frames, size, rate) and the bundle / backend to replay with."""

    out: Path = Path("meta_ood_demo")
    seed: int = 2027
    frames: int = 200
    height: int = 256
    width: int = 512
    fps: float = 10.0
    bundle: str = "default"
    backend: str = "onnxruntime"

    def __post_init__(self) -> None:
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
    node = NodeConfig.from_params({"bundle": config.bundle, "backend": config.backend,
                                   "image_topics": [drive.image_topic]})  # fmt: skip
    options = ReplayOptions(
        image_topics=(drive.image_topic,), label_topic=drive.label_topic, summary=out / "summary.json",
        video=out / "annotated.mp4", overwrite=True, per_frame=True,
    )  # fmt: skip
    with tqdm(total=config.frames, desc="replay", disable=not progress) as bar:
        summary = replay(out / "drive", out / "anomaly_bag", node, options,
                         on_frame=lambda done, total: bar.update(done - bar.n))  # fmt: skip
    summary["drive_bag_s"] = t_bag
    summary["brake"] = brake_summary(summary, node.pipeline.brake.min_risk)
    plot_timeline(summary, out / "timeline.png")
    plot_latency(summary, out / "latency.png")
    sample_frames(out / "annotated.mp4", out / "frames.png")
    summary["demo_s"] = time.perf_counter() - t0
    (out / "REPORT.md").write_text(report(summary, config))
    summary["paths"] = {name: str(out / name) for name in OUTPUTS}
    return summary


def plot_timeline(summary: dict[str, Any], path: Path) -> None:
    """Brake risk (against ``min_risk`` when ``summary["brake"]`` has it) with the warn and brake phases, kept and
    all components, and total latency per frame (needs ``per_frame`` records)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [f for f in summary["frames"] if f["stamp_ns"] is not None]
    t0 = frames[0]["stamp_ns"] if frames else 0
    t = np.array([(f["stamp_ns"] - t0) / 1e9 for f in frames])
    fig, axes = plt.subplots(3, 1, figsize=(9, 6.5), sharex=True)
    axes[0].plot(t, [f["risk"] for f in frames], color="tab:red", label="risk")
    min_risk = summary.get("brake", {}).get("min_risk")
    if min_risk is not None:
        axes[0].axhline(min_risk, color="tab:red", linestyle="--", linewidth=0.8, label=f"min_risk {min_risk:g}")
    phases = [PHASES[f["state"]] for f in frames]
    axes[0].fill_between(t, 0, [1.0 if p == "warn" else 0.0 for p in phases], color="tab:orange", alpha=0.25,
                         step="mid", label="warn: hazard seen, not yet worth braking")  # fmt: skip
    axes[0].fill_between(t, 0, [1.0 if p == "brake" else 0.0 for p in phases], color="tab:red", alpha=0.15,
                         step="mid", label="brake hint active")  # fmt: skip
    axes[0].set_ylim(0, 1.05)
    axes[0].set_ylabel("brake")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].step(t, [f["components"] for f in frames], where="mid", color="grey", label="components (a ≥ t)")
    axes[1].step(t, [f["kept"] for f in frames], where="mid", color="tab:red", label="kept by the meta classifier")
    axes[1].set_ylabel("components")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, [f["total_ms"] or np.nan for f in frames], color="tab:blue")
    axes[2].set_ylabel("latency, ms")
    axes[2].set_xlabel("time since the first frame, s")
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


def sample_frames(video: Path, path: Path, count: int = 4) -> None:
    """``count`` evenly spaced frames of the annotated video, stacked 2 per row, as a PNG."""
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    picks = set(np.linspace(total // 5, total - 1, count).astype(int).tolist()) if total else set()
    frames = []
    for i in range(total):
        ok, frame = capture.read()
        if not ok:
            break
        if i in picks:
            frames.append(frame)
    capture.release()
    if not frames:
        raise FaultError(f"cannot read frames back from {video}")
    while len(frames) % 2:
        frames.append(np.zeros_like(frames[0]))
    rows = [np.hstack(frames[i : i + 2]) for i in range(0, len(frames), 2)]
    cv2.imwrite(str(path), np.vstack(rows))


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
        f"- wall time: replay {summary['wall_s']:.1f} s ({summary['frames_per_s']:.1f} frames/s), whole demo "
        f"{summary['demo_s']:.1f} s", "",
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
    lines += ["", "## Files", "", "- `drive/`: input bag (camera frames + hazard labels)",
              "- `anomaly_bag/`: the node's outputs (MCAP)", "- `annotated.mp4`, `frames.png`: overlays",
              "- `timeline.png`, `latency.png`: plots",
              "- `summary.json`: everything above, machine-readable", ""]  # fmt: skip
    return "\n".join(lines)
