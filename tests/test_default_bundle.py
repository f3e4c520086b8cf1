from __future__ import annotations

import json

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


def test_smoke_build_evaluate_and_onnx_parity(tmp_path):
    import subprocess
    import sys

    import onnxruntime as ort
    import torch

    out = tmp_path / "bundle"
    # A fresh interpreter started outside the repository, as a user runs the command. Run inside the pytest process
    # (or with the repository root as working directory) the oneDNN backward of the entropy-maximization step was
    # seen to stall on this 2-core machine; the cause is not understood yet (see the issue notes).
    build = subprocess.run(
        [sys.executable, "-m", "meta_ood_perception.cli", "build-default-bundle", "--smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    bundle = load_bundle(out)
    manifest = json.loads((out / "bundle.json").read_text())
    assert manifest["metadata"]["config"]["closed_steps"] == 4
    assert "evaluation" in manifest["metadata"] and "timings_s" in manifest["metadata"]
    model = bundle.build_torch_model()
    x = torch.randn(1, 3, 64, 128)
    session = ort.InferenceSession(str(bundle.file("onnx")), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits, model(x).numpy(), atol=1e-4)
    report = tmp_path / "r.json"
    args = ["evaluate", "--bundle", str(out), "--dataset", "synthetic", "--seed", "5", "--frames", "2"]
    assert main([*args, "--report", str(report)]) == 0
    assert set(json.loads(report.read_text())) >= {"pixel", "components", "meta"}
