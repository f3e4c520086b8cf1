from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, roc_auc_score, roc_curve

from meta_ood_perception.evaluation import PixelMetricsAccumulator, pixel_metrics


def _frames(seed=0, n=4):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        labels = rng.choice([0, 1, 255], size=(30, 40), p=[0.7, 0.2, 0.1])
        scores = np.clip(rng.normal(0.35 + 0.3 * (labels == 1), 0.15), 0, 1).astype(np.float32)
        scores[rng.random(scores.shape) < 0.05] = 0.5  # ties
        frames.append((scores, labels))
    return frames


def test_exact_mode_equals_scikit_learn_and_streams():
    frames = _frames()
    s = np.concatenate([f[0].ravel() for f in frames])
    lab = np.concatenate([f[1].ravel() for f in frames])
    keep = lab != 255
    y, x = (lab[keep] == 1).astype(int), s[keep].astype(np.float64)
    got = pixel_metrics([f[0] for f in frames], [f[1] for f in frames])
    assert got["auroc"] == pytest.approx(roc_auc_score(y, x), abs=1e-12)
    assert got["auprc"] == pytest.approx(average_precision_score(y, x), abs=1e-12)
    fpr, tpr, _ = roc_curve(y, x, drop_intermediate=False)
    assert got["fpr95"] == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    assert pixel_metrics(s, lab) == got  # one array or frame by frame: the same


def test_per_frame_scores_need_per_frame_labels():
    from meta_ood_perception.errors import InputError

    frames = _frames()
    with pytest.raises(InputError, match="per-frame scores need per-frame labels"):
        pixel_metrics([f[0] for f in frames], 1)


def _reference_by_expansion(frames):
    """The research code's procedure with explicitly expanded sample lists."""
    bins = np.linspace(0, 1, 101)
    hist = {"in": np.zeros(100, np.int64), "out": np.zeros(100, np.int64)}
    for scores, labels in frames:
        hist["in"] += np.histogram(scores[labels == 0], bins=bins)[0]
        hist["out"] += np.histogram(scores[labels == 1], bins=bins)[0]

    def expand(counts, size):
        counts = (counts / counts.sum() * size).astype("uint32")
        return np.array(list(Counter({i + 1: c for i, c in enumerate(counts)}).elements())) / 100

    a, b = expand(hist["in"], 1e5), expand(hist["out"], 1e5)
    fpr, tpr, _ = roc_curve(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])
    ratio = hist["in"].sum() / (hist["in"].sum() + hist["out"].sum())
    a, b = expand(hist["in"], 1e7 * ratio), expand(hist["out"], 1e7 * (1 - ratio))
    ap = average_precision_score(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])
    return {"auroc": auc(fpr, tpr), "fpr95": fpr[np.abs(tpr - 0.95).argmin()], "auprc": ap}


def test_reference_mode_reproduces_the_binned_procedure():
    frames = _frames(1)
    got = pixel_metrics([f[0] for f in frames], [f[1] for f in frames], mode="reference")
    expected = _reference_by_expansion(frames)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key
    exact = pixel_metrics([f[0] for f in frames], [f[1] for f in frames])
    assert abs(got["auroc"] - exact["auroc"]) < 0.02  # binning costs little AUROC here


def test_custom_labels_and_errors():
    scores = np.array([[0.1, 0.9], [0.2, 0.8]])
    labels = np.array([[1, 2], [1, 2]])
    assert pixel_metrics(scores, labels, in_label=1, ood_label=2, void_label=0)["auroc"] == 1.0
    with pytest.raises(ValueError, match="need both classes"):
        pixel_metrics(scores, np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="same shape"):
        pixel_metrics(scores, np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="NaN or inf"):
        pixel_metrics(np.array([[np.nan, 0.5]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="must differ"):
        PixelMetricsAccumulator(ood_label=1, in_label=1)
    with pytest.raises(ValueError, match="mode must be"):
        pixel_metrics(scores, labels - 1, mode="binned")


def test_streaming_merges_in_batches_and_keeps_float32_keys(monkeypatch):
    import meta_ood_perception.evaluation as ev

    rng = np.random.default_rng(5)
    acc = ev.PixelMetricsAccumulator()
    frames = []
    for _ in range(6):
        labels = rng.integers(0, 2, (50, 60))
        scores = rng.random((50, 60), dtype=np.float32)
        frames.append((scores, labels))
        acc.update(scores, labels)
    assert acc._values.size == 0 and len(acc._pending) == 12  # nothing re-sorted yet
    result = acc.compute()
    assert acc._values.dtype == np.float32
    s = np.concatenate([f[0].ravel() for f in frames])
    y = np.concatenate([f[1].ravel() for f in frames])
    assert result["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_binned_accumulator_has_fixed_memory_and_matches_the_exact_one():
    rng = np.random.default_rng(3)
    exact, binned = PixelMetricsAccumulator(), PixelMetricsAccumulator(quantum=1e-5)
    for _ in range(6):
        labels = (rng.random((48, 64)) < 0.15).astype(np.uint8)
        labels[:3] = 255
        scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
        exact.update(scores, labels)
        binned.update(scores, labels)
        assert binned._binned.shape == (100_001, 2) and not binned._pending
    a, b = exact.compute(), binned.compute()
    for key in ("auroc", "fpr95", "auprc"):
        assert abs(a[key] - b[key]) < 1e-4, key
    with pytest.raises(ValueError, match="quantum"):
        PixelMetricsAccumulator(quantum=0.5)
