"""export-onnx: logits-only and heat-map graphs, fixed and dynamic sizes; parity with torch; build-engine errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnxruntime as ort
import pytest
import torch

from meta_ood_perception.bundle import DEFAULT_BUNDLE, load_bundle
from meta_ood_perception.cli import main
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.scores import anomaly_score, heatmaps
from meta_ood_training.synthetic import render

pytestmark = pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle is not built in this checkout")


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"image": x}), strict=True))


@pytest.mark.parametrize("dynamic", [False, True])
def test_heatmap_graph_matches_torch_and_the_numpy_heat_maps(tmp_path, dynamic):
    out = tmp_path / "m.onnx"
    args = ["export-onnx", "--bundle", "default", "--out", str(out), "--input-size", "96", "160", "--heatmaps"]
    assert main([*args, *(["--dynamic"] if dynamic else [])]) == 0
    bundle = load_bundle("default")
    size = (64, 192) if dynamic else (96, 160)
    x = torch.randn(1, 3, *size)
    got = run(out, x.numpy())
    assert set(got) == {"logits", "probs", "score", "entropy", "margin", "variation", "argmax"}
    with torch.no_grad():
        probs = torch.softmax(bundle.build_torch_model()(x), 1)[0].numpy()
    np.testing.assert_allclose(got["probs"][0], probs, atol=1e-4)
    np.testing.assert_allclose(got["score"][0], anomaly_score(probs), atol=1e-4)
    maps = heatmaps(probs)
    np.testing.assert_allclose(got["entropy"][0], maps.entropy, atol=1e-4)
    np.testing.assert_allclose(got["margin"][0], maps.margin, atol=1e-4)
    np.testing.assert_allclose(got["variation"][0], maps.variation, atol=1e-4)
    assert (got["argmax"][0] == maps.argmax).mean() > 0.999 and got["argmax"].dtype == np.int32


def test_pipeline_uses_the_graph_heat_maps_at_native_size(tmp_path):
    bundle = load_bundle("default")
    h, w = bundle.input_size
    out = tmp_path / "hm.onnx"
    assert main(["export-onnx", "--bundle", "default", "--out", str(out), "--heatmaps"]) == 0
    image, _ = render("hazard", 8, 1, h, w)
    plain = AnomalyPipeline.from_bundle(bundle, "onnxruntime").process(image)
    fused = AnomalyPipeline.from_bundle(bundle, "onnxruntime", model=out).process(image)
    np.testing.assert_allclose(fused.score, plain.score, atol=1e-4)
    assert (fused.mask != plain.mask).mean() < 1e-3


def test_export_from_a_checkpoint(tmp_path):
    from safetensors.torch import save_file

    from meta_ood_perception.models import build_model

    model = build_model("deeplabv3plus_light", 5, width=4)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    out = tmp_path / "c.onnx"
    args = ["export-onnx", "--checkpoint", str(tmp_path / "w.safetensors"), "--architecture", "deeplabv3plus_light",
            "--num-classes", "5", "--model-width", "4", "--input-size", "64", "96", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        np.testing.assert_allclose(run(out, x.numpy())["logits"], model.eval()(x).numpy(), atol=1e-4)


def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, caplog):
    assert main(["export-onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "exactly one of --checkpoint" in caplog.text
    assert main(["export-onnx", "--checkpoint", str(tmp_path / "none.pth"), "--architecture", "deeplabv3plus_light",
                 "--input-size", "64", "64", "--out", str(tmp_path / "x.onnx")]) == 2  # fmt: skip
    assert "checkpoint not found" in caplog.text
    assert main(["build-engine", "--onnx", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "e")]) == 2
    if importlib.util.find_spec("tensorrt") is None:
        assert "needs NVIDIA TensorRT" in caplog.text or "not found" in caplog.text
