"""Training the meta classifiers: logistic regression (scikit-learn liblinear) and stacked MLPs (torch).

The MLPs of all cross-validation folds are trained together: their weights are stacked along a leading fold
axis and every step is a handful of batched matrix products with a hand-written backward pass and a fused Adam
update, with buffers allocated once. Each fold still sees exactly what a separately trained model would see:
its own initialization, its own shuffled batches, its own Adam state.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from meta_ood_perception.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
STD_EPS = 1e-10  # the research code's (std + 1e-10)
Precision = Literal["float32", "bfloat16"]
#: torch dtype of each :data:`Precision`.
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: Layer widths (with the constant unit) are zero-padded to a multiple of this per precision, the fastest measured
#: for the paper's network on the 2-core AVX-512 CPU: float32 75 + 1 → 80 (4 % faster than 76 despite 10 % more
#: operations), bfloat16 → 76 (6 % faster than 80).
PADS: dict[str, int] = {"float32": 8, "bfloat16": 4}
PAD = PADS["float32"]


@dataclass(frozen=True)
class LogisticConfig:
    """scikit-learn ``LogisticRegression(solver="liblinear")`` settings (the reference's defaults)."""

    C: float = 1.0
    tol: float = 1e-4
    max_iter: int = 100


@dataclass(frozen=True)
class MLPConfig:
    """The paper's MLP meta classifier and its training.

    Attributes:
        hidden: hidden layer widths (ReLU); the paper's 75-75-75-1 network is (75, 75, 75).
        lr: Adam learning rate.
        weight_decay: Adam L2 weight decay (added to the gradient, as torch's Adam).
        epochs: passes over each fold's training set.
        batch_size: rows per step.
        drop_last: drop each epoch's incomplete last batch (the reference's DataLoader). A training set smaller
            than one batch is then trained on full-set batches instead of not at all (the reference's model stays
            untrained there).
        seed: seeds initialization and shuffling.
        device: torch device for training ("cpu", "cuda", ...).
        precision: dtype of the batched products: ``float32`` (the reference's arithmetic) or ``bfloat16``
            (products and activations in bfloat16 with float32 accumulation; weights, gradients handed to Adam,
            Adam's state, loss and logits stay float32).
    """

    hidden: tuple[int, ...] = (75, 75, 75)
    lr: float = 1e-3
    weight_decay: float = 5e-3
    epochs: int = 50
    batch_size: int = 128
    drop_last: bool = True
    seed: int = 0
    device: str = "cpu"
    precision: Precision = "float32"

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise ConfigError(f"precision must be one of {sorted(DTYPES)}, got {self.precision!r}")
        bad = [f"{name} must be {rule}, got {value}" for name, value, ok, rule in (
            ("epochs", self.epochs, self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("lr", self.lr, self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, ">= 0"),
        ) if not ok]  # fmt: skip
        if bad:
            raise ConfigError(f"invalid MLPConfig: {'; '.join(bad)}")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive, got {self.hidden}")

    def n_parameters(self, n_features: int) -> int:
        """Trainable parameters for ``n_features`` inputs (17,176 for the paper's network and 75 metrics)."""
        widths = (n_features, *self.hidden, 1)
        return sum(a * b + b for a, b in itertools.pairwise(widths))


@dataclass
class StackedMLP:
    """F MLPs with stacked, zero-padded parameters: ``weights[l]`` (F, in_pad, out_pad) float32 tensors.

    Biases live inside the weights: every layer input carries a constant-1 unit at index ``widths[l]`` (right
    after the real units), whose weight row is the layer's bias; a hidden layer passes the constant on through a
    fixed 1 at [widths[l], widths[l + 1]] (restored after every optimizer step). All other padded units are
    zero and stay zero. This saves the separate bias additions and reductions of every step.
    """

    weights: list[torch.Tensor]
    widths: tuple[int, ...]
    history: dict[str, Any] = field(default_factory=dict)

    @property
    def n_models(self) -> int:
        """Number of stacked models F."""
        return int(self.weights[0].shape[0])

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) standardized inputs → (..., in_pad) with the constant-1 unit."""
        h = pad_features(x, self.weights[0].shape[1]).clone()
        h[..., self.widths[0]] = 1.0
        return h

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(F, B, in) standardized inputs → (F, B) logits."""
        h = self.augment(x)
        for i, w in enumerate(self.weights):
            h = _forward_product(h, w)
            if i < len(self.weights) - 1:
                h = h.clamp_min(0.0)
        return h.squeeze(-1)

    def restore_constants(self) -> None:
        """Reset each hidden layer's constant column to pass the constant-1 unit on unchanged."""
        for i, w in enumerate(self.weights[:-1]):
            w[:, :, self.widths[i + 1]] = 0.0
            w[:, self.widths[i], self.widths[i + 1]] = 1.0

    def layers(self, model: int) -> tuple[list[FloatArray], list[FloatArray]]:
        """One model's weights as (out, in) and biases as (out,) float64 arrays (torch ``Linear`` layout)."""
        dims = self.widths
        ws = [w[model, : dims[i], : dims[i + 1]].T.double().cpu().numpy() for i, w in enumerate(self.weights)]
        bs = [w[model, dims[i], : dims[i + 1]].double().cpu().numpy() for i, w in enumerate(self.weights)]
        return ws, bs


def _forward_product(h: torch.Tensor, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Compute h @ w for (M, B, in) h and (M, in, out) w, into ``out`` if given (no autograd then).

    A width-1 output is computed as (1×in)·(in×B), about twice as fast here as (B×in)·(in×1); (M, B, 1) and
    (M, 1, B) share memory.
    """
    if w.shape[2] == 1:
        if out is None:
            return torch.bmm(w.transpose(1, 2), h.transpose(1, 2)).transpose(1, 2)
        torch.bmm(w.transpose(1, 2), h.transpose(1, 2), out=out.view(out.shape[0], 1, out.shape[1]))
        return out
    if out is None:
        return torch.bmm(h, w)
    return torch.bmm(h, w, out=out)


def pad_features(x: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad the last axis of ``x`` to ``width``."""
    extra = width - x.shape[-1]
    return x if extra == 0 else torch.nn.functional.pad(x, (0, extra))


def standardization(X: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Column mean and scale (population std + 1e-10) of (N, F) X, as the research code computes them."""
    return X.mean(axis=0), X.std(axis=0) + STD_EPS


def fit_logistic(X: FloatArray, y: npt.NDArray[np.int64], config: LogisticConfig) -> tuple[FloatArray, float]:
    """Fit liblinear logistic regression on standardized (N, F) X; returns (coef (F,), intercept).

    As liblinear does, the intercept is penalized like the weights.
    """
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(solver="liblinear", C=config.C, tol=config.tol, max_iter=config.max_iter)
    model.fit(X, y)
    return model.coef_[0].astype(np.float64), float(model.intercept_[0])


def _padded(width: int, pad: int = PAD) -> int:
    """Padded size of a layer input of ``width`` real units plus the constant unit."""
    return -(-(width + 1) // pad) * pad


def layer_shapes(widths: tuple[int, ...], pad: int = PAD) -> list[tuple[int, int]]:
    """(in, out) of each stacked weight matrix for layer ``widths`` (inputs, hidden..., output): inputs padded
    to a multiple of ``pad`` with the constant unit, outputs padded likewise except the last (e.g. (75, 75, 75,
    75, 1) → [(80, 80), (80, 80), (80, 80), (80, 1)] with the float32 pad 8, (76, 76), ..., (76, 1) with 4)."""
    last = len(widths) - 2
    return [
        (_padded(a, pad), b if i == last else _padded(b, pad)) for i, (a, b) in enumerate(itertools.pairwise(widths))
    ]


def _init_stack(
    n_models: int, widths: tuple[int, ...], gen: torch.Generator, device: torch.device, pad: int = PAD
) -> StackedMLP:
    # torch.nn.Linear's default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). Widths are zero-padded to a
    # multiple of ``pad`` (see PADS; the same random draws whatever the pad); padded units have zero weights,
    # get zero gradients and zero weight decay, so they stay exactly zero and the model is the unpadded one.
    weights = []
    shapes = layer_shapes(widths, pad)
    for (fan_in, fan_out), shape in zip(itertools.pairwise(widths), shapes, strict=True):
        bound = 1.0 / math.sqrt(fan_in)
        w = torch.zeros(n_models, *shape)
        w[:, :fan_in, :fan_out] = (torch.rand(n_models, fan_in, fan_out, generator=gen) * 2 - 1) * bound
        w[:, fan_in, :fan_out] = (torch.rand(n_models, fan_out, generator=gen) * 2 - 1) * bound  # the bias row
        weights.append(w.to(device))
    net = StackedMLP(weights, widths=widths)
    net.restore_constants()
    return net


def train_stacked_mlps(
    X: torch.Tensor,
    y: torch.Tensor,
    train_sets: list[npt.NDArray[np.int64]],
    mean: torch.Tensor,
    scale: torch.Tensor,
    config: MLPConfig,
    *,
    progress: bool = False,
) -> StackedMLP:
    """Train one MLP per training set, all at once.

    Args:
        X: (N, F) float32 raw features on the training device.
        y: (N,) float32 targets (1 = false positive) on the same device.
        train_sets: per model, the row indices it trains on (any lengths).
        mean, scale: (M, F) per-model standardization (M = number of models).
        config: architecture and optimizer settings.
        progress: show a progress bar over epochs.

    Returns:
        The trained :class:`StackedMLP` (``history["loss"]``: mean training loss per epoch).
    """
    device = X.device
    n_models = len(train_sets)
    gen = torch.Generator().manual_seed(config.seed)
    widths = (X.shape[1], *config.hidden, 1)
    net = _init_stack(n_models, widths, gen, device, PADS[config.precision])
    for p in net.weights:
        p.requires_grad_(False)
    ws = Workspace(net, config.batch_size, DTYPES[config.precision])
    gathered = X.new_empty(n_models * config.batch_size, X.shape[1])
    # float32 standardization buffer when the products run in another dtype (rounded once into ws.inputs)
    standardized = X.new_empty(n_models, config.batch_size, X.shape[1]) if ws.mixed else None
    params = net.weights
    moment1: list[torch.Tensor] = []
    moment2: list[torch.Tensor] = []
    fused: torch.optim.Adam | None = None

    sizes = torch.tensor([len(t) for t in train_sets], dtype=torch.long)
    n_max = int(sizes.max())
    padded = torch.zeros(n_models, n_max, dtype=torch.long)
    for m, train_rows in enumerate(train_sets):
        padded[m, : len(train_rows)] = torch.as_tensor(train_rows, dtype=torch.long)
    batch = config.batch_size
    # Batches per epoch per model: the reference drops incomplete batches; a set smaller than one batch
    # trains on full-set batches instead of never (documented fix).
    if config.drop_last:
        n_batches = torch.where(sizes >= batch, sizes // batch, torch.ones_like(sizes))
    else:
        n_batches = (sizes + batch - 1) // batch
    steps_per_epoch = int(n_batches.max())
    row_limit = torch.where(
        torch.as_tensor(config.drop_last) & (sizes >= batch), n_batches * batch, sizes
    )  # rows of the shuffled order a model uses per epoch
    step_count = torch.zeros(n_models, 1, 1, device=device)
    if bool((n_batches == n_batches[0]).all()):
        # Every model takes a step at every step (e.g. leave-one-out): Adam is elementwise, so one fused
        # torch Adam over the stacked tensors is exactly one Adam per model.
        fused = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    else:
        moment1 = [torch.zeros_like(p) for p in params]
        moment2 = [torch.zeros_like(p) for p in params]
    mean3, scale3 = mean.unsqueeze(1), scale.unsqueeze(1)
    shared_stats = bool((mean == mean[0]).all() and (scale == scale[0]).all())
    if shared_stats:  # e.g. pooled statistics: standardize and pad once, then gather rows straight into the batch
        X_ready = net.augment((X - mean[0]) / scale[0]).to(ws.dtype).contiguous()
    col = torch.arange(batch)
    losses = []
    epochs = tqdm(range(config.epochs), desc="MLP folds", disable=not progress, leave=False)
    for _ in epochs:
        keys = torch.rand(n_models, n_max, generator=gen)
        keys[torch.arange(n_max).unsqueeze(0) >= sizes.unsqueeze(1)] = 2.0  # padding sorts last
        order = padded.gather(1, keys.argsort(dim=1))
        epoch_loss = torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            pos = step * batch + col  # (B,) positions in the shuffled order
            valid = (pos.unsqueeze(0) < row_limit.unsqueeze(1)) & (step < n_batches).unsqueeze(1)  # (M, B)
            rows = order.gather(1, pos.clamp_max(n_max - 1).unsqueeze(0).expand(n_models, -1)).to(device)
            mask = valid.to(device=device, dtype=torch.float32)
            active = (mask.sum(dim=1) > 0).to(torch.float32).view(n_models, 1, 1)
            if shared_stats:
                torch.index_select(X_ready, 0, rows.view(-1), out=ws.inputs.view(n_models * batch, -1))
            else:
                xb = ws.inputs[..., : X.shape[1]] if standardized is None else standardized
                torch.index_select(X, 0, rows.view(-1), out=gathered)
                torch.sub(gathered.view(n_models, batch, -1), mean3, out=xb)
                xb.div_(scale3)
                if standardized is not None:
                    ws.inputs[..., : X.shape[1]].copy_(standardized)
            loss, grads = loss_and_grads(net, ws.inputs, y[rows], mask, ws)
            epoch_loss += loss.mean()
            if fused is not None:
                for p, g in zip(params, grads, strict=True):
                    p.grad = g
                fused.step()
            else:
                step_count += active
                adam_step(params, grads, moment1, moment2, step_count, active, config)
            net.restore_constants()
        losses.append(float(epoch_loss) / max(steps_per_epoch, 1))
    net.history["loss"] = losses
    return net


class Workspace:
    """Buffers for one batch of stacked forward/backward passes, allocated once (fresh large tensors cost
    page faults on every step).

    ``dtype`` is the dtype of the products (see :attr:`MLPConfig.precision`): inputs, activations and their
    gradients are held in it; with a dtype other than the weights', ``weights`` holds per-step copies of the
    weights in it and ``low_grads`` the products' weight gradients before they are widened into ``grads``.
    """

    def __init__(self, net: StackedMLP, batch: int, dtype: torch.dtype = torch.float32) -> None:
        n_models = net.n_models
        like = net.weights[0]
        self.dtype = dtype
        self.inputs = like.new_zeros(n_models, batch, net.weights[0].shape[1], dtype=dtype)
        self.inputs[..., net.widths[0]] = 1.0  # the constant unit; batches only overwrite the real columns
        self.outs = [like.new_empty(n_models, batch, w.shape[2], dtype=dtype) for w in net.weights]
        self.grad_in = [like.new_empty(n_models, batch, w.shape[1], dtype=dtype) for w in net.weights]
        self.relu_grad = [torch.empty_like(out) for out in self.outs]
        self.grads = [torch.empty_like(w) for w in net.weights]
        self.mixed = dtype != like.dtype
        self.weights = [torch.empty_like(w, dtype=dtype) for w in net.weights] if self.mixed else net.weights
        self.low_grads = [torch.empty_like(w, dtype=dtype) for w in net.weights] if self.mixed else self.grads


def loss_and_grads(
    net: StackedMLP,
    xb: torch.Tensor,
    yb: torch.Tensor,
    mask: torch.Tensor,
    workspace: Workspace | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-model mean BCE over the valid rows of one batch, and its gradients, by a hand-written backward.

    Args:
        net: the stacked models.
        xb: (M, B, F) standardized inputs (F may already be padded); yb: (M, B) targets; mask: (M, B) 1.0 on
            valid rows.
        workspace: reusable buffers (see :class:`Workspace`); results live in it until the next call.

    Returns:
        (M,) losses and the gradients of their sum with respect to ``net.weights`` (bias rows included).
    """
    ws = workspace or Workspace(net, xb.shape[1])
    n_layers = len(net.weights)
    if xb.data_ptr() != ws.inputs.data_ptr():
        ws.inputs[..., : xb.shape[-1]].copy_(xb)
    if ws.mixed:
        for low, w in zip(ws.weights, net.weights, strict=True):
            low.copy_(w)
    count = mask.sum(dim=1).clamp_min(1.0)
    h = ws.inputs
    for i, w in enumerate(ws.weights):
        h = _forward_product(h, w, ws.outs[i])
        if i < n_layers - 1:
            h.clamp_min_(0.0)  # ReLU outputs are > 0 exactly where its derivative is 1
    logit = h.squeeze(-1).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, yb, reduction="none")
    loss = (bce * mask).sum(dim=1) / count
    grad = ((torch.sigmoid(logit) - yb) * (mask / count.unsqueeze(1))).unsqueeze(-1).to(ws.dtype)  # d loss / d logit
    for i in range(n_layers - 1, -1, -1):
        layer_in = ws.inputs if i == 0 else ws.outs[i - 1]
        w = ws.weights[i]
        n_out = w.shape[2]
        if n_out == 1:
            # Width-1 output layer: (1×B)·(B×in) and a broadcast product are several times faster than the
            # equivalent (in×B)·(B×1) and (B×1)·(1×in) batched products. (M, in, 1) and (M, 1, in) share memory.
            torch.bmm(grad.transpose(1, 2), layer_in, out=ws.low_grads[i].view(w.shape[0], 1, w.shape[1]))
        else:
            torch.bmm(layer_in.transpose(1, 2), grad, out=ws.low_grads[i])
        if ws.mixed:
            ws.grads[i].copy_(ws.low_grads[i])
        if i > 0:
            if n_out == 1:
                torch.mul(grad, w.transpose(1, 2), out=ws.grad_in[i])
            else:
                torch.bmm(grad, w.transpose(1, 2), out=ws.grad_in[i])
            # ReLU backward in one pass: grad where the layer input (a ReLU output) is > 0, else 0.
            grad = torch.ops.aten.threshold_backward.grad_input(
                ws.grad_in[i], layer_in, 0.0, grad_input=ws.relu_grad[i - 1]
            )
    return loss, ws.grads


def adam_step(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    moment1: list[torch.Tensor],
    moment2: list[torch.Tensor],
    step_count: torch.Tensor,
    active: torch.Tensor,
    config: MLPConfig,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """In-place Adam (torch semantics, L2 ``weight_decay`` added to the gradient) on stacked parameters.

    ``step_count`` (M, 1, 1) holds each model's step number after this step; models whose ``active`` (M, 1, 1)
    is 0 keep their parameters and moments.
    """
    beta1, beta2 = betas
    n_models = step_count.shape[0]
    t = step_count.clamp_min(1.0)
    bias1 = 1.0 - beta1**t
    bias2 = 1.0 - beta2**t
    for p, g, m1, m2 in zip(params, grads, moment1, moment2, strict=True):
        shape = (n_models,) + (1,) * (p.dim() - 1)
        act = active.view(shape)
        g = g + config.weight_decay * p
        m1.mul_(1 - (1 - beta1) * act).add_(act * (1 - beta1) * g)
        m2.mul_(1 - (1 - beta2) * act).add_(act * (1 - beta2) * g * g)
        denom = (m2 / bias2.view(shape)).sqrt_().add_(eps)
        p.sub_(act * config.lr * (m1 / bias1.view(shape)) / denom)
