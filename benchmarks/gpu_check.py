"""The prepared GPU check (issue 15, item 7): one run on a lent NVIDIA GPU that records every GPU figure as JSON.

Parts, in this order, each in its own process with its own time limit (a hang costs that part, not the check), all
inside one time budget (default 450 s; a part that no longer fits is skipped and says so):

1. ``tests``: pytest over the CUDA and TensorRT tests (``-k "cuda or gpu or tensorrt or engine or onnxruntime"`` in
   tests/test_tensorrt_engine.py, tests/test_scores.py, tests/test_params.py, and tests/test_real_chain.py when
   TensorRT and the chain's packages are there).
2. ``bundle``: a randomly initialized DeepLabv3+ WideResNet38 in the published layout (``{"state_dict":
   {"module.<key>": tensor}}``) made into a bundle at 1024×2048 by ``meta-ood make-bundle``.
3. ``fps_torch_cuda``: frame rate of ``AnomalyPipeline.process`` on 1024×2048 frames of a synthetic drive, torch
   backend on CUDA.
4. ``engine``: ``meta-ood build-engine --fp16`` of the bundle's graph at 1024×2048.
5. ``fps_tensorrt``: the same frame rate with the TensorRT backend on that engine.
6. ``fps_onnxruntime_cuda`` / ``fps_onnxruntime_tensorrt``: ONNX Runtime with the CUDA / TensorRT (FP16)
   execution providers.

A part whose requirement is missing (no CUDA device, no ``tensorrt`` package, an ONNX Runtime build without the
provider, a failed earlier part it builds on) is skipped with the reason. The report (``gpu_check.json``) is
rewritten after every part, so even a check killed from outside leaves the parts done so far; the parts' output goes
to ``gpu_check.log`` beside it.

    benchmarks/gpu_check.sh [OUT_DIR]                 # on the device: sets up Python, then runs this
    python benchmarks/gpu_check.py --out OUT_DIR [--dry-run] [--budget-s 450] [--frames 20] [--size 1024 2048]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG = logging.getLogger("gpu_check")
REPO = Path(__file__).resolve().parents[1]
REPORT_FILE = "gpu_check.json"
LOG_FILE = "gpu_check.log"
#: Seconds the whole check may take by default (the issue allows 8 minutes; the shell wrapper's set-up comes first).
DEFAULT_BUDGET_S = 450.0
#: Seconds kept back from the budget for writing the report after the last part.
RESERVE_S = 5.0
#: Time limit of the environment probe, seconds.
ENVIRONMENT_LIMIT_S = 60.0
FRAME_SIZE = (1024, 2048)
#: Timed frames per backend (after WARMUP_FRAMES untimed ones), at most FPS_MAX_S seconds of them.
DEFAULT_FRAMES = 20
WARMUP_FRAMES = 3
FPS_MAX_S = 30.0
#: The issue's frame-rate target for DeepLabv3+ WideResNet38 at 1024×2048 (FP16).
TARGET_FPS = 30.0
ARCHITECTURE = "deeplabv3plus_wrn38"
NUM_CLASSES = 19
OUTPUT_TAIL = 3000
PYTEST_KEYWORDS = "cuda or gpu or tensorrt or engine or onnxruntime"
PYTEST_FILES = ("tests/test_tensorrt_engine.py", "tests/test_scores.py", "tests/test_params.py")
CHAIN_TEST = "tests/test_real_chain.py"
#: What tests/test_real_chain.py's chain (build-coco-ood, train-ood, meta-cv) imports besides the base install.
CHAIN_MODULES = ("tensorrt", "pycocotools", "yaml", "sklearn", "PIL", "tqdm")


class PartFailedError(Exception):
    """A part failed after collecting figures (kept in the report beside the one-line ``message``)."""

    def __init__(self, message: str, figures: dict[str, Any]) -> None:
        super().__init__(message)
        self.figures = figures


@dataclass(frozen=True)
class Part:
    """One part of the check.

    Attributes:
        name: key in the report. what: one line saying what it does.
        limit_s: its time limit, seconds. min_s: it is not started with less of the budget left, seconds.
        needs: requirements: ``cuda``, ``tensorrt``, ``ort_cuda``, ``ort_tensorrt`` (ONNX Runtime providers) or the
            name of an earlier part that must have passed.
    """

    name: str
    what: str
    limit_s: float
    min_s: float
    needs: tuple[str, ...]


PARTS = (
    Part("tests", f'pytest -k "{PYTEST_KEYWORDS}" (CUDA and TensorRT tests)', 150, 20, ("cuda",)),
    Part("bundle", "meta-ood make-bundle of a random-init WideResNet38 (published layout)", 200, 60, ("cuda",)),
    Part("fps_torch_cuda", "AnomalyPipeline.process frame rate, torch on CUDA", 90, 25, ("cuda", "bundle")),
    Part("engine", "meta-ood build-engine --fp16 of the bundle's graph", 240, 60, ("cuda", "tensorrt", "bundle")),
    Part("fps_tensorrt", "the frame rate, TensorRT backend (FP16)", 90, 25, ("cuda", "tensorrt", "engine")),
    Part("fps_onnxruntime_cuda", "the frame rate, ONNX Runtime CUDA", 90, 25, ("cuda", "ort_cuda", "bundle")),
    Part("fps_onnxruntime_tensorrt", "the frame rate, ONNX Runtime TensorRT (FP16)", 240, 60,
         ("cuda", "ort_tensorrt", "bundle")),
)  # fmt: skip
#: Backend name and options of each frame-rate part (``{work}`` is replaced by the work folder).
FPS_BACKENDS: dict[str, tuple[str, dict[str, Any]]] = {
    "fps_torch_cuda": ("torch", {"device": "cuda"}),
    "fps_tensorrt": ("tensorrt", {"engine": "{work}/model.engine"}),
    "fps_onnxruntime_cuda": ("onnxruntime", {"providers": ["cuda"]}),
    "fps_onnxruntime_tensorrt": ("onnxruntime", {"providers": ["tensorrt", "cuda"], "fp16": True,
                                                 "trt_cache_dir": "{work}/ort_trt_cache"}),
}  # fmt: skip


def unmet(part: Part, environment: dict[str, Any], results: dict[str, dict[str, Any]]) -> str | None:
    """Why ``part`` cannot run (one line), or None when every requirement holds."""
    providers = environment.get("onnxruntime_providers") or []
    ort = f"onnxruntime {environment.get('onnxruntime') or '(not installed)'}"
    for need in part.needs:
        if need == "cuda" and not environment.get("cuda"):
            return f"no CUDA device: {environment.get('cuda_reason', 'torch.cuda.is_available() is False')}"
        if need == "tensorrt" and not environment.get("tensorrt"):
            return f"TensorRT's Python package is not installed ({environment.get('tensorrt_error', 'not found')})"
        if need == "ort_cuda" and "CUDAExecutionProvider" not in providers:
            return f"{ort} has no CUDAExecutionProvider (providers: {', '.join(providers) or 'none'})"
        if need == "ort_tensorrt" and "TensorrtExecutionProvider" not in providers:
            return f"{ort} has no TensorrtExecutionProvider (providers: {', '.join(providers) or 'none'})"
        if need in results and results[need].get("status") != "ok":
            return f"needs part {need!r}, which {describe(results[need])}"
    return None


def describe(result: dict[str, Any]) -> str:
    """'was skipped (reason)', 'failed', 'timed out' for a part's result."""
    status = result.get("status")
    if status == "skipped":
        return f"was skipped ({result.get('reason')})"
    return {"failed": "failed", "timeout": "timed out"}.get(str(status), str(status))


