"""Runs the real-ROS tests (tests/ros/) in the ROS venv, inside a private network namespace.

The ROS 2 Jazzy wheels (requirements-ros.txt) live in their own venv, ``.venv-ros`` (they re-exec Python with
their own LD_LIBRARY_PATH, which the main venv should not inherit); the README's test command creates it.
``META_OOD_ROS_PYTHON`` points elsewhere. DDS never reaches a real network: tests/ros/netns.sh runs everything in
``unshare --net`` with loopback only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from meta_ood_training.synthetic import drive

ROOT = Path(__file__).resolve().parents[1]
ROS_PYTHON = Path(os.environ.get("META_OOD_ROS_PYTHON", ROOT / ".venv-ros" / "bin" / "python"))


def _unshare_works() -> str | None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare (util-linux) or ip (iproute2) is not installed"
    probe = subprocess.run([str(ROOT / "tests" / "ros" / "netns.sh"), "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"a private network namespace is not permitted here: {probe.stderr.strip()[:200]}"
    return None


def _photographs(height: int, width: int) -> np.ndarray:
    """Crops of matplotlib's photograph of Grace Hopper (no street in it), for the domain monitor's test."""
    import matplotlib.cbook as cbook
    from PIL import Image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photo = Image.open(f).convert("RGB")
    boxes = [(0, 0, 512, 256), (0, 150, 512, 406), (0, 344, 512, 600), (100, 200, 400, 350)]
    return np.stack([np.asarray(photo.crop(box).resize((width, height))) for box in boxes])


def test_real_node_under_rclpy_in_a_private_network_namespace(tmp_path):
    if not ROS_PYTHON.exists():
        pytest.skip(f"no ROS venv at {ROS_PYTHON}: python3.11 -m venv .venv-ros && .venv-ros/bin/pip install "
                    "-c constraints.txt -r requirements-ros.txt -e . pytest")  # fmt: skip
    reason = _unshare_works()
    if reason:
        pytest.skip(reason)
    frames = tmp_path / "frames.npz"
    np.savez(frames, images=np.stack([image for image, _ in drive(31, 10, 128, 256)]), photos=_photographs(128, 256))
    env = {**os.environ, "META_OOD_ROS_FRAMES": str(frames), "ROS_LOG_DIR": str(tmp_path / "roslog")}
    for name in ("LD_LIBRARY_PATH", "_ROS_WHEELS_BOOTSTRAP_COMPLETE", "VIRTUAL_ENV"):
        env.pop(name, None)
    cmd = [str(ROOT / "tests" / "ros" / "netns.sh"), str(ROS_PYTHON), "-m", "pytest", "-q", "-rs",
           "-p", "no:cacheprovider", str(ROOT / "tests" / "ros")]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "passed" in summary and "skipped" not in summary, result.stdout[-3000:]
