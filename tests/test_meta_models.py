from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from meta_ood_perception.errors import ConfigError
from meta_ood_training.meta_models import (
    MLPConfig,
    StackedMLP,
    Workspace,
    _init_stack,
    layer_shapes,
    loss_and_grads,
    train_stacked_mlps,
)


def _reference_training(X, y, train_sets, mean, scale, cfg):
    """Train each model alone with torch.nn + torch.optim.Adam, replaying train_stacked_mlps's random draws."""
    n_models = len(train_sets)
    gen = torch.Generator().manual_seed(cfg.seed)
    widths = (X.shape[1], *cfg.hidden, 1)
    init = _init_stack(n_models, widths, gen, torch.device("cpu"))
    sizes = np.array([len(t) for t in train_sets])
    n_max = sizes.max()
    batch = cfg.batch_size
    models = []
    for m in range(n_models):
        layers = []
        init_w, init_b = init.layers(m)
        for i in range(len(widths) - 1):
            lin = torch.nn.Linear(widths[i], widths[i + 1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(init_w[i]))
                lin.bias.copy_(torch.from_numpy(init_b[i]))
            layers += [lin, torch.nn.ReLU()]
        net = torch.nn.Sequential(*layers[:-1])
        models.append((net, torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)))
    for _ in range(cfg.epochs):
        keys = torch.rand(n_models, n_max, generator=gen)
        for m, (net, opt) in enumerate(models):
            n = sizes[m]
            order = np.asarray(train_sets[m])[keys[m, :n].argsort().numpy()]
            if cfg.drop_last and n >= batch:
                batches = [order[s : s + batch] for s in range(0, (n // batch) * batch, batch)]
            else:
                batches = [order[s : s + batch] for s in range(0, n, batch)]
            for rows in batches:
                z = (X[rows] - mean[m]) / scale[m]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(z).squeeze(-1), y[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
    return models


@pytest.mark.parametrize(
    ("sizes", "drop_last", "batch"),
    [((30, 30, 30), True, 8), ((30, 23, 5), True, 8), ((30, 23, 5), False, 8), ((12, 9), True, 32)],
)
def test_stacked_training_equals_separate_torch_models(sizes, drop_last, batch):
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.normal(size=(40, 6)), dtype=torch.float32)
    y = torch.tensor(rng.random(40) < 0.4, dtype=torch.float32)
    train_sets = [rng.choice(40, size=s, replace=False) for s in sizes]
    mean = torch.tensor(rng.normal(size=(len(sizes), 6)) * 0.1, dtype=torch.float32)
    scale = torch.tensor(rng.uniform(0.8, 1.2, size=(len(sizes), 6)), dtype=torch.float32)
    cfg = MLPConfig(hidden=(7, 5), epochs=4, batch_size=batch, drop_last=drop_last, seed=3, lr=1e-2)
    stacked = train_stacked_mlps(X, y, train_sets, mean, scale, cfg)
    reference = _reference_training(X, y, train_sets, mean, scale, cfg)
    for m, (net, _) in enumerate(reference):
        weights, biases = stacked.layers(m)
        linears = [layer for layer in net if isinstance(layer, torch.nn.Linear)]
        for w, b, lin in zip(weights, biases, linears, strict=True):
            np.testing.assert_allclose(w, lin.weight.detach().numpy(), atol=2e-5)
            np.testing.assert_allclose(b, lin.bias.detach().numpy(), atol=2e-5)


def test_hand_written_backward_matches_autograd():
    gen = torch.Generator().manual_seed(0)
    net = _init_stack(3, (6, 9, 4, 1), gen, torch.device("cpu"))
    xb = torch.randn(3, 5, 6, generator=gen)
    yb = (torch.rand(3, 5, generator=gen) > 0.5).float()
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.float32)
    loss, grads = loss_and_grads(net, xb, yb, mask)
    params = [w.clone().requires_grad_(True) for w in net.weights]
    auto = StackedMLP(params, widths=(6, 9, 4, 1))
    logits = auto.logits(xb)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, yb, reduction="none")
    ((bce * mask).sum(1) / mask.sum(1).clamp_min(1)).sum().backward()
    for g, p in zip(grads, params, strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-6, rtol=1e-5)
    assert loss[2] == 0


def test_padded_units_stay_zero_and_paper_size():
    assert MLPConfig().n_parameters(75) == 17_176
    X = torch.randn(50, 5)
    y = (torch.rand(50) > 0.5).float()
    net = train_stacked_mlps(
        X, y, [np.arange(50)], torch.zeros(1, 5), torch.ones(1, 5), MLPConfig(hidden=(3,), epochs=3)
    )
    w0 = net.weights[0]
    assert w0.shape == (1, 8, 8)  # 5 inputs + constant unit → 8; 3 hidden + constant unit → 8
    assert (w0[:, 6:, :] == 0).all() and (w0[:, :, 4:] == 0).all()  # padding beyond the constant units
    assert w0[0, 5, 3] == 1 and (w0[0, :5, 3] == 0).all()  # the constant is passed on unchanged


def test_sets_smaller_than_a_batch_are_trained():
    # The reference's DataLoader(drop_last=True) never yields a batch here and leaves the model untrained.
    X = torch.randn(20, 4)
    y = (X[:, 0] > 0).float()
    cfg = MLPConfig(hidden=(8,), epochs=30, batch_size=128, lr=1e-2)
    trained = train_stacked_mlps(X, y, [np.arange(20)], torch.zeros(1, 4), torch.ones(1, 4), cfg)
    untrained = _init_stack(1, (4, 8, 1), torch.Generator().manual_seed(cfg.seed), torch.device("cpu"))
    assert not torch.equal(trained.weights[0], untrained.weights[0])
    assert trained.history["loss"][-1] < trained.history["loss"][0]


def test_invalid_config():
    with pytest.raises(ValueError, match="invalid MLPConfig: epochs must be >= 1, got 0"):
        MLPConfig(epochs=0)
    with pytest.raises(ValueError, match="hidden widths"):
        MLPConfig(hidden=(0,))
    with pytest.raises(ConfigError, match=r"precision must be one of \['bfloat16', 'float32'\], got 'float16'"):
        MLPConfig(precision="float16")


def test_layer_shapes_pad_inputs_with_the_constant_unit():
    assert layer_shapes((75, 75, 75, 75, 1)) == [(80, 80), (80, 80), (80, 80), (80, 1)]
    assert layer_shapes((5, 3, 1)) == [(8, 8), (8, 1)]
    assert layer_shapes((7, 8, 1)) == [(8, 16), (16, 1)]  # 7 + constant fits 8; 8 + constant needs 16
    assert layer_shapes((75, 75, 75, 75, 1), pad=4) == [(76, 76), (76, 76), (76, 76), (76, 1)]
    X, y = torch.randn(20, 75), (torch.rand(20) > 0.5).float()
    for precision, width in (("float32", 80), ("bfloat16", 76)):  # the padding each precision runs fastest with
        cfg = MLPConfig(epochs=1, batch_size=8, precision=precision)
        net = train_stacked_mlps(X, y, [np.arange(20)], torch.zeros(1, 75), torch.ones(1, 75), cfg)
        assert [tuple(w.shape[1:]) for w in net.weights] == [(width, width)] * 3 + [(width, 1)]


def test_bfloat16_backward_is_the_float32_one_within_bfloat16_rounding():
    gen = torch.Generator().manual_seed(0)
    net = _init_stack(4, (6, 9, 4, 1), gen, torch.device("cpu"))
    xb = torch.randn(4, 32, 6, generator=gen)
    yb = (torch.rand(4, 32, generator=gen) > 0.5).float()
    mask = torch.ones(4, 32)
    loss32, grads32 = loss_and_grads(net, xb, yb, mask)
    grads32 = [g.clone() for g in grads32]
    ws = Workspace(net, 32, torch.bfloat16)
    loss16, grads16 = loss_and_grads(net, xb, yb, mask, ws)
    assert all(g.dtype == torch.float32 for g in grads16) and loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, atol=0.02, rtol=0.02)
    for g16, g32 in zip(grads16, grads32, strict=True):
        assert float((g16 - g32).abs().max()) <= 0.05 * float(g32.abs().max())  # bfloat16: 8 significant bits
        assert float((g16 - g32).abs().max()) > 0  # the products did run in bfloat16