def run_limited(argv: Sequence[str], limit_s: float, log: Path | None = None) -> tuple[str, float, str]:
    """Run ``argv`` in its own process group from the repository root, killing the whole group after ``limit_s``.

    Returns:
        (status ``ok`` / ``failed`` / ``timeout``, wall seconds, the last OUTPUT_TAIL characters of its stdout and
        stderr). The whole output is appended to ``log`` when given.
    """
    start = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=max(limit_s, 0.1))
        status = "ok" if proc.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        status = "timeout"
    seconds = time.monotonic() - start
    text = output.decode(errors="replace")
    if log is not None:
        with log.open("a") as sink:
            sink.write(f"\n===== {' '.join(argv)} -> {status} in {seconds:.1f} s =====\n{text}")
    return status, seconds, text[-OUTPUT_TAIL:]


def run_part(part: Part, args: argparse.Namespace, work: Path, limit_s: float, log: Path) -> dict[str, Any]:
    """Run one part in a child process (``--part NAME``) within ``limit_s``; its figures come back through a file."""
    result_file = work / f"{part.name}.result.json"
    result_file.unlink(missing_ok=True)
    argv = [sys.executable, str(Path(__file__).resolve()), "--part", part.name, "--work", str(work), "--result",
            str(result_file), "--frames", str(args.frames), "--size", *map(str, args.size)]  # fmt: skip
    status, seconds, tail = run_limited(argv, limit_s, log)
    result: dict[str, Any] = {"status": status, "seconds": round(seconds, 1), "limit_s": round(limit_s, 1)}
    if result_file.is_file():
        result.update(json.loads(result_file.read_text()))
    if status == "timeout":
        result["reason"] = f"stopped after its limit of {limit_s:.0f} s"
    if result["status"] != "ok":
        result["output_tail"] = tail
    return result


