"""The mixed Cityscapes + COCO-OoD epoch: every in-distribution image plus a fresh random draw of OoD-proxy images."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from meta_ood_perception.errors import ConfigError


class MixedSampler:
    """Indices into ``ConcatDataset([in_distribution, ood_proxy])`` for one epoch.

    Each epoch holds all ``n_in`` in-distribution images and ``n_ood_per_epoch`` OoD-proxy images drawn without
    replacement (the paper: 2,975 Cityscapes + 297 COCO-OoD), redrawn and reshuffled every epoch from
    (``seed``, epoch). Call :meth:`set_epoch` before each epoch (as with ``DistributedSampler``).
    """

    def __init__(self, n_in: int, n_ood: int, n_ood_per_epoch: int | None = None, *, seed: int = 0) -> None:
        if n_in < 0 or n_ood < 0:
            raise ConfigError(f"dataset sizes must be non-negative, got {n_in}, {n_ood}")
        per_epoch = round(0.1 * n_in) if n_ood_per_epoch is None else n_ood_per_epoch
        if not 0 <= per_epoch <= n_ood:
            raise ConfigError(f"n_ood_per_epoch must lie in [0, {n_ood}], got {per_epoch}")
        self.n_in, self.n_ood, self.per_epoch, self.seed = n_in, n_ood, per_epoch, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n_in + self.per_epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        ood = self.n_in + rng.choice(self.n_ood, size=self.per_epoch, replace=False)
        order = rng.permutation(np.concatenate([np.arange(self.n_in), ood]))
        return iter(int(i) for i in order)
