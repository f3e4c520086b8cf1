from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from meta_ood_perception import meta_classifier as mc
from meta_ood_perception.metrics import FEATURE_NAMES, component_metrics

NAMES = list(FEATURE_NAMES)


def _mlp(seed=0, widths=(75, 75, 75, 75, 1)):
    # The paper's 75-75-75-1 network: three hidden Linear(75, 75) + ReLU, then Linear(75, 1) + sigmoid.
    gen = torch.Generator().manual_seed(seed)
    layers = [torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    for layer in layers:
        torch.nn.init.normal_(layer.weight, std=0.2, generator=gen)
        torch.nn.init.normal_(layer.bias, std=0.1, generator=gen)
    rng = np.random.default_rng(seed)
    model = mc.mlp(
        NAMES,
        mean=rng.normal(size=75),
        scale=rng.uniform(0.5, 2.0, size=75),
        weights=[layer.weight.detach().numpy() for layer in layers],
        biases=[layer.bias.detach().numpy() for layer in layers],
        metadata={"seed": seed},
    )
    return model, layers


def test_paper_mlp_has_17176_parameters_and_matches_torch():
    model, layers = _mlp()
    assert model.n_parameters == 17_176
    x = np.random.default_rng(1).normal(size=(50, 75))
    relu = torch.nn.ReLU()
    net = torch.nn.Sequential(layers[0], relu, layers[1], relu, layers[2], relu, layers[3], torch.nn.Sigmoid())
    z = torch.from_numpy((x - model.mean) / model.scale).float()
    expected = net(z).detach().numpy()[:, 0]
    np.testing.assert_allclose(model.predict_proba(x), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("row", "expected"),
    [([1.0, 2.0], 1 / (1 + np.exp(0.75))), ([3.0, 0.0], 1 / (1 + np.exp(-2.25)))],
)
def test_logistic_hand_computed(row, expected):
    # mean (1, 1), scale (2, 1): z = ((x0 - 1) / 2, x1 - 1); logit = z0 - z1 + 0.25
    model = mc.logistic(["a", "b"], mean=[1, 1], scale=[2, 1], coef=[1.0, -1.0], intercept=0.25)
    assert model.n_parameters == 3
    assert model.predict_proba(np.array([row]))[0] == pytest.approx(expected)


def test_extreme_logits_do_not_overflow():
    model = mc.logistic(["a"], mean=[0], scale=[1], coef=[1.0], intercept=0.0)
    p = model.predict_proba(np.array([[-1e4], [1e4], [0.0]]))
    np.testing.assert_array_equal(p, [0.0, 1.0, 0.5])


def test_save_load_roundtrip_and_component_metrics_input(tmp_path):
    model, _ = _mlp(3)
    path = model.save(tmp_path / "mlp")
    assert path.suffix == ".json" and (tmp_path / "mlp.npz").is_file()
    loaded = mc.load_meta_classifier(tmp_path / "mlp.json", expected_names=NAMES)
    assert loaded.metadata == {"seed": 3}
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(19, 20, 30))
    probs = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    table = component_metrics(probs, rng.random((20, 30)) < 0.3)
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table.features))
    assert ((loaded.predict_proba(table) >= 0) & (loaded.predict_proba(table) <= 1)).all()


def _saved(tmp_path):
    model = mc.logistic(["a", "b", "c"], mean=[0, 0, 0], scale=[1, 1, 1], coef=[1, 2, 3], intercept=0.5)
    return model.save(tmp_path / "lr")


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda p: p.unlink(), "file not found"),
        (lambda p: p.write_text("{not json"), "cannot read meta classifier"),
        (lambda p: _edit(p, schema_version=99), "schema_version 99"),
        (lambda p: _edit(p, kind="forest"), "unknown kind 'forest'"),
        (lambda p: _edit(p, arrays_file="../x.npz"), "must be a file name"),
        (lambda p: p.with_suffix(".npz").unlink(), "arrays file missing"),
        (lambda p: p.with_suffix(".npz").write_bytes(b"garbage"), "SHA-256 does not match"),
        (lambda p: _edit(p, feature_names=["a", "b"]), r"mean has shape \(3,\), expected \(2,\)"),
    ],
)
def test_broken_files_are_named(tmp_path, corrupt, match):
    path = _saved(tmp_path)
    corrupt(path)
    with pytest.raises(mc.MetaClassifierError, match=match):
        mc.load_meta_classifier(path)


def _edit(path, **changes):
    header = json.loads(path.read_text())
    header.update(changes)
    path.write_text(json.dumps(header))


def test_feature_names_and_shapes_are_checked(tmp_path):
    path = _saved(tmp_path)
    with pytest.raises(mc.MetaClassifierError, match="feature 1 is 'c', the model expects 'b'"):
        mc.load_meta_classifier(path, expected_names=["a", "c", "b"])
    model = mc.load_meta_classifier(path)
    with pytest.raises(mc.MetaClassifierError, match=r"shape \(N, 3\)"):
        model.predict_proba(np.zeros((2, 4)))
    with pytest.raises(mc.MetaClassifierError, match="2 feature names, the model expects 3"):
        model.predict_proba(np.zeros((2, 3)), names=["a", "b"])
    with pytest.raises(mc.MetaClassifierError, match="NaN or inf in 1 row"):
        model.predict_proba(np.array([[0, 0, 0], [0, np.nan, 0]]))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": [1, 0]}, "scale must be positive"),
        ({"coef": [1, 2, 3]}, "do not fit an input of width 2"),
        ({"intercept": float("nan")}, "NaN or inf"),
    ],
)
def test_invalid_models_rejected(kwargs, match):
    args = {"mean": [0, 0], "scale": [1, 1], "coef": [1, 2], "intercept": 0.0} | kwargs
    with pytest.raises(mc.MetaClassifierError, match=match):
        mc.logistic(["a", "b"], **args)


def test_artifact_names_keep_their_dots(tmp_path):
    model = mc.logistic(["a"], mean=[0], scale=[1], coef=[1.0], intercept=0.0)
    path = model.save(tmp_path / "lr.v1")
    assert path.name == "lr.v1.json" and (tmp_path / "lr.v1.npz").is_file()
    assert mc.load_meta_classifier(tmp_path / "lr.v1").kind == "logistic"
