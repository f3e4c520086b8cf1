"""Train the deployable meta classifier on all available components and export the runtime artifact."""

from __future__ import annotations

import numpy as np
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
) -> MetaClassifier:
    """Fit ``lr`` or ``mlp`` on every component of ``data`` (standardization from the same rows).

    Raises:
        MetaDataError: a single class in y.
        ConfigError: an unknown classifier.
    """
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
            X, y, [np.arange(data.n)],
            torch.as_tensor(mean, dtype=torch.float32, device=device).unsqueeze(0),
            torch.as_tensor(scale, dtype=torch.float32, device=device).unsqueeze(0),
            cfg_mlp,
        )  # fmt: skip
        weights, biases = net.layers(0)
        extra = {"hidden": list(cfg_mlp.hidden), "epochs": cfg_mlp.epochs, "seed": cfg_mlp.seed}
        return mlp(data.names, mean, scale, weights, biases, info | extra)
    raise ConfigError(f"classifier must be 'lr' or 'mlp', got {classifier!r}")
