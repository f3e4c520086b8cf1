from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from meta_ood_perception.bundle import DEFAULT_BUNDLE, load_bundle
from meta_ood_perception.cli import main


@pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle has not been built in this checkout")
def test_committed_default_bundle_matches_its_manifest():
    bundle = load_bundle("default")  # validates schema, files, SHA-256 checksums and feature names
    assert sum(p.stat().st_size for p in DEFAULT_BUNDLE.iterdir()) <= 20 * 2**20
    assert set(bundle.manifest["model"]["files"]) == {"torch", "onnx"}
    meta = bundle.manifest["metadata"]
    assert meta["built_by"] == "meta-ood build-default-bundle"
    assert {"config", "code_version", "evaluation", "timings_s", "meta_cv_group_kfold"} <= set(meta)
    assert meta["evaluation"]["pixel"]["auroc"] >= 0.9
    assert bundle.meta_classifier.kind == "mlp" and bundle.meta_classifier.n_parameters == 17_176


@pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle has not been built in this checkout")
def test_default_bundle_onnx_parity_and_synthetic_evaluation(tmp_path):
    import onnxruntime as ort
    import torch

    bundle = load_bundle("default")
    model = bundle.build_torch_model()
    x = torch.randn(1, 3, *bundle.input_size)
    session = ort.InferenceSession(str(bundle.file("onnx")), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, model(x).numpy(), atol=1e-4)
    report = tmp_path / "r.json"
    args = ["evaluate", "--bundle", "default", "--dataset", "synthetic", "--seed", "5", "--frames", "3"]
    assert main([*args, "--report", str(report)]) == 0
    content = json.loads(report.read_text())
    assert set(content) >= {"pixel", "components", "meta"}
    assert content["pixel"]["auroc"] > 0.8


def _meta_ood(*args: str, cwd, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # A separate process: the build trains with torch threads of its own, and a hang must fail the test, not CI.
    code = "import sys; from meta_ood_perception.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_smoke_build_of_the_default_bundle(tmp_path):
    done = _meta_ood("build-default-bundle", "--smoke", "--out", "smoke_bundle", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle = load_bundle(tmp_path / "smoke_bundle")
    meta = bundle.manifest["metadata"]
    assert meta["config"]["closed_steps"] == 4 and meta["config"]["model_width"] == 4
    assert set(meta["timings_s"]) >= {"closed_set_s", "entropy_maximization_s", "metric_extraction_s", "total_s"}
    assert bundle.meta_classifier.n_parameters == 17_176
    assert (tmp_path / "smoke_bundle" / "model.onnx").stat().st_size > 0


def test_results_report_smoke_run(tmp_path):
    done = _meta_ood("results", "--smoke", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    for row in ("closed-set model", "informative proxies (≤ 20 %)", "non-informative proxies (≥ 80 %)"):
        assert f"| {row} |" in text
    assert "leave-one-out" in text and "grouped by frame" in text
    results = json.loads((tmp_path / "out" / "results" / "results.json").read_text())
    assert set(results["table2"]) == {"lr loo", "mlp loo", "lr group-kfold", "mlp group-kfold"}
    assert len(results["table3"]) == 4
    assert [r["n_metrics"] for r in results["incremental"] if r["classifier"] == "lr"] == [1, 3]
    for name in results["figures"]:
        png = tmp_path / "out" / "results" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_results_discussion_follows_the_numbers():
    import copy
    import json
    from pathlib import Path

    from meta_ood_training.results import discussion

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "results.json").read_text())
    text = "\n".join(discussion(committed))
    assert text.count("**reproduced**") >= 3 and "does **not** appear" in text
    flipped = copy.deepcopy(committed)
    names = list(flipped["table3"])
    flipped["table3"][names[2]], flipped["table3"][names[3]] = (
        committed["table3"][names[3]],
        committed["table3"][names[2]],
    )
    flipped["table2"]["mlp loo"]["auroc"] = flipped["table2"]["lr loo"]["auroc"] + 0.05
    flipped["table2"]["lr loo"]["auroc"] = 0.90
    flipped["table2"]["lr loo"]["n_false_positives"] = flipped["table2"]["lr loo"]["n"] // 10
    for row in flipped["incremental"]:
        row["auroc"] = 0.5 + row["n_metrics"] / 200  # keeps improving up to all 75
    text = "\n".join(discussion(flipped))
    assert "Informative proxies train better (**not reproduced**)" in text and "Our reading" not in text
    assert "appears as" in text and "close to perfect" not in text and "majority" not in text
    assert "Few metrics suffice (Fig. 4, **not reproduced**)" in text and "adds" in text