@pytest.mark.parametrize("shared", [True, False])
def test_bfloat16_training_keeps_the_model_exact_where_it_must_and_close_elsewhere(shared):
    rng = np.random.default_rng(1)
    X = torch.tensor(rng.normal(size=(60, 5)), dtype=torch.float32)
    y = torch.tensor(X.numpy()[:, 0] + 0.2 * rng.normal(size=60) > 0, dtype=torch.float32)
    sets = [np.delete(np.arange(60), i) for i in range(4)]
    mean = torch.zeros(4, 5) if shared else torch.tensor(rng.normal(size=(4, 5)) * 0.1, dtype=torch.float32)
    scale = torch.ones(4, 5)
    cfg = MLPConfig(hidden=(6, 6), epochs=20, batch_size=16)
    nets = {p: train_stacked_mlps(X, y, sets, mean, scale, replace(cfg, precision=p)) for p in ("float32", "bfloat16")}
    start = _init_stack(4, (5, 6, 6, 1), torch.Generator().manual_seed(cfg.seed), torch.device("cpu"))
    low = nets["bfloat16"]
    for w32, w16, w0 in zip(nets["float32"].weights, low.weights, start.weights, strict=True):
        assert w16.dtype == torch.float32  # float32 master weights
        assert 0 < float((w16 - w32).norm()) < 0.1 * float((w32 - w0).norm())  # the same training, rounded
    w0 = low.weights[0]
    assert (w0[:, 6:, :] == 0).all() and (w0[:, :, 7:] == 0).all()  # padding stays exactly zero
    assert (w0[:, 5, 6] == 1).all() and (w0[:, :5, 6] == 0).all()  # the constant unit is passed on exactly
    assert low.history["loss"][-1] < low.history["loss"][0]
