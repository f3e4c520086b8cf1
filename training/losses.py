"""Entropy-maximization loss of the paper (Eq. 2–4).

For every non-void pixel: (1 − λ)·cross-entropy when its label is an in-distribution class, and
λ·(−1/C Σ_c log p_c) — the cross-entropy to the uniform distribution, minimal when the softmax is uniform
(maximal entropy) — when its label is ``ood_label``. Both terms are summed and divided by the number of non-void
pixels of the batch; void pixels contribute nothing, not even a gradient.

Relation to the research code (``ood_training.py`` of robin-chan/meta-ood): it builds a target per pixel and class —
1 − λ on the true class of an in-distribution pixel, λ/C on every class of an OoD pixel, 0 for void — multiplies it
with the negative log-softmax and averages over all B·C·H·W entries. Both terms share that denominator, so its loss
is ours times N/(B·C·H·W), N the number of non-void pixels: the same balance between the in-distribution and the
OoD term, on a smaller, batch-dependent scale (at most 1/C; Adam's steps are nearly invariant to a common scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from meta_ood_perception.errors import ConfigError, InputError


def entropy_max_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    lam: float = 0.9,
    ood_label: int = 254,
    void_label: int = 255,
) -> torch.Tensor:
    """Scalar entropy-maximization loss.

    Args:
        logits: (B, C, H, W) float network outputs (before softmax).
        target: (B, H, W) integer labels: train ids 0…C−1, ``ood_label`` for OoD-proxy pixels, ``void_label``
            for ignored pixels.
        lam: λ in [0, 1], the weight of the OoD term (the paper uses 0.9).
        ood_label: label of OoD-proxy pixels.
        void_label: label of ignored pixels.

    Returns:
        0-dim tensor; 0 (still attached to ``logits``) when every pixel is void.

    Raises:
        InputError: wrong shapes or dtypes, or labels that are neither a class, ``ood_label`` nor ``void_label``.
        ConfigError: λ outside [0, 1], equal OoD and void labels.
    """
    if logits.ndim != 4:
        raise InputError(f"logits must have shape (B, C, H, W), got {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise InputError(f"target must have shape {(logits.shape[0], *logits.shape[2:])}, got {tuple(target.shape)}")
    if not logits.is_floating_point():
        raise InputError(f"logits must be floating point, got {logits.dtype}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise InputError(f"target must hold integer labels, got {target.dtype}")
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"lam must lie in [0, 1], got {lam}")
    if ood_label == void_label:
        raise ConfigError(f"ood_label and void_label must differ, both are {ood_label}")
    n_classes = logits.shape[1]
    target = target.long()
    is_ood = target == ood_label
    is_void = target == void_label
    is_in = ~(is_ood | is_void)
    bad = is_in & ((target < 0) | (target >= n_classes))
    if bool(bad.any()):
        values = torch.unique(target[bad])[:5].tolist()
        raise InputError(
            f"target holds labels {values} that are neither a class in [0, {n_classes}), ood_label {ood_label} "
            f"nor void_label {void_label}"
        )
    n_valid = (~is_void).sum()
    if int(n_valid) == 0:
        return logits.sum() * 0.0
    # Void pixels must not reach the loss at all, not even as NaN or inf logits.
    log_p = F.log_softmax(logits.masked_fill(is_void.unsqueeze(1), 0.0), dim=1)
    in_ce = F.nll_loss(log_p, torch.where(is_in, target, -100), ignore_index=-100, reduction="sum")
    uniform_ce = -(log_p.mean(dim=1) * is_ood).sum()
    return ((1.0 - lam) * in_ce + lam * uniform_ce) / n_valid
