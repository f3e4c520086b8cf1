from __future__ import annotations

import numpy as np

from meta_ood_training.meta_cv import CVConfig, cross_validate
from meta_ood_training.meta_data import MetaDataset, ObjectOverlaps, load_features


def _data(n_frames=12, seed=0):
    """Two components per frame: a hit on the frame's object (y = 0) and a false positive (y = 1)."""
    rng = np.random.default_rng(seed)
    n = 2 * n_frames
    y = np.tile([0, 1], n_frames)
    X = rng.normal(size=(n, 5)) + 1.5 * y[:, None]
    group = np.repeat(np.arange(n_frames), 2)
    objects = ObjectOverlaps(n_frames, np.arange(n_frames), np.arange(0, n, 2), np.arange(n_frames))
    return MetaDataset(X, y.astype(np.int64), tuple(f"m{i}" for i in range(5)), group, objects)


def test_features_file_round_trip(tmp_path):
    data = _data()
    data.save(tmp_path / "F.npz")
    again = load_features(tmp_path / "F.npz")
    np.testing.assert_array_equal(again.X, data.X)
    assert again.objects.n_objects == 12 and again.objects.pair_component.tolist() == list(range(0, 24, 2))
    assert again.group.tolist() == data.group.tolist()
    assert again.metadata is None
    from dataclasses import replace

    import pytest

    from meta_ood_training.meta_data import MetaDataError

    source = {"data": {"dataset": "lostandfound", "root": "/d/laf", "split": "test", "frames": 12}, "group": "frame"}
    replace(data, metadata=source).save(tmp_path / "G.npz")
    assert load_features(tmp_path / "G.npz").metadata == source
    assert load_features(tmp_path / "G.npz").subset([0, 1]).metadata == source
    np.savez(tmp_path / "H.npz", X=data.X, y=data.y, names=np.asarray(data.names), metadata_json=np.asarray("[1]"))
    with pytest.raises(MetaDataError, match="metadata_json must hold a JSON object"):
        load_features(tmp_path / "H.npz")


def test_report_counts_false_negatives_before_and_after_removal():
    data = _data()
    report = cross_validate(data, CVConfig("lr", "group-kfold", folds=3)).report()
    removal = report["removal_at_0.5"]
    assert removal["gt_objects"] == 12
    assert removal["false_negatives_before"] == 0
    assert 0 <= removal["false_negatives_after"] <= 12
    assert removal["false_negatives_after"] == removal["true_detections_lost"]  # one hit per object here


def test_cli_extract_metrics_runs_the_bundles_pipeline_over_fishyscapes(tmp_path, caplog):
    import torch
    from PIL import Image

    from meta_ood_perception.bundle import write_bundle
    from meta_ood_perception.cli import main
    from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model

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
    model = build_model("deeplabv3plus_light", 19, width=4)
    with torch.no_grad():
        model.final[-1].weight.zero_()
        model.final[-1].bias.zero_()  # uniform softmax: every valid pixel is an OoD candidate
    write_bundle(tmp_path / "b", model=model, architecture="deeplabv3plus_light", model_options={"width": 4},
                 class_names=[f"c{i}" for i in range(19)], input_size=(32, 48), meta_classifier=None, mean=MEAN_RGB,
                 std=STD_RGB)  # fmt: skip
    out = tmp_path / "F.npz"
    args = ["extract-metrics", "--bundle", str(tmp_path / "b"), "--backend", "torch", "--dataset", "fishyscapes",
            "--root", str(tmp_path / "fs"), "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    data = load_features(out)
    assert data.n == 2 and data.group.tolist() == [0, 1]
    assert data.y.tolist() == [0, 0]  # one component per frame, the whole labelled region, covering the object
    assert data.objects.n_objects == 2
    missing = ["extract-metrics", "--bundle", str(tmp_path / "b"), "--dataset", "lostandfound", "--out", str(out)]
    assert main(missing) == 2
    assert "--root is required" in caplog.text
