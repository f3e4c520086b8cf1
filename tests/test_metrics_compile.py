"""First run of the numba kernels: compile_kernels(), the one-line notice on a cold cache, writable cache fallbacks.

Each case runs a fresh interpreter with its own empty cache directory, so it compiles for real (~10–20 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meta_ood_perception import _kernels

REPO = Path(__file__).resolve().parents[1]
NOTICE = _kernels.COMPILE_NOTICE.split(" (")[0]  # "compiling the metric kernels once"
SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(levelname)s %(name)s: %(message)s")
from meta_ood_perception.metrics import compile_kernels
print("seconds", compile_kernels())
"""


def _run(env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CACHE")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.slow
def test_notice_only_on_a_cold_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    cold = _run({"NUMBA_CACHE_DIR": str(cache)})
    assert cold.returncode == 0, cold.stderr
    notices = [line for line in cold.stdout.splitlines() if NOTICE in line]
    assert len(notices) == 1, cold.stdout  # one line, however many kernels and signatures compile
    assert notices[0].startswith("INFO meta_ood_perception.metrics:")
    assert "cached for later runs" in notices[0]
    cached = sorted(p.name for p in cache.rglob("*.nbi"))
    for kernel in ("gather_rows", "accumulate", "touched_areas", "sign_boundaries"):
        assert any(f"_kernels.{kernel}-" in name for name in cached), (kernel, cached)

    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    warm = _run({"NUMBA_CACHE_DIR": str(cache)})
    assert warm.returncode == 0, warm.stderr
    assert NOTICE not in warm.stdout
    # loaded, not compiled again: the cache holds the same files, none rewritten (independent of the machine's speed)
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_temporary_cache_when_no_default_location_is_usable(tmp_path):
    # Only the user-provided locator (no NUMBA_CACHE_DIR set) and the IPython one (not in IPython): numba finds no
    # writable place, as on a read-only install with a read-only home; the kernels then cache under TMPDIR.
    env = {"NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator,IPythonCacheLocator", "TMPDIR": str(tmp_path)}
    first = _run(env)
    assert first.returncode == 0, first.stderr
    assert NOTICE in first.stdout
    assert list(tmp_path.glob("meta-ood-numba-cache-*/**/*gather_rows*.nbi"))
    second = _run(env)
    assert second.returncode == 0, second.stderr
    assert NOTICE not in second.stdout


@pytest.mark.slow
def test_kernels_still_run_without_any_cache(tmp_path):
    first = _run({"NUMBA_CACHE_LOCATOR_CLASSES": "IPythonCacheLocator", "TMPDIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    assert "no writable cache directory, set NUMBA_CACHE_DIR" in first.stdout
    assert not list(tmp_path.rglob("*.nbi"))


def test_compile_kernels_in_process_leaves_every_kernel_compiled():
    from meta_ood_perception.metrics import compile_kernels

    assert compile_kernels() > 0
    for kernel in (_kernels.gather_rows, _kernels.accumulate, _kernels.touched_areas, _kernels.sign_boundaries):
        assert kernel.signatures, kernel
