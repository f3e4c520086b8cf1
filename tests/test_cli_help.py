"""``meta-ood`` as a user reads it: every subcommand's help (description, defaults, a working example), the command
order of ``meta-ood --help``, ``--version``, error texts that name command-line flags, and ``evaluate``'s reasons for
every null value of its report."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import meta_ood_perception
from meta_ood_perception import cli
from meta_ood_perception.backends.tensorrt_backend import TensorRTBackend, missing_engine_message
from meta_ood_perception.bundle import load_bundle, write_bundle
from meta_ood_perception.errors import ConfigError
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model

COMMANDS = [command for _, group in cli.command_groups() for command in group]
RUNTIME = ("demo", "replay", "evaluate")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        cli.build_parser().parse_args([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _flat(text: str) -> str:
    return " ".join(text.split())


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub: argparse.ArgumentParser = action.choices[name]
    return sub


def _shown(default: object) -> str:
    return " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.name for c in COMMANDS])
def test_every_subcommand_help_has_a_description_its_defaults_and_an_example(capsys, command):
    text = _help(capsys, command.name)
    assert "``" not in text and "None" not in text  # no raw reStructuredText, no "default: None"
    # the description: the paragraph after the usage, one sentence saying what the command does
    description = _flat(text.split("\n\n")[1])
    assert description == command.description and description.endswith(".") and len(description.split()) >= 8
    assert f"\nexample:\n  meta-ood {command.name} " in text
    # the example is a command line this parser accepts, for this command
    args = cli.build_parser().parse_args(command.example.split()[1:])
    assert args.command == command.name and args.func is command.func
    # every option whose default says something shows it
    flat = _flat(text)
    for action in _subparser(command.name)._actions:
        default = action.default
        if not action.option_strings or action.required or default in (None, False, argparse.SUPPRESS):
            continue
        if "(default" in (action.help or ""):
            continue  # stated in its own words
        assert f"(default: {_shown(default)})" in flat, (action.option_strings, flat)


def test_top_level_help_lists_every_command_running_a_bundle_first(capsys):
    text = _help(capsys)
    assert "``" not in text
    listed = re.findall(r"^    ([a-z][a-z-]+)  ", text, re.M)
    assert listed == [c.name for c in COMMANDS]
    assert tuple(listed[: len(RUNTIME)]) == RUNTIME and listed.index("meta-train") > listed.index("evaluate")
    action = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(listed) == set(action.choices)  # the hand-made list hides no command and invents none
    headings = re.findall(r"^  ([a-z][^:\n]+):$", text, re.M)
    assert headings[0] == "run a bundle" and len(headings) == len(cli.command_groups())
    assert "examples:\n  meta-ood demo" in text


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"meta-ood {importlib.metadata.version('meta_ood_perception')}"


def test_version_without_an_installed_distribution_is_the_packages(monkeypatch):
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.package_version() == meta_ood_perception.__version__


def test_a_bundle_without_a_tensorrt_engine_names_flags_and_commands():
    for onnx in ("bundles/car/model.onnx", None):
        message = missing_engine_message(onnx)
        assert "\n" not in message and "=True" not in message and "engine=" not in message
        assert "--engine" in message and "node parameter: engine" in message
        parser = cli.build_parser()
        for command in re.findall(r"meta-ood ([a-z-]+ [^)]*?)(?:\)|$)", message):  # each command it names parses
            args = parser.parse_args(command.replace("ENGINE", "x.engine").replace("BUNDLE", "b").split())
            assert args.command in ("build-engine", "export-onnx")
    with_onnx = missing_engine_message("bundles/car/model.onnx")
    assert "--rebuild" in with_onnx and "trt_rebuild" in with_onnx
    assert "meta-ood build-engine --onnx bundles/car/model.onnx --out ENGINE" in with_onnx
    # the flags it names exist where a bundle is run with the tensorrt backend
    for name in ("evaluate", "extract-metrics", "replay"):
        options = {o for a in _subparser(name)._actions for o in a.option_strings}
        assert {"--engine", "--rebuild", "--no-rebuild"} <= options
    # and it is the message a bundle without an engine gets when building is off (no TensorRT needed to get there)
    bundle = load_bundle("default")
    with pytest.raises(ConfigError) as err:
        TensorRTBackend.from_bundle(bundle, rebuild=False)
    assert str(err.value) == missing_engine_message(bundle.file("onnx"))


def test_evaluate_with_no_rebuild_and_no_engine_says_which_flag(tmp_path, caplog):
    args = ["evaluate", "--bundle", "default", "--backend", "tensorrt", "--no-rebuild", "--dataset", "synthetic",
            "--frames", "1", "--report", str(tmp_path / "r.json")]  # fmt: skip
    assert cli.main(args) == 2
    (line,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert (
        line.startswith("meta-ood evaluate: tensorrt backend: the bundle has no TensorRT engine")
        and "--rebuild" in line
    )


def test_a_flag_that_does_not_apply_is_refused_by_name(tmp_path, caplog):
    base = ["evaluate", "--bundle", "default", "--dataset", "synthetic", "--report", str(tmp_path / "r.json")]
    assert cli.main([*base, "--engine", "m.engine"]) == 2
    assert "--engine is an option of --backend tensorrt, not of --backend onnxruntime" in caplog.text
    assert cli.main([*base, "--backend", "torch", "--no-rebuild"]) == 2
    assert "--no-rebuild is an option of --backend tensorrt, not of --backend torch" in caplog.text
    assert not (tmp_path / "r.json").exists()
    args = ["export-onnx", "--checkpoint", str(tmp_path / "w.pt"), "--architecture", "deeplabv3plus_wrn38",
            "--model-width", "16", "--out", str(tmp_path / "m.onnx"), "--input-size", "8", "8"]  # fmt: skip
    assert cli.main(args) == 2
    assert "--model-width applies to deeplabv3plus_light and deeplabv3plus_resnet18, not to --architecture " \
           "deeplabv3plus_wrn38" in caplog.text  # fmt: skip


def _tiny_bundle(path, meta):
    """A 4-wide light DeepLabv3+ whose softmax is uniform: every pixel scores 1, so the labelled region is one
    component."""
    from meta_ood_perception import meta_classifier as mc
    from meta_ood_perception.metrics import FEATURE_NAMES

    model = build_model("deeplabv3plus_light", 19, width=4)
    with torch.no_grad():
        model.final[-1].weight.zero_()
        model.final[-1].bias.zero_()
    classifier = mc.logistic(FEATURE_NAMES, mean=np.zeros(75), scale=np.ones(75), coef=np.zeros(75), intercept=-1.0)
    write_bundle(path, model=model, architecture="deeplabv3plus_light", model_options={"width": 4},
                 class_names=[f"c{i}" for i in range(19)], input_size=(32, 48), mean=MEAN_RGB, std=STD_RGB,
                 meta_classifier=classifier if meta else None)  # fmt: skip


def _fishyscapes(root, anomaly):
    """Two 40×60 frames: a 15×15 anomaly (or none: in-distribution only) and a void strip."""
    folder = root / "Static"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
        label = np.zeros((40, 60), np.uint8)
        if anomaly:
            label[10:25, 10:25] = 1
        label[-3:] = 255
        Image.fromarray(label).save(folder / f"{i:04d}.png")


def _evaluate(tmp_path, caplog, *, meta, anomaly):
    caplog.set_level(logging.INFO)
    _tiny_bundle(tmp_path / "b", meta)
    _fishyscapes(tmp_path / "fs", anomaly)
    report_path = tmp_path / "r.json"
    assert cli.main(["evaluate", "--bundle", str(tmp_path / "b"), "--backend", "torch", "--dataset", "fishyscapes",
                     "--root", str(tmp_path / "fs"), "--report", str(report_path), "--min-pred-size", "1",
                     "--min-gt-size", "1"]) == 0  # fmt: skip
    return json.loads(report_path.read_text())


def _nulls(value, path=""):
    """Dotted paths of every JSON null, found independently of the code under test."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{path}[{i}]")]
    return [path] if value is None else []


