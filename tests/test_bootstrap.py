from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.evaluation import pixel_metrics
from meta_ood_training.bootstrap import (
    SCORE_BINS,
    Interval,
    component_bootstrap,
    histogram_metrics,
    interval,
    pixel_bootstrap,
    score_histograms,
    verdict,
)  # fmt: skip
from meta_ood_training.default_bundle import choose_cut


def _pixels(rng, n_in, n_out, shift):
    scores = np.concatenate([rng.beta(2, 5, n_in), rng.beta(2 + shift, 2, n_out)]).astype(np.float32)
    labels = np.r_[np.zeros(n_in, np.uint8), np.ones(n_out, np.uint8)]
    return scores, labels


def test_histogram_metrics_match_the_exact_metrics_up_to_the_bins(rng):
    scores, labels = _pixels(rng, 20_000, 2_000, 3)
    binned = histogram_metrics(score_histograms(scores, labels))
    exact = pixel_metrics(scores, labels)
    for k in ("auroc", "auprc", "fpr95"):
        assert float(binned[k]) == pytest.approx(exact[k], abs=2e-3), k
    stacked = np.stack([score_histograms(scores, labels), score_histograms(1 - scores, labels)])
    both = histogram_metrics(stacked)  # vectorized over leading axes
    assert both["auroc"].shape == (2,) and both["auroc"][1] == pytest.approx(1 - both["auroc"][0], abs=1e-3)
    assert np.isnan(histogram_metrics(np.zeros((2, SCORE_BINS), np.int64))["auroc"])


def test_pixel_bootstrap_separates_a_better_model_and_averages_over_seeds(rng):
    frames = []
    for shift in (1.0, 4.0):  # model 0 worse than model 1
        per_seed = []
        for _ in range(3):
            per_seed.append([score_histograms(*_pixels(rng, 300, 30, shift)) for _ in range(20)])
        frames.append(per_seed)
    hists = np.asarray(frames)  # (V=2, S=3, F=20, 2, bins)
    boot = pixel_bootstrap(hists, 200, np.random.default_rng(0))
    assert boot["auprc"].shape == (200, 2)
    diff = interval(0.0, boot["auprc"][:, 1] - boot["auprc"][:, 0])
    assert diff.low > 0 and verdict(diff) == "reproduced"


def test_component_bootstrap_resamples_whole_frames(rng):
    groups = np.repeat(np.arange(30), 4)
    y = rng.integers(0, 2, 120)
    good = y + rng.normal(0, 0.5, 120)
    bad = rng.normal(0, 1, 120)
    boot = component_bootstrap(y, {"good": good, "bad": bad}, groups, 100, np.random.default_rng(1))
    assert boot["good"]["auroc"].shape == (100,)
    assert np.nanmean(boot["good"]["auroc"]) > np.nanmean(boot["bad"]["auroc"]) + 0.2


def test_verdicts():
    assert verdict(Interval(0.1, 0.02, 0.2)) == "reproduced"
    assert verdict(Interval(0.1, -0.02, 0.2)) == "not separated"
    assert verdict(Interval(-0.1, -0.2, -0.02)) == "reversed"
    assert verdict(Interval(-0.1, -0.2, -0.02), higher_is_better=False) == "reproduced"
    assert np.isnan(interval(1.0, np.array([np.nan])).low)


def test_the_cut_loses_at_most_the_allowed_true_detections():
    proba = np.array([0.1, 0.2, 0.3, 0.95, 0.6, 0.7, 0.8, 0.99])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    strict = choose_cut(y, proba, 0.0)
    assert strict["true_detections_lost"] == 0 and strict["max_p_false_positive"] > 0.95
    assert strict["false_positives_removed"] == 1  # only the 0.99 one lies above the highest true detection
    loose = choose_cut(y, proba, 0.25)  # one of four true detections may go
    assert loose["true_detections_lost"] == 1 and 0.3 < loose["max_p_false_positive"] <= 0.6
    assert loose["false_positives_removed"] == 4
