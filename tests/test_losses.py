from __future__ import annotations

import math

import pytest
import torch

from meta_ood_training.losses import entropy_max_loss


def _logits(*pixels):
    """(1, C, 1, N) logits from per-pixel class scores."""
    return torch.tensor(pixels, dtype=torch.float64).T.reshape(1, len(pixels[0]), 1, len(pixels))


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9, 1.0])
def test_hand_computed_mixture(lam):
    # pixel 0: class 1 of 3 with logits (0, ln 2, 0) → p = (1/4, 1/2, 1/4); pixel 1: OoD with the same logits;
    # pixel 2: void.
    logits = _logits([0.0, math.log(2), 0.0], [0.0, math.log(2), 0.0], [5.0, 0.0, 0.0])
    target = torch.tensor([[[1, 254, 255]]])
    ce_in = -math.log(0.5)
    ce_uniform = -(math.log(0.25) + math.log(0.5) + math.log(0.25)) / 3
    expected = ((1 - lam) * ce_in + lam * ce_uniform) / 2  # two non-void pixels
    assert entropy_max_loss(logits, target, lam=lam).item() == pytest.approx(expected, rel=1e-12)


def test_uniform_softmax_minimizes_the_ood_term():
    target = torch.full((1, 1, 2), 254)
    flat = entropy_max_loss(torch.zeros(1, 4, 1, 2), target, lam=1.0)
    peaked = entropy_max_loss(torch.tensor([3.0, 0, 0, 0]).view(1, 4, 1, 1).expand(1, 4, 1, 2), target, lam=1.0)
    assert flat.item() == pytest.approx(math.log(4))
    assert peaked.item() > flat.item()


def test_void_pixels_get_no_gradient_and_all_void_is_zero():
    logits = torch.randn(2, 5, 3, 3, requires_grad=True)
    target = torch.randint(0, 5, (2, 3, 3))
    target[0, 0, 0] = 255
    target[1, 2, 2] = 254
    entropy_max_loss(logits, target).backward()
    assert torch.all(logits.grad[0, :, 0, 0] == 0)
    assert torch.any(logits.grad[1, :, 2, 2] != 0)
    all_void = entropy_max_loss(logits, torch.full((2, 3, 3), 255))
    assert all_void.item() == 0.0
    all_void.backward()


def test_custom_labels_and_matches_cross_entropy_without_ood():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[:, 0] = 99  # void under custom labels
    ref = torch.nn.functional.cross_entropy(logits, target, ignore_index=99)
    got = entropy_max_loss(logits, target, lam=0.0, ood_label=98, void_label=99)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "match"),
    [
        (torch.zeros(1, 3, 2), torch.zeros(1, 2, dtype=torch.long), {}, r"shape \(B, C, H, W\)"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, dtype=torch.long), {}, "target must have shape"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2), {}, "integer labels"),
        (torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 7), {}, r"labels \[7\]"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), {"lam": 1.5}, "lam must lie"),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), {"ood_label": 255}, "must differ"),
    ],
)
def test_bad_input(logits, target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        entropy_max_loss(logits, target, **kwargs)


def test_nan_logits_on_void_pixels_do_not_reach_the_loss():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([[[0, 1], [255, 254]]])
    poisoned = logits.detach().clone()
    poisoned[0, :, 1, 0] = float("nan")
    poisoned.requires_grad_(True)
    loss = entropy_max_loss(poisoned, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(poisoned.grad).all()
    assert loss.item() == pytest.approx(entropy_max_loss(logits, target).item())
