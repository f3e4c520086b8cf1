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


def test_cli_extract_metrics_from_a_model_over_fishyscapes(tmp_path, caplog):
    import torch
    from PIL import Image

    from meta_ood_perception.cli import main
    from meta_ood_perception.models import build_model

    folder = tmp_path / "fs" / "Static"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
        label = np.zeros((32, 48), np.uint8)
        label[10:20, 10:20] = 1
        label[-2:] = 255
        Image.fromarray(label).save(folder / f"{i:04d}.png")
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", 19)
    with torch.no_grad():
        model.final[-1].weight.zero_()
        model.final[-1].bias.zero_()  # uniform softmax: every valid pixel is an OoD candidate
    torch.save(model.state_dict(), tmp_path / "light.pt")
    out = tmp_path / "F.npz"
    args = ["extract-metrics", "--dataset", "fishyscapes", "--root", str(tmp_path / "fs"), "--model",
            "deeplabv3plus_light", "--out", str(out)]  # fmt: skip
    assert main([*args, "--checkpoint", str(tmp_path / "light.pt")]) == 0
    data = load_features(out)
    assert data.n == 2 and data.group.tolist() == [0, 1]
    assert data.y.tolist() == [0, 0]  # one component per frame, covering the object
    assert data.objects.n_objects == 2
    torch.save(build_model("deeplabv3plus_light", 19, width=8).state_dict(), tmp_path / "narrow.pt")
    assert main([*args, "--checkpoint", str(tmp_path / "narrow.pt")]) == 2
    assert "mis-shaped key(s)" in caplog.text
