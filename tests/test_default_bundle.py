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


@pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle has not been built in this checkout")
def test_default_bundle_onnx_parity_and_synthetic_evaluation(tmp_path):
    # The build itself (`meta-ood build-default-bundle --smoke`) is not run here: with the tiny smoke model it was
    # seen to deadlock inside oneDNN's 1x1-convolution backward (GOMP barrier) on this 2-core machine, in some runs
    # and not others (see docs/PERFORMANCE.md and the issue notes). The committed bundle is what these tests check.
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
