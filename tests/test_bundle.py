from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from meta_ood_perception import meta_classifier as mc
from meta_ood_perception.bundle import DEFAULT_BUNDLE, BundleError, load_bundle, write_bundle
from meta_ood_perception.cli import main
from meta_ood_perception.metrics import FEATURE_NAMES
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model

CLASSES = [f"class{i}" for i in range(19)]


def _meta():
    return mc.logistic(FEATURE_NAMES, mean=np.zeros(75), scale=np.ones(75), coef=np.zeros(75), intercept=-1.0)


def _bundle(path, uniform=False):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", 19, width=4)
    if uniform:
        with torch.no_grad():
            model.final[-1].weight.zero_()
            model.final[-1].bias.zero_()
    return write_bundle(path, model=model, architecture="deeplabv3plus_light", model_options={"width": 4},
                        class_names=CLASSES, input_size=(32, 48), meta_classifier=_meta(), mean=MEAN_RGB,
                        std=STD_RGB, metadata={"seed": 0})  # fmt: skip


def test_write_load_and_rebuild(tmp_path):
    bundle = _bundle(tmp_path / "b")
    again = load_bundle(tmp_path / "b")
    assert again.num_classes == 19 and again.threshold == 0.7 and again.input_size == (32, 48)
    assert again.feature_names == list(FEATURE_NAMES) and again.manifest["metadata"] == {"seed": 0}
    x = torch.randn(1, 3, 32, 48)
    torch.manual_seed(0)
    reference = build_model("deeplabv3plus_light", 19, width=4).eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.build_torch_model()(x), reference(x))


def _edit(path, **changes):
    manifest = json.loads((path / "bundle.json").read_text())
    manifest.update(changes)
    (path / "bundle.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda p: (p / "bundle.json").unlink(), "bundle manifest not found"),
        (lambda p: (p / "bundle.json").write_text("{"), "cannot read bundle manifest"),
        (lambda p: _edit(p, schema_version=7), "schema_version 7"),
        (lambda p: _edit(p, threshold=1.5), r"threshold must lie in \[0, 1\]"),
        (lambda p: _edit(p, schema_version=1), "rebuild the bundle"),
        (lambda p: _edit(p, metrics={"height": 0, "width": 4}), "metrics needs positive integer"),
        (lambda p: _edit(p, metrics=[64, 128]), "metrics needs positive integer"),
        (lambda p: _edit(p, max_p_false_positive=0.0), r"max_p_false_positive must lie in \(0, 1\]"),
        (lambda p: _edit(p, max_p_false_positive=True), "max_p_false_positive"),
        (lambda p: _edit(p, meta_training="yes"), "meta_training must be an object"),
        (
            lambda p: _edit(p, meta_training={"metric_size": [64]}),
            r"meta_training.metric_size must be \[height, width\]",
        ),
        (lambda p: _edit(p, meta_training={"aspect_ratio": None}), "meta_training.aspect_ratio must be a number"),
        (lambda p: _edit(p, meta_classifier=3), "meta_classifier must be a file name or null"),
        (lambda p: _edit(p, class_names=["a", "b"]), "feature_names differ"),
        (lambda p: _edit(p, meta_classifier="../elsewhere.json"), "points outside the bundle directory"),
        (lambda p: (p / "model.safetensors").write_bytes(b"x"), "SHA-256 does not match"),
        (lambda p: (p / "meta_classifier.npz").unlink(), "file missing"),
        (
            lambda p: _edit(p, input={"height": 0, "width": 4, "mean": [0, 0, 0], "std": [1, 1, 1]}),
            "positive integer height",
        ),
    ],
)
def test_broken_bundles_are_named(tmp_path, damage, match):
    _bundle(tmp_path / "b")
    damage(tmp_path / "b")
    with pytest.raises(BundleError, match=match):
        load_bundle(tmp_path / "b")


def test_metric_grid_cut_and_training_regime_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", 19, width=4)
    regime = {"threshold": 0.7, "metric_size": [48, 96], "aspect_ratio": 2.0, "data": {"seed": 3}}
    bundle = write_bundle(tmp_path / "b", model=model, architecture="deeplabv3plus_light", model_options={"width": 4},
                          class_names=CLASSES, input_size=(32, 48), metric_size=(48, 96), meta_classifier=_meta(),
                          max_p_false_positive=0.8, meta_training=regime, mean=MEAN_RGB, std=STD_RGB)  # fmt: skip
    assert bundle.metric_size == (48, 96) and bundle.input_size == (32, 48)
    assert bundle.max_p_false_positive == 0.8 and bundle.meta_training == regime
    keep_all = write_bundle(tmp_path / "b", model=model, architecture="deeplabv3plus_light", class_names=CLASSES,
                            model_options={"width": 4}, input_size=(32, 48), meta_classifier=None, mean=MEAN_RGB,
                            std=STD_RGB)  # fmt: skip
    assert keep_all.meta_classifier is None and keep_all.metric_size == (32, 48)  # default: the input size
    assert not (tmp_path / "b" / "meta_classifier.npz").exists()  # the replaced classifier's files are gone
    assert set(keep_all.manifest["checksums"]) == {"model.safetensors"}


def test_missing_bundles(tmp_path):
    with pytest.raises(BundleError, match="bundle directory not found"):
        load_bundle(tmp_path / "nope")
    if not DEFAULT_BUNDLE.exists():
        with pytest.raises(BundleError, match="build-default-bundle"):
            load_bundle("default")


def test_cli_evaluate_on_fishyscapes(tmp_path, caplog):
    folder = tmp_path / "fs" / "Static"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
        label = np.zeros((40, 60), np.uint8)
        label[10:25, 10:25] = 1
        label[-3:] = 255
        Image.fromarray(label).save(folder / f"{i:04d}.png")
    _bundle(tmp_path / "b", uniform=True)
    report_path = tmp_path / "r.json"
    args = ["evaluate", "--bundle", str(tmp_path / "b"), "--backend", "torch", "--dataset", "fishyscapes", "--root",
            str(tmp_path / "fs"),
            "--report", str(report_path), "--min-pred-size", "1", "--min-gt-size", "1"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(report_path.read_text())
    assert report["frames"] == 2
    assert report["pixel"]["auroc"] == pytest.approx(0.5)  # a uniform softmax scores every pixel alike
    comp = report["components"]
    assert comp["gt_objects"] == 2 and comp["false_negatives_before"] == 0 and comp["false_negatives_after"] == 0
    assert report["meta"]["n"] == 2 and report["meta"]["auroc"] is None  # every component is a true detection
    assert "need both classes" in report["meta"]["note"]
    assert report["pipeline"]["metric_size"] == [32, 48] and report["pipeline"]["backend"] == "TorchBackend"
    assert comp["sIoU"] == pytest.approx(225 / (37 * 60))  # one component over the whole labelled region
    missing_root = ["evaluate", "--bundle", str(tmp_path / "b"), "--dataset", "lostandfound", "--report", "x.json"]
    assert main(missing_root) == 2
    assert "--root is required" in caplog.text
