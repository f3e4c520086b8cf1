from __future__ import annotations

import numpy as np

from meta_ood_training.meta_cv import CVConfig, cross_validate
from meta_ood_training.meta_data import MetaDataset, load_features
from meta_ood_training.meta_extract import Frame, extract


def _frame(blobs, objects, h=20, w=30, c=5):
    probs = np.full((c, h, w), 0.01, np.float32)
    probs[0] = 1 - 0.01 * (c - 1)
    for y0, y1, x0, x1 in blobs:  # uniform probabilities: entropy 1 ≥ 0.7
        probs[:, y0:y1, x0:x1] = 1 / c
    gt = np.zeros((h, w), np.uint8)
    for y0, y1, x0, x1 in objects:
        gt[y0:y1, x0:x1] = 1
    gt[-1] = 255
    return Frame(probs, gt)


def test_extract_targets_groups_and_object_overlaps(tmp_path):
    frames = [
        _frame(blobs=[(2, 6, 2, 6), (10, 13, 20, 25)], objects=[(3, 7, 3, 7)]),  # a hit and a false positive
        _frame(blobs=[(5, 8, 10, 14)], objects=[(12, 15, 2, 5)]),  # a false positive and a missed object
    ]
    data = extract(frames)
    assert data.n == 3
    assert data.X.shape == (3, 30 + 7 + 2 * 5)  # 5 classes: 47 metrics
    assert data.y.tolist() == [0, 1, 1]
    assert data.group.tolist() == [0, 0, 1]
    objects = data.objects
    assert objects.n_objects == 2
    assert objects.object_group.tolist() == [0, 1]
    assert list(zip(objects.pair_component.tolist(), objects.pair_object.tolist(), strict=True)) == [(0, 0)]
    assert objects.missed(np.array([True, True, True])) == 1  # frame 2's object is never detected
    assert objects.missed(np.array([False, True, True])) == 2  # removing the hit loses frame 1's object too
    data.save(tmp_path / "F.npz")
    again = load_features(tmp_path / "F.npz")
    assert again.objects.n_objects == 2
    assert again.objects.pair_component.tolist() == [0]
    assert again.objects.object_group.tolist() == [0, 1]
    np.testing.assert_array_equal(again.X, data.X)


def test_report_counts_false_negatives_before_and_after_removal():
    rng = np.random.default_rng(0)
    frames = []
    for i in range(12):
        blobs = [(2, 5, 2 + i, 6 + i), (10, 13, 18, 18 + 3 + i % 4)]
        frames.append(_frame(blobs, objects=[(3, 6, 3 + i, 7 + i)], h=20, w=40))
    data = extract(frames)
    noisy = MetaDataset(data.X + 1e-3 * rng.normal(size=data.X.shape), data.y, data.names, data.group, data.objects)
    report = cross_validate(noisy, CVConfig("lr", "group-kfold", folds=3)).report()
    removal = report["removal_at_0.5"]
    assert removal["gt_objects"] == 12
    assert removal["false_negatives_before"] == 0
    assert 0 <= removal["false_negatives_after"] <= 12
    assert removal["false_negatives_after"] == removal["true_detections_lost"]  # one hit per object here
