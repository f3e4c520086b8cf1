from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import CASES, load_case, load_np1, random_probs

from meta_ood_perception.scores import anomaly_score, entropy_map, heatmaps


@pytest.mark.parametrize("case", CASES)
def test_anomaly_score_reproduces_reference_mask(case):
    d = load_case(case)
    mask = anomaly_score(d["probs"]) >= 0.7
    np.testing.assert_array_equal(mask, d["ood_mask"].astype(bool))


@pytest.mark.parametrize("case", CASES)
def test_entropy_map_is_the_reference_heat_map(case):
    # Component means of E, accumulated in float64, equal the numpy-1 reference run exactly only if every
    # per-pixel float32 value is bit-identical to the research code's.
    d, ref = load_case(case), load_np1(case)
    e = entropy_map(d["probs"]).astype(np.float64)
    labels = np.abs(d["marked"].astype(np.int64)).ravel()
    sums = np.bincount(labels, weights=e.ravel())[1:]
    counts = np.bincount(labels)[1:]
    np.testing.assert_allclose(sums / counts, ref["E"], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("pixel", "expected_d", "expected_v"),
    [
        ([0.5, 0.3, 0.2], 1 - 0.5 + 0.3, 0.5),
        ([1.0, 0.0, 0.0], 0.0, 0.0),
        ([0.4, 0.4, 0.2], 1.0, 0.6),
        ([0.2, 0.2, 0.6], 1 - 0.6 + 0.2, 0.4),
    ],
)
def test_margin_and_variation_hand_computed(pixel, expected_d, expected_v):
    probs = np.asarray(pixel, np.float32).reshape(3, 1, 1)
    maps = heatmaps(probs)
    assert maps.margin[0, 0] == pytest.approx(expected_d, abs=1e-6)
    assert maps.variation[0, 0] == pytest.approx(expected_v, abs=1e-6)
    assert maps.argmax[0, 0] == int(np.argmax(pixel))


def test_uniform_and_one_hot_extremes():
    c = 19
    uniform = np.full((c, 2, 2), 1 / c, np.float32)
    one_hot = np.zeros((c, 2, 2), np.float32)
    one_hot[4] = 1
    assert np.allclose(anomaly_score(uniform), 1.0, atol=1e-6)
    assert np.allclose(entropy_map(uniform), 1.0, atol=1e-5)
    assert np.allclose(anomaly_score(one_hot), 0.0, atol=1e-7)
    assert np.all(np.abs(entropy_map(one_hot)) < 1e-5)
    assert np.all(heatmaps(one_hot).argmax == 4)


def test_anomaly_score_renormalizes_and_handles_zeros(rng):
    probs = random_probs(rng, 5, 4, 6)
    probs[2] = 0.0
    probs /= probs.sum(axis=0)
    expected = -(np.where(probs > 0, probs * np.log(np.where(probs > 0, probs, 1)), 0)).sum(0) / math.log(5)
    np.testing.assert_allclose(anomaly_score(probs), expected, atol=1e-6)
    np.testing.assert_allclose(anomaly_score(probs * 3), expected, atol=1e-6)


def test_torch_matches_numpy_and_keeps_batch(rng):
    probs = random_probs(rng, 19, 8, 12, temperature=3.0)
    t = torch.from_numpy(np.stack([probs, probs[::-1].copy()]))
    a = anomaly_score(t)
    assert a.shape == (2, 8, 12)
    assert a.dtype == torch.float32
    np.testing.assert_allclose(a[0].numpy(), anomaly_score(probs), atol=1e-6)
    maps = heatmaps(t[0])
    ref = heatmaps(probs)
    for name in ("entropy", "margin", "variation"):
        np.testing.assert_allclose(getattr(maps, name).numpy(), getattr(ref, name), atol=1e-6)
    np.testing.assert_array_equal(maps.argmax.numpy(), ref.argmax)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_torch_stays_on_gpu(rng):
    t = torch.from_numpy(random_probs(rng, 19, 8, 8)).cuda()
    assert anomaly_score(t).device == t.device
    assert heatmaps(t).entropy.device == t.device


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.zeros((19, 4), np.float32), r"shape \(C, H, W\)"),
        (np.zeros((19, 4, 4), np.int64), "floating point"),
        (np.ones((1, 4, 4), np.float32), "at least 2 classes"),
        (np.zeros((19, 0, 4), np.float32), "empty"),
        ([[[0.5]]], "numpy array or torch tensor"),
    ],
)
def test_bad_probs_rejected(probs, match):
    for fn in (anomaly_score, entropy_map, heatmaps):
        with pytest.raises(ValueError, match=match):
            fn(probs)
