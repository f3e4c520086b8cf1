from __future__ import annotations

import numpy as np
import pytest
import torch

from meta_ood_perception.errors import FaultError, InputError
from meta_ood_perception.preprocessing import check_frame, logits_to_probs, resize_maps, softmax, to_network_input


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ([[1, 2, 3]], "numpy array"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.full((10, 10, 3), np.nan, np.float32), "NaN"),
        (np.zeros((20_000, 1, 3), np.uint8), "limit"),
    ],
)
def test_bad_frames_raise_a_clear_value_error(image, message):
    with pytest.raises(InputError, match=message):
        check_frame(image)


def test_network_input_matches_the_training_normalization():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = to_network_input(image, (64, 128), mean, std)
    chw = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = (chw - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert x.shape == (1, 3, 64, 128) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], expected.numpy(), atol=1e-6)
    # shrinking by 2 is the 2×2 block mean (INTER_AREA), not a sample
    half = to_network_input(image, (32, 64), (0, 0, 0), (1, 1, 1))[0] * 255
    blocks = image.astype(np.float64).reshape(32, 2, 64, 2, 3).mean(axis=(1, 3)).transpose(2, 0, 1)
    assert np.abs(half - blocks).max() <= 0.51


@pytest.mark.parametrize("size", [(64, 96), (256, 512), (45, 77)])
def test_upsampling_matches_torch_bilinear(size):
    logits = np.random.default_rng(1).normal(size=(19, 32, 48)).astype(np.float32)
    ours = resize_maps(logits, size)
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=size, mode="bilinear", align_corners=False
    )
    np.testing.assert_allclose(ours, ref[0].numpy(), atol=1e-4)
    probs = logits_to_probs(logits, size)
    np.testing.assert_allclose(probs, torch.softmax(ref[0], 0).numpy(), atol=2e-5)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)


def test_softmax_is_stable_and_nan_logits_are_rejected():
    big = np.array([[[1000.0]], [[0.0]]], np.float32)
    np.testing.assert_allclose(softmax(big.copy())[:, 0, 0], [1.0, 0.0])
    bad = np.zeros((3, 4, 4), np.float32)
    bad[1, 2, 2] = np.nan
    with pytest.raises(FaultError, match="1 non-finite logits"):
        logits_to_probs(bad, (8, 8))