def test_evaluate_gives_every_null_its_reason_one_class_of_components(tmp_path, caplog):
    from meta_ood_training.evaluate_bundle import UNEXPLAINED

    report = _evaluate(tmp_path, caplog, meta=True, anomaly=True)
    meta = report["meta"]
    assert meta["n"] == 2 and meta["auroc"] is None and meta["auprc"] is None  # both components are true detections
    both = "AUROC / AUPRC need both classes; all 2 components are true detections (no false positive)"
    assert meta["auroc_null_reason"] == both and meta["auprc_null_reason"] == both
    keys = list(meta)
    assert keys[keys.index("auroc") + 1] == "auroc_null_reason"  # the reason right after its value in the JSON
    assert meta["accuracy"] == pytest.approx(1.0)  # both kept, both true detections: defined, so no reason
    assert "accuracy_null_reason" not in meta
    comp = report["components"]
    assert comp["false_positives_removed_fraction"] is None and "no false-positive" in comp[
        "false_positives_removed_fraction_null_reason"]  # fmt: skip
    assert meta["in_sample"] is None and "does not record" in meta["in_sample_null_reason"]
    nulls = _nulls({k: v for k, v in report.items() if k != "null_values"})
    assert sorted(report["null_values"]) == sorted(nulls) and UNEXPLAINED not in report["null_values"].values()
    assert f"null in the report: meta.auroc, meta.auprc: {both}" in caplog.text


