"""Train the deployable meta classifier on all available components and export the runtime artifact."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch

from meta_ood_perception.errors import ConfigError
from meta_ood_perception.meta_classifier import MetaClassifier, logistic, mlp

from .meta_data import MetaDataset
from .meta_models import LogisticConfig, MLPConfig, fit_logistic, standardization, train_stacked_mlps


def train_meta_classifier(
    data: MetaDataset,
    classifier: str,
    *,
    logistic_config: LogisticConfig | None = None,
    mlp_config: MLPConfig | None = None,
    metadata: dict[str, object] | None = None,
    ensemble: int = 1,
) -> MetaClassifier:
    """Fit ``lr`` or ``mlp`` on every component of ``data`` (standardization from the same rows).

    With ``ensemble`` = K > 1 (``mlp`` only), K MLPs of ``mlp_config`` are trained on the same rows from different
    initializations and shufflings (one stacked run) and stored as one MLP whose logit is the mean of theirs
    (:func:`average_mlps`): the seed-to-seed spread of a single MLP's decisions shrinks, the runtime format stays
    the plain ``mlp`` kind.

    Raises:
        MetaDataError: a single class in y.
        ConfigError: an unknown classifier, ``ensemble`` < 1, or ``ensemble`` > 1 with ``lr``.
    """
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
        raise ConfigError(f"ensemble must be an integer >= 1, got {ensemble!r}")
    if ensemble > 1 and classifier != "mlp":
        raise ConfigError(f"ensemble {ensemble} needs classifier 'mlp', got {classifier!r}")
    data.require_both_classes()
    mean, scale = standardization(data.X)
    info = {"classifier": classifier, "n_train": data.n, "positive_ratio": float(data.y.mean())} | dict(metadata or {})
    if classifier == "lr":
        cfg = logistic_config or LogisticConfig()
        coef, intercept = fit_logistic((data.X - mean) / scale, data.y, cfg)
        return logistic(data.names, mean, scale, coef, intercept, info | {"C": cfg.C})
    if classifier == "mlp":
        cfg_mlp = mlp_config or MLPConfig()
        device = torch.device(cfg_mlp.device)
        X = torch.as_tensor(data.X, dtype=torch.float32, device=device)
        y = torch.as_tensor(data.y, dtype=torch.float32, device=device)
        net = train_stacked_mlps(
            X, y, [np.arange(data.n)] * ensemble,
            torch.as_tensor(mean, dtype=torch.float32, device=device).unsqueeze(0).expand(ensemble, -1),
            torch.as_tensor(scale, dtype=torch.float32, device=device).unsqueeze(0).expand(ensemble, -1),
            cfg_mlp,
        )  # fmt: skip
        weights, biases = average_mlps([net.layers(m) for m in range(ensemble)])
        extra = {"hidden": list(cfg_mlp.hidden), "epochs": cfg_mlp.epochs, "seed": cfg_mlp.seed, "ensemble": ensemble}
        return mlp(data.names, mean, scale, weights, biases, info | extra)
    raise ConfigError(f"classifier must be 'lr' or 'mlp', got {classifier!r}")


Layers = tuple[list[npt.NDArray[np.float64]], list[npt.NDArray[np.float64]]]


def average_mlps(members: Sequence[Layers]) -> Layers:
    """K MLPs of one architecture as one MLP whose output logit is the mean of theirs.

    Args:
        members: per member, (weights, biases): per layer (out, in) float64 matrices and (out,) vectors, every
            member with the same widths F → h1 → … → 1.

    Returns:
        (weights, biases) of the merged network F → K·h1 → … → K·hL → 1: the first layer stacks the members'
        rows (each reads all F inputs), hidden layers are block-diagonal (members do not mix), the output layer
        concatenates the members' output rows divided by K and averages their biases. One member is returned
        as it is.

    Raises:
        ConfigError: no members, or members of different widths.
    """
    if not members:
        raise ConfigError("average_mlps needs at least one member")
    shapes = [tuple(w.shape for w in ws) for ws, _ in members]
    if any(s != shapes[0] for s in shapes):
        raise ConfigError(f"average_mlps: members of different widths {sorted(set(shapes))}")
    if len(members) == 1:
        return list(members[0][0]), list(members[0][1])
    k = len(members)
    n_layers = len(members[0][0])
    weights: list[npt.NDArray[np.float64]] = []
    biases: list[npt.NDArray[np.float64]] = []
    for i in range(n_layers):
        ws = [np.asarray(m[0][i], np.float64) for m in members]
        bs = [np.asarray(m[1][i], np.float64) for m in members]
        if n_layers == 1:  # no hidden layer: the logit is linear, the mean of the members' is one linear map
            weights.append(np.mean(ws, axis=0))
            biases.append(np.mean(bs, axis=0))
        elif i == n_layers - 1:
            weights.append(np.concatenate(ws, axis=1) / k)
            biases.append(np.mean(bs, axis=0))
        elif i == 0:
            weights.append(np.concatenate(ws, axis=0))
            biases.append(np.concatenate(bs))
        else:
            out_w, in_w = ws[0].shape
            block = np.zeros((k * out_w, k * in_w))
            for j, w in enumerate(ws):
                block[j * out_w : (j + 1) * out_w, j * in_w : (j + 1) * in_w] = w
            weights.append(block)
            biases.append(np.concatenate(bs))
    return weights, biases
