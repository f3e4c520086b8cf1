"""The default bundle's MLP ensemble: K paper MLPs merged into one runtime MLP whose logit is the mean of theirs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from meta_ood_perception.errors import ConfigError
from meta_ood_perception.meta_classifier import mlp
from meta_ood_training.meta_data import MetaDataset
from meta_ood_training.meta_models import MLPConfig
from meta_ood_training.meta_train import average_mlps, train_meta_classifier


def _member(rng: np.random.Generator, widths: tuple[int, ...]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in itertools.pairwise(widths)]
    bs = [rng.normal(size=o) for o in widths[1:]]
    return ws, bs


def _logit(ws: list[np.ndarray], bs: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    h = x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = h @ w.T + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


@pytest.mark.parametrize("hidden", [(), (5,), (6, 4), (75, 75, 75)])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_merged_logit_is_the_mean_of_the_members(hidden, k):
    rng = np.random.default_rng([k, len(hidden)])
    widths = (7, *hidden, 1)
    members = [_member(rng, widths) for _ in range(k)]
    weights, biases = average_mlps(members)
    x = rng.normal(size=(50, 7))
    expected = np.mean([_logit(ws, bs, x) for ws, bs in members], axis=0)
    np.testing.assert_allclose(_logit(weights, biases, x), expected, rtol=1e-12, atol=1e-12)
    if hidden and k > 1:  # wider hidden layers, members do not mix
        wide = [k * h for h in hidden]
        assert [w.shape for w in weights] == list(zip([*wide, 1], [7, *wide], strict=True))
    # the runtime classifier reads the merged network as a plain MLP
    names = [f"f{i}" for i in range(7)]
    model = mlp(names, np.zeros(7), np.ones(7), weights, biases)
    np.testing.assert_allclose(model.predict_proba(x, names), 1 / (1 + np.exp(-expected)), rtol=1e-10)


def test_members_must_share_their_widths():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="different widths"):
        average_mlps([_member(rng, (4, 3, 1)), _member(rng, (4, 5, 1))])
    with pytest.raises(ConfigError, match="at least one"):
        average_mlps([])


def _data(n: int = 400) -> MetaDataset:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.5, size=n) > 0).astype(np.int64)
    return MetaDataset(X, y, [f"m{i}" for i in range(6)])


def test_trained_ensemble_averages_distinct_members():
    data = _data()
    cfg = MLPConfig(hidden=(8, 8), epochs=40, seed=1)
    single = train_meta_classifier(data, "mlp", mlp_config=cfg)
    ensemble = train_meta_classifier(data, "mlp", mlp_config=cfg, ensemble=3)
    assert ensemble.metadata["ensemble"] == 3 and single.metadata["ensemble"] == 1
    assert ensemble.n_parameters > 3 * single.n_parameters - 1  # dense block-diagonal storage
    p1, p3 = single.predict_proba(data.X, data.names), ensemble.predict_proba(data.X, data.names)
    assert not np.allclose(p1, p3)  # the members differ (own initializations), so the mean differs from one
    auc = lambda p: np.mean(p[data.y == 1][:, None] > p[data.y == 0][None, :])  # noqa: E731
    assert auc(p3) > 0.8


@pytest.mark.parametrize("ensemble", [0, -1, True, 2.0])
def test_bad_ensemble_sizes_are_refused(ensemble):
    with pytest.raises(ConfigError, match="ensemble must be an integer >= 1"):
        train_meta_classifier(_data(), "mlp", ensemble=ensemble)


def test_ensemble_needs_the_mlp():
    with pytest.raises(ConfigError, match="needs classifier 'mlp'"):
        train_meta_classifier(_data(), "lr", ensemble=2)