def skipped(reason: str) -> dict[str, Any]:
    """A part's result when it did not run."""
    return {"status": "skipped", "reason": reason}


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or with ``--dry-run`` only plan) every part; returns the report, written to ``args.out`` throughout."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / LOG_FILE
    log.write_text("")
    start = time.monotonic()
    deadline = start + args.budget_s
    report: dict[str, Any] = {
        "check": "meta_ood_perception GPU check (benchmarks/gpu_check.sh)",
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "budget_s": args.budget_s, "frame_size": list(args.size), "frames": args.frames,
        "target_fps": TARGET_FPS, "dry_run": bool(args.dry_run), "environment": {}, "parts": {},
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="meta_ood_gpu_check_") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.dry_run:
            report["environment"] = skipped("dry run: the environment is not probed")
        else:
            probe = Part("environment", "", ENVIRONMENT_LIMIT_S, 0, ())
            report["environment"] = run_part(probe, args, work, min(ENVIRONMENT_LIMIT_S, args.budget_s), log)
        environment = report["environment"].get("figures", {})
        for part in PARTS:
            left = deadline - time.monotonic() - RESERVE_S
            if args.dry_run:
                result = skipped(f"dry run: would run {part.what} (limit {part.limit_s:.0f} s)")
            elif report["environment"]["status"] != "ok":
                result = skipped(f"the environment probe {describe(report['environment'])}")
            elif (reason := unmet(part, environment, report["parts"])) is not None:
                result = skipped(reason)
            elif left < part.min_s:
                result = skipped(f"out of time: {max(left, 0):.0f} s of the budget left, the part needs at least "
                                 f"{part.min_s:.0f} s")  # fmt: skip
            else:
                LOG.info("gpu check: %s (limit %.0f s)", part.name, min(part.limit_s, left))
                result = run_part(part, args, work, min(part.limit_s, left), log)
            LOG.info("gpu check: %s: %s%s", part.name, result["status"],
                     f" ({result['reason']})" if result.get("reason") else "")  # fmt: skip
            report["parts"][part.name] = result
            report["wall_s"] = round(time.monotonic() - start, 1)
            write_report(report, out / REPORT_FILE)
    statuses = [r["status"] for r in report["parts"].values()]
    report["summary"] = {s: statuses.count(s) for s in ("ok", "failed", "timeout", "skipped")}
    report["wall_s"] = round(time.monotonic() - start, 1)
    write_report(report, out / REPORT_FILE)
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write ``report`` as indented JSON, atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- parts (child side)


def part_environment(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Python, torch and CUDA, TensorRT, ONNX Runtime and its providers, the GPU, the packages the parts use."""
    info: dict[str, Any] = {"python": sys.version.split()[0], "executable": sys.executable,
                            "platform": platform.platform(), "cpus": os.cpu_count()}  # fmt: skip
    import torch

    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda=bool(torch.cuda.is_available()))
    if info["cuda"]:
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1))  # fmt: skip
    else:
        built = "torch is built without CUDA" if torch.version.cuda is None else "no device visible"
        info["cuda_reason"] = f"torch.cuda.is_available() is False ({built})"
    try:
        import tensorrt

        info["tensorrt"] = str(tensorrt.__version__)
    except Exception as err:  # ImportError, or a TensorRT that finds no CUDA library
        info["tensorrt"], info["tensorrt_error"] = None, f"import tensorrt: {type(err).__name__}: {err}"
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError as err:
        info["onnxruntime"], info["onnxruntime_providers"] = None, []
        info["onnxruntime_error"] = str(err)
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
        done = subprocess.run(query, capture_output=True, text=True, timeout=15, check=False)
        info["nvidia_smi"] = done.stdout.strip() or done.stderr.strip()
    info["modules"] = {name: importlib.util.find_spec(name) is not None for name in sorted({*CHAIN_MODULES, "onnx",
                       "safetensors", "numba", "cv2", "rosbags", "mcap"})}  # fmt: skip
    import meta_ood_perception

    info["meta_ood_perception"] = str(Path(meta_ood_perception.__file__).parent)
    return info


def part_tests(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The CUDA and TensorRT tests; per test its outcome (from pytest's JUnit XML)."""
    files = list(PYTEST_FILES)
    missing = [name for name in CHAIN_MODULES if importlib.util.find_spec(name) is None]
    notes = {}
    if missing:
        notes[CHAIN_TEST] = f"not run: its chain needs {', '.join(missing)} (not installed)"
    else:
        files.append(CHAIN_TEST)
    junit = work / "junit.xml"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", PYTEST_KEYWORDS,
            f"--junitxml={junit}", *files]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
    sys.stdout.write(done.stdout + done.stderr)
    tests = junit_outcomes(junit) if junit.is_file() else {}
    counts = {s: sum(1 for t in tests.values() if t["outcome"] == s) for s in ("passed", "failed", "error", "skipped")}
    figures = {"pytest_exit": done.returncode, "counts": counts, "tests": tests, "notes": notes, "files": files}
    if done.returncode not in (0, 5):  # 5: nothing selected
        raise PartFailedError(f"pytest exited {done.returncode}: {counts}", figures)
    return figures


