"""benchmarks/gpu_check.sh and gpu_check.py: the pieces that run without a GPU (planning, skipping, time limits,
the report, the frame-rate measurement on the CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import gpu_check
import pytest
from gpu_check import PARTS, Part, junit_outcomes, measure_frame_rate, parse_args, run_check, run_limited, unmet

SCRIPT = Path(gpu_check.__file__).with_name("gpu_check.sh")
NAMES = [part.name for part in PARTS]
GPU_ENV = {"cuda": True, "tensorrt": "10.7.0", "onnxruntime": "1.30.0",
           "onnxruntime_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}  # fmt: skip


def part(name: str) -> Part:
    return next(p for p in PARTS if p.name == name)


def report(out: Path) -> dict:
    return json.loads((out / "gpu_check.json").read_text())


def test_dry_run_writes_every_part_skipped_with_what_it_would_run(tmp_path):
    assert gpu_check.main(["--out", str(tmp_path), "--dry-run"]) == 0
    r = report(tmp_path)
    assert r["dry_run"] is True and r["frame_size"] == [1024, 2048]
    assert list(r["parts"]) == NAMES
    for p in PARTS:
        assert r["parts"][p.name]["status"] == "skipped"
        assert r["parts"][p.name]["reason"].startswith(f"dry run: would run {p.what}")
    assert r["summary"] == {"ok": 0, "failed": 0, "timeout": 0, "skipped": len(PARTS)}


@pytest.mark.skipif(sys.platform != "linux", reason="the check's shell script is for the Linux device machine")
def test_script_without_cuda_probes_and_skips_every_part_with_the_reason(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the parts would run")
    env = {**os.environ, "GPU_CHECK_PYTHON": sys.executable}
    env.pop("OUT", None)
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    r = report(tmp_path / "out")
    assert r["dry_run"] is False and r["environment"]["status"] == "ok"
    assert r["environment"]["figures"]["cuda"] is False
    assert list(r["parts"]) == NAMES
    reason = f"no CUDA device: {r['environment']['figures']['cuda_reason']}"
    assert all(result == {"status": "skipped", "reason": reason} for result in r["parts"].values())
    assert (tmp_path / "out" / "gpu_check.log").is_file()


def test_requirements_name_what_is_missing():
    assert unmet(part("engine"), GPU_ENV, {"bundle": {"status": "ok"}}) is None
    no_cuda = {"cuda": False, "cuda_reason": "torch.cuda.is_available() is False (no device visible)"}
    assert unmet(part("tests"), no_cuda, {}) == "no CUDA device: torch.cuda.is_available() is False (no device visible)"
    no_trt = {**GPU_ENV, "tensorrt": None, "tensorrt_error": "import tensorrt: ModuleNotFoundError"}
    assert "TensorRT's Python package is not installed (import tensorrt: ModuleNotFoundError)" in str(
        unmet(part("engine"), no_trt, {"bundle": {"status": "ok"}})
    )
    assert unmet(part("fps_onnxruntime_cuda"), GPU_ENV, {"bundle": {"status": "ok"}}) is None
    assert unmet(part("fps_onnxruntime_tensorrt"), GPU_ENV, {"bundle": {"status": "ok"}}) == (
        "onnxruntime 1.30.0 has no TensorrtExecutionProvider (providers: CUDAExecutionProvider, CPUExecutionProvider)"
    )
    failed = {"bundle": {"status": "failed"}}
    assert unmet(part("fps_torch_cuda"), GPU_ENV, failed) == "needs part 'bundle', which failed"
    skipped_engine = {"bundle": {"status": "ok"}, "engine": {"status": "skipped", "reason": "out of time"}}
    reason = unmet(part("fps_tensorrt"), GPU_ENV, skipped_engine)
    assert reason == "needs part 'engine', which was skipped (out of time)"


def test_a_hung_part_is_killed_with_its_children_at_its_limit():
    code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print('started', flush=True); time.sleep(120)")  # fmt: skip
    t0 = time.monotonic()
    status, _, tail = run_limited([sys.executable, "-c", code], 2.0)
    assert status == "timeout" and "started" in tail
    assert time.monotonic() - t0 < 60  # the grandchild holding the output pipe was killed too
    assert run_limited([sys.executable, "-c", "raise SystemExit(3)"], 30.0)[0] == "failed"
    assert run_limited([sys.executable, "-c", "print('fine')"], 30.0)[::2] == ("ok", "fine\n")


def test_parts_that_no_longer_fit_the_budget_are_skipped(tmp_path, monkeypatch):
    ran = []

    def fake_run_part(p, args, work, limit_s, log):
        ran.append((p.name, limit_s))
        return {"status": "ok", "figures": GPU_ENV} if p.name == "environment" else {"status": "ok", "figures": {}}

    monkeypatch.setattr(gpu_check, "run_part", fake_run_part)
    budget = part("tests").min_s + gpu_check.RESERVE_S + 1  # room for the tests, not for the bundle
    r = run_check(parse_args(["--out", str(tmp_path), "--budget-s", str(budget)]))
    assert [name for name, _ in ran] == ["environment", "tests"]
    assert ran[1][1] <= budget - gpu_check.RESERVE_S
    assert r["parts"]["tests"]["status"] == "ok"
    assert r["parts"]["bundle"]["reason"].startswith("out of time: ")
    assert r["parts"]["fps_torch_cuda"]["reason"].startswith("needs part 'bundle', which was skipped (out of time")
    assert report(tmp_path)["parts"] == r["parts"]


def test_a_failed_environment_probe_skips_every_part(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_part", lambda p, *a: {"status": "timeout", "reason": "stopped"})
    r = run_check(parse_args(["--out", str(tmp_path)]))
    assert {v["reason"] for v in r["parts"].values()} == {"the environment probe timed out"}


def test_junit_outcomes_read_pytest_results(tmp_path):
    (tmp_path / "test_x.py").write_text(
        "import pytest\ndef test_ok(): pass\ndef test_bad(): assert 1 == 2\n"
        "@pytest.mark.skip(reason='no GPU')\ndef test_skip(): pass\n"
    )
    junit = tmp_path / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", "test_x.py"]
    subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=120, check=False)
    outcomes = {name.split("::")[-1]: v for name, v in junit_outcomes(junit).items()}
    assert {k: v["outcome"] for k, v in outcomes.items()} == {"test_ok": "passed", "test_bad": "failed",
                                                               "test_skip": "skipped"}  # fmt: skip
    assert "no GPU" in outcomes["test_skip"]["message"]


def test_frame_rate_figures_on_the_cpu():
    from meta_ood_perception.pipeline import STAGES

    fig = measure_frame_rate("default", "onnxruntime", {}, frames=2, size=(64, 128))
    assert fig["frames"] == 2 and fig["frame_size"] == [64, 128]
    assert fig["fps_median"] == pytest.approx(1000 / fig["ms_median"], rel=0.01)
    assert fig["ms_p90"] >= fig["ms_median"] > 0
    assert set(fig["stage_ms_median"]) == set(STAGES)
    assert fig["meets_target"] == (fig["fps_median"] >= gpu_check.TARGET_FPS)


def test_arguments(monkeypatch):
    monkeypatch.setenv("OUT", "/tmp/device_out")
    args = parse_args([])
    assert args.out == "/tmp/device_out" and tuple(args.size) == gpu_check.FRAME_SIZE and not args.dry_run
    with pytest.raises(SystemExit):
        parse_args(["--frames", "0"])