def test_evaluate_gives_every_null_its_reason_no_anomaly_and_no_meta_classifier(tmp_path, caplog):
    from meta_ood_training.evaluate_bundle import NO_META_CLASSIFIER, UNEXPLAINED

    report = _evaluate(tmp_path, caplog, meta=False, anomaly=False)
    pixel = report["pixel"]
    assert pixel["auroc"] is None and "0 OoD pixels" in pixel["auroc_null_reason"]
    comp = report["components"]
    assert comp["sIoU"] is None and "no ground-truth anomaly segment of at least 1 px" in comp["sIoU_null_reason"]
    assert comp["true_detections"] == 0 and "no true detection" in comp["true_detections_lost_fraction_null_reason"]
    assert report["meta"]["auroc_null_reason"] == NO_META_CLASSIFIER == report["meta"]["in_sample_null_reason"]
    assert report["pipeline"]["meta_classifier"] is None
    assert report["pipeline"]["meta_classifier_null_reason"] == NO_META_CLASSIFIER
    nulls = _nulls({k: v for k, v in report.items() if k != "null_values"})
    assert {"pixel.auroc", "pixel.fpr95", "pixel.auprc", "components.sIoU", "meta.auroc"} <= set(nulls)
    assert sorted(report["null_values"]) == sorted(nulls) and UNEXPLAINED not in report["null_values"].values()
    assert "pixel AUROC null FPR95 null AUPRC null" in caplog.text
    assert f"null in the report: meta.auroc, meta.auprc, meta.accuracy, meta.in_sample, pipeline.meta_classifier: " \
           f"{NO_META_CLASSIFIER}" in caplog.text  # fmt: skip


def test_null_reasons_inherit_from_the_section_and_flag_a_null_without_one():
    from meta_ood_training.evaluate_bundle import UNEXPLAINED, explain_null, null_reasons

    section = {"F1": {"0.25": math.nan, "0.50": 0.5}, "PPV": 0.7, "sIoU": None}
    explain_null(section, "F1", "0 / 0")
    explain_null(section, "PPV", "never used: PPV is defined")
    assert "PPV_null_reason" not in section
    assert null_reasons({"components": section}) == {"components.F1.0.25": "0 / 0", "components.sIoU": UNEXPLAINED}
