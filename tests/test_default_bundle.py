from __future__ import annotations

import json
import logging
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
    meta_classifier = bundle.meta_classifier
    assert meta_classifier is not None and meta_classifier.kind == "mlp"
    k = meta_classifier.metadata["ensemble"]  # k of the paper's 75-75-75-1 MLPs (17,176 parameters each), merged
    assert meta_classifier.metadata["hidden"] == [75, 75, 75] and k == meta["config"]["mlp_ensemble"] >= 1
    assert [w.shape for w in meta_classifier.weights] == [(75 * k, 75), (75 * k, 75 * k), (75 * k, 75 * k), (1, 75 * k)]
    regime = bundle.meta_training
    assert regime is not None and regime["components"] >= 1000 and regime["false_positives"] >= 200
    assert regime["metric_size"] == list(bundle.metric_size) and regime["threshold"] == bundle.threshold
    selection = regime["cut_selection"]  # the cut was chosen on frames the classifier was not trained on
    assert regime["selection_data"]["seed"] != regime["data"]["seed"]
    assert selection["max_p_false_positive"] == bundle.max_p_false_positive
    assert selection["true_detections_lost"] <= 0.05 * selection["true_detections"]
    for evaluation in meta["evaluation"].values():  # held-out frames: the meta classifier removes false positives
        counts = evaluation["components"]
        assert counts["false_positives_before"] >= 20
        assert counts["false_positives_after"] <= 0.75 * counts["false_positives_before"]
        assert counts["true_detections_lost"] <= 0.1 * counts["true_detections"]


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
    args = ["evaluate", "--bundle", "default", "--dataset", "synthetic", "--seed", "5", "--frames", "12"]
    assert main([*args, "--report", str(report)]) == 0
    content = json.loads(report.read_text())
    assert set(content) >= {"pixel", "components", "meta", "pipeline"}
    assert content["pixel"]["auroc"] > 0.8
    comp = content["components"]
    assert {"false_positives_before", "false_positives_after", "true_detections_lost"} <= set(comp)
    assert comp["false_positives_after"] < comp["false_positives_before"]  # the meta classifier removes some
    assert content["meta"]["n"] == comp["components"]
    assert content["pipeline"]["max_p_false_positive"] == load_bundle("default").max_p_false_positive


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
    meta_classifier = bundle.meta_classifier
    assert meta_classifier is not None and meta_classifier.metadata["ensemble"] == 2  # two paper MLPs, merged
    # two members of 17,176 parameters, the 4 zero 75x75 blocks of the two block-diagonal layers stored densely, one
    # output bias instead of two
    assert meta_classifier.n_parameters == 2 * 17_176 + 4 * 75 * 75 - 1
    assert (tmp_path / "smoke_bundle" / "model.onnx").stat().st_size > 0
    regime = bundle.meta_training
    assert regime is not None and regime["metric_size"] == [64, 128] and regime["data"]["frames"] == 12
    assert set(meta["evaluation"]) == {"all hazard shapes", "animals and bags"}
    for evaluation in meta["evaluation"].values():  # the self-evaluation ran the bundle's own pipeline
        assert evaluation["pipeline"]["max_p_false_positive"] == bundle.max_p_false_positive
        assert evaluation["pipeline"]["backend"] == "OnnxRuntimeBackend"

    # the meta classifier alone, on the network of that bundle: same weights, a fresh meta classifier and cut
    again = _meta_ood("build-default-bundle", "--smoke", "--network-from", "smoke_bundle", "--out", "again",
                      cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    rebuilt = load_bundle(tmp_path / "again")
    checksums = bundle.manifest["checksums"], rebuilt.manifest["checksums"]
    assert checksums[0]["model.safetensors"] == checksums[1]["model.safetensors"]
    training = rebuilt.manifest["metadata"]["training"]
    assert (
        training["network_from"] == "smoke_bundle" and training["network_sha256"] == checksums[0]["model.safetensors"]
    )
    assert training["network_config"] == meta["config"]
    assert training["closed_set_loss_first_last"] == meta["training"]["closed_set_loss_first_last"]
    assert "closed_set_s" not in rebuilt.manifest["metadata"]["timings_s"]
    assert rebuilt.meta_classifier is not None and rebuilt.meta_training is not None


@pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle has not been built in this checkout")
def test_network_from_a_bundle_of_another_network_is_refused(tmp_path, caplog):
    # the committed bundle's network (width 16, 192x384) is not the smoke build's (width 4, 64x128)
    assert main(["build-default-bundle", "--smoke", "--network-from", "default", "--out", str(tmp_path / "x")]) == 2
    (record,) = [r for r in caplog.records if r.name == "meta_ood" and r.levelno >= logging.ERROR]
    message = record.getMessage()
    assert "is not the one this build trains" in message and "(64, 128)" in message and not record.exc_info
    assert not (tmp_path / "x").exists()


def test_results_report_smoke_run(tmp_path):
    done = _meta_ood("results", "--smoke", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    text = (tmp_path / "out" / "RESULTS.md").read_text()
    for row in ("closed-set model", "informative proxies (≤ 20 %)", "non-informative proxies (≥ 80 %)"):
        assert f"| {row} |" in text
    assert "leave-one-out" in text and "grouped by frame" in text and "held-out hazard family" in text
    results = json.loads((tmp_path / "out" / "results" / "results.json").read_text())
    assert set(results["table3"]) == {"common", "held_out"}
    for family in results["table3"].values():
        assert len(family["rows"]) == 4
        for row in family["rows"].values():
            assert len(row["auprc"]["seeds"]) == 2  # one value per training seed
            assert row["auprc"]["low"] <= row["auprc"]["high"]
        assert all(c["verdict"] in ("reproduced", "reversed", "not separated") for c in family["claims"].values())
    assert set(results["table2"]["protocols"]) == {"loo", "group-kfold"}
    assert [r["n_metrics"] for r in results["incremental"] if r["classifier"] == "lr"] == [1, 3]
    for name in results["figures"]:
        png = tmp_path / "out" / "results" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def _claim(value, low, high):
    from meta_ood_training.bootstrap import Interval, verdict

    return {"value": value, "low": low, "high": high, "verdict": verdict(Interval(value, low, high))}


def test_results_discussion_follows_the_intervals():
    import copy
    from pathlib import Path

    from meta_ood_training.results import discussion

    committed = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "results.json").read_text())
    flipped = copy.deepcopy(committed)
    key = "informative beat non-informative proxies (AUPRC)"
    flipped["table3"]["common"]["claims"][key] = _claim(0.05, 0.01, 0.09)
    text = "\n".join(discussion(flipped))
    assert "+0.050 [+0.010, +0.090], **reproduced**" in text
    flipped["table3"]["common"]["claims"][key] = _claim(0.05, -0.01, 0.09)
    text = "\n".join(discussion(flipped))
    assert "+0.050 [-0.010, +0.090], **not separated**" in text
    loo = flipped["table2"]["protocols"]["loo"]
    loo["mlp_minus_lr_auroc"] = _claim(-0.02, -0.03, -0.01)
    assert "**reversed**" in "\n".join(discussion(flipped))