def junit_outcomes(path: Path) -> dict[str, dict[str, Any]]:
    """``{"file::test": {"outcome": passed|failed|error|skipped, "seconds": s, "message": ...}}`` from JUnit XML."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            element = case.find(tag)
            if element is not None:
                outcome, message = ("failed" if tag == "failure" else tag), element.get("message")
        outcomes[name] = {"outcome": outcome, "seconds": float(case.get("time", 0.0)), "message": message}
    return outcomes


def part_bundle(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """A random-init DeepWV3Plus saved in the published layout, packaged by ``meta-ood make-bundle``."""
    import torch

    from meta_ood_perception.cli import main
    from meta_ood_perception.models import DeepWV3Plus

    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = DeepWV3Plus(NUM_CLASSES)
    n_parameters = sum(p.numel() for p in model.parameters())
    checkpoint = work / "wrn38_random.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 0}, checkpoint)
    del model
    checkpoint_s = time.perf_counter() - t0
    height, width = args.size
    t0 = time.perf_counter()
    status = main(["make-bundle", "--checkpoint", str(checkpoint), "--architecture", ARCHITECTURE, "--input-size",
                   str(height), str(width), "--calibration", "none", "--out", str(work / "bundle")])  # fmt: skip
    if status != 0:
        raise PartFailedError(f"meta-ood make-bundle exited {status}", {"checkpoint_s": round(checkpoint_s, 1)})
    checkpoint.unlink()
    sizes = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted((work / "bundle").iterdir())}
    return {"architecture": ARCHITECTURE, "parameters": n_parameters, "input_size": [height, width],
            "checkpoint_s": round(checkpoint_s, 1), "make_bundle_s": round(time.perf_counter() - t0, 1),
            "files_mb": sizes}  # fmt: skip


def part_engine(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """``meta-ood build-engine --fp16`` of the bundle's ONNX graph at the frame size (built, then run on a zero
    image by the command itself)."""
    from meta_ood_perception.cli import main

    height, width = args.size
    engine = work / "model.engine"
    t0 = time.perf_counter()
    status = main(["build-engine", "--onnx", str(work / "bundle" / "model.onnx"), "--out", str(engine), "--fp16",
                   "--input-size", str(height), str(width)])  # fmt: skip
    if status != 0:
        raise PartFailedError(f"meta-ood build-engine exited {status}", {})
    record = Path(str(engine) + ".json")
    return {"build_and_check_s": round(time.perf_counter() - t0, 1),
            "engine_mb": round(engine.stat().st_size / 2**20, 1),
            "record": json.loads(record.read_text()) if record.is_file() else None}  # fmt: skip


def part_fps(args: argparse.Namespace, work: Path, name: str) -> dict[str, Any]:
    """The end-to-end frame rate of the frame-rate part ``name`` on the bundle of part ``bundle``."""
    backend, options = FPS_BACKENDS[name]
    filled = {k: v.replace("{work}", str(work)) if isinstance(v, str) else v for k, v in options.items()}
    return measure_frame_rate(work / "bundle", backend, filled, frames=args.frames, size=tuple(args.size))


def measure_frame_rate(
    bundle: str | Path,
    backend: str,
    options: dict[str, Any],
    *,
    frames: int = DEFAULT_FRAMES,
    size: tuple[int, ...] = FRAME_SIZE,
    max_s: float = FPS_MAX_S,
) -> dict[str, Any]:
    """Frame rate of ``AnomalyPipeline.process`` on (H, W, 3) uint8 frames of a synthetic drive at ``size``.

    WARMUP_FRAMES untimed frames first (CUDA context, kernel selection, engine loading), then up to ``frames`` timed
    ones, stopping early after ``max_s`` seconds of them (at least one). Figures: median and 90th percentile
    milliseconds per frame, frames per second from the median and from the wall time, the median of each
    pipeline stage (``inference`` is the network; the rest runs on the CPU) and the network's own frame rate
    (``network_fps``, from the ``inference`` median).
    """
    from meta_ood_perception.pipeline import STAGES, AnomalyPipeline
    from meta_ood_training.synthetic import drive

    height, width = size
    images = [image for image, _ in drive(7, 4, height, width)]
    t0 = time.perf_counter()
    pipeline = AnomalyPipeline.from_bundle(bundle, backend, warn_uncalibrated=False, **options)
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(WARMUP_FRAMES):
        pipeline.process(images[i % len(images)])
    warmup_s = time.perf_counter() - t0
    totals: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    components = []
    start = time.perf_counter()
    while len(totals) < max(frames, 1) and (not totals or time.perf_counter() - start < max_s):
        result = pipeline.process(images[len(totals) % len(images)])
        totals.append(result.timings_ms["total"])
        components.append(len(result.components))
        for stage in STAGES:
            stages[stage].append(result.timings_ms.get(stage, 0.0))
    wall_s = time.perf_counter() - start
    median = statistics.median(totals)
    fps = 1000.0 / median
    return {
        "backend": backend, "options": options, "description": getattr(pipeline.backend, "description", backend),
        "frame_size": [height, width], "setup_s": round(setup_s, 2), "warmup_s": round(warmup_s, 2),
        "frames": len(totals), "ms_median": round(median, 2), "ms_p90": round(percentile(totals, 90), 2),
        "fps_median": round(fps, 2), "fps_wall": round(len(totals) / wall_s, 2),
        "stage_ms_median": {stage: round(statistics.median(v), 2) for stage, v in stages.items()},
        "network_fps": round(1000.0 / max(statistics.median(stages["inference"]), 1e-6), 2),
        "components_median": statistics.median(components), "target_fps": TARGET_FPS,
        "meets_target": fps >= TARGET_FPS,
    }  # fmt: skip


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


PART_FUNCTIONS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "environment": part_environment,
    "tests": part_tests,
    "bundle": part_bundle,
    "engine": part_engine,
    **{name: (lambda a, w, n=name: part_fps(a, w, n)) for name in FPS_BACKENDS},
}


def run_child(args: argparse.Namespace) -> int:
    """Child side of ``--part NAME``: run it and write ``{"figures": ...}`` (and ``"error"``) to ``--result``; exit
    status 1 when it failed."""
    try:
        figures = PART_FUNCTIONS[args.part](args, Path(args.work))
    except PartFailedError as err:
        write_report({"figures": err.figures, "error": str(err)}, Path(args.result))
        return 1
    write_report({"figures": figures}, Path(args.result))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); ``--part``, ``--work`` and ``--result`` are the child side's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out",
        default=os.environ.get("OUT") or "gpu_check_out",
        help="folder for gpu_check.json and gpu_check.log (default: $OUT, else ./gpu_check_out)",
    )
    parser.add_argument("--dry-run", action="store_true", help="probe nothing, run nothing: write the plan")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="time budget of all parts, s")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="timed frames per backend")
    parser.add_argument("--size", type=int, nargs=2, default=list(FRAME_SIZE), metavar=("H", "W"),
                        help="frame and network input size, pixels")  # fmt: skip
    parser.add_argument("--work", default=None, help="folder for the bundle and engine (default: a temporary one)")
    parser.add_argument("--part", choices=sorted(PART_FUNCTIONS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.frames < 1 or min(args.size) < 16 or args.budget_s < 0:
        parser.error("--frames must be >= 1, --size at least 16 16, --budget-s >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (or one part, child side); exit status 1 when a part failed or timed out, else 0."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.part is not None:
        return run_child(args)
    report = run_check(args)
    LOG.info("gpu check: %s in %.0f s -> %s", report["summary"], report["wall_s"], Path(args.out) / REPORT_FILE)
    return 1 if report["summary"]["failed"] or report["summary"]["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
