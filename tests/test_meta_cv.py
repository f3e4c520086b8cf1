from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from meta_ood_perception.cli import main
from meta_ood_perception.meta_classifier import load_meta_classifier
from meta_ood_training.meta_cv import CVConfig, _fold_standardization, cross_validate, splits
from meta_ood_training.meta_data import MetaDataError, MetaDataset, load_features
from meta_ood_training.meta_models import MLPConfig

NAMES = ("a", "b", "c")


def _data(n=60, seed=0, groups=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0.2).astype(np.int64)
    return MetaDataset(X, y, NAMES, rng.integers(0, groups, n))


def test_separable_data_scores_perfectly_with_both_classifiers():
    X = np.concatenate([np.linspace(-3, -1, 20), np.linspace(1, 3, 20)])[:, None] * [1.0, 0.0, 0.5]
    y = np.r_[np.zeros(20), np.ones(20)].astype(np.int64)
    data = MetaDataset(X, y, NAMES, np.arange(40) % 5)
    for clf in ("lr", "mlp"):
        result = cross_validate(data, CVConfig(clf, "group-kfold", mlp=MLPConfig(epochs=200, batch_size=16, lr=1e-2)))
        assert result.auroc == 1.0 and result.auprc == 1.0 and result.accuracy == 1.0, clf
    assert cross_validate(data, CVConfig("lr", "loo", standardize="pooled")).auroc == 1.0


def test_reference_mode_is_leave_one_out_liblinear_on_pooled_statistics():
    from sklearn.linear_model import LogisticRegression

    data = _data(40)
    z = (data.X - data.X.mean(0)) / (data.X.std(0) + 1e-10)
    expected = np.empty(40)
    for i in range(40):
        keep = np.arange(40) != i
        model = LogisticRegression(solver="liblinear").fit(z[keep], data.y[keep])
        expected[i] = model.predict_proba(z[i : i + 1])[0, 1]
    result = cross_validate(data, CVConfig("lr", "loo", standardize="pooled"))
    np.testing.assert_allclose(result.proba, expected, atol=1e-10)
    assert result.n_parameters == 4


@pytest.mark.parametrize("standardize", ["pooled", "train"])
def test_mlp_leave_one_out_in_bfloat16_predicts_what_float32_does(standardize):
    data = _data(60)
    results = {
        p: cross_validate(data, CVConfig("mlp", "loo", standardize=standardize,
                                         mlp=MLPConfig(epochs=10, batch_size=16, precision=p)))
        for p in ("float32", "bfloat16")
    }  # fmt: skip
    difference = np.abs(results["float32"].proba - results["bfloat16"].proba)
    assert 0 < difference.max() < 0.03  # bfloat16 products: the same training, rounded
    assert abs(results["float32"].auroc - results["bfloat16"].auroc) < 0.01
    assert results["bfloat16"].report()["config"]["mlp"]["precision"] == "bfloat16"


def test_splits_and_standardization():
    data = _data()
    loo = splits(data, CVConfig(cv="loo"))
    assert len(loo) == 60 and all(len(tr) == 59 and te[0] not in tr for tr, te in loo)
    folds = splits(data, CVConfig(cv="group-kfold", folds=3))
    for train, test in folds:
        assert not set(data.group[train]) & set(data.group[test])
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(60))
    means, scales = _fold_standardization(data.X, loo, "train")
    np.testing.assert_allclose(means[7], data.X[loo[7][0]].mean(0), atol=1e-12)
    np.testing.assert_allclose(scales[7], data.X[loo[7][0]].std(0) + 1e-10, atol=1e-12)
    pooled_mean, _ = _fold_standardization(data.X, loo, "pooled")
    np.testing.assert_allclose(pooled_mean[3], data.X.mean(0))


def test_data_errors():
    with pytest.raises(MetaDataError, match="only true positives"):
        cross_validate(MetaDataset(np.zeros((5, 3)), np.zeros(5, np.int64), NAMES), CVConfig(cv="loo"))
    with pytest.raises(MetaDataError, match="needs at least 2 groups"):
        splits(_data(groups=1), CVConfig(cv="group-kfold", folds=5))
    with pytest.raises(MetaDataError, match="needs a 'group' array"):
        splits(MetaDataset(np.zeros((5, 3)), np.r_[0, 1, 0, 1, 0], NAMES), CVConfig())
    with pytest.raises(MetaDataError, match=r"X must have shape \(N, 3\)"):
        MetaDataset(np.zeros((5, 4)), np.zeros(5, np.int64), NAMES)
    with pytest.raises(MetaDataError, match="y must hold 0/1"):
        MetaDataset(np.zeros((2, 3)), np.array([0, 2]), NAMES)
    with pytest.raises(ValueError, match="cv must be"):
        CVConfig(cv="kfold")


def test_fewer_groups_than_folds_use_one_fold_per_group(caplog):
    data = _data(groups=3)
    with caplog.at_level(logging.WARNING):
        folds = splits(data, CVConfig(cv="group-kfold", folds=5))
    assert len(folds) == 3 and "3 groups for 5 folds: using 3 folds" in caplog.text
    for train, test in folds:
        assert len(set(data.group[test])) == 1 and not set(data.group[train]) & set(data.group[test])
    result = cross_validate(data, CVConfig(cv="group-kfold", folds=5))
    assert result.report()["config"]["folds"] == 3


def test_cli_meta_cv_train_and_lars(tmp_path):
    data = _data(80)
    features = tmp_path / "F.npz"
    data.save(features)
    assert load_features(features).names == NAMES
    report = tmp_path / "r.json"
    args = ["meta-cv", "--features", str(features), "--classifier", "mlp", "--cv", "group-kfold", "--folds", "3"]
    assert main([*args, "--epochs", "5", "--report", str(report), "--plots", str(tmp_path / "plots")]) == 0
    content = json.loads(report.read_text())
    assert {"auroc", "auprc", "accuracy", "n", "n_parameters", "wall_s"} <= set(content)
    assert content["n"] == 80 and content["n_parameters"] == MLPConfig().n_parameters(3)
    assert (tmp_path / "plots" / "roc.png").stat().st_size > 1000
    out = tmp_path / "model.json"
    assert main(["meta-train", "--features", str(features), "--classifier", "lr", "--out", str(out)]) == 0
    model = load_meta_classifier(out, expected_names=NAMES)
    proba = model.predict_proba(data.X)
    assert ((proba > 0.5) == data.y.astype(bool)).mean() > 0.8
    assert main(["lars", "--features", str(features), "--out", str(tmp_path / "lars"), "--max-metrics", "2",
                 "--epochs", "3"]) == 0  # fmt: skip
    lars = json.loads((tmp_path / "lars" / "lars.json").read_text())
    assert lars["order"][0] == "a"  # the only informative metric enters first
    assert len(lars["algorithm1"]) == 4
    assert (tmp_path / "lars" / "algorithm1.png").is_file()


@pytest.mark.parametrize(
    ("make", "extra", "match"),
    [
        (None, [], "features file not found"),
        (lambda p: np.savez(p, X=np.zeros((4, 3)), y=np.zeros(3), names=np.array(NAMES)), [], "y must have shape"),
        (lambda p: np.savez(p, X=np.zeros((4, 3)), y=np.zeros(4), names=np.array(NAMES)), [], "only true positives"),
        (lambda p: _data(groups=1).save(p), ["--cv", "group-kfold"], "needs at least 2 groups"),
        (lambda p: np.savez(p, X=np.zeros((4, 3))), [], "missing array"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, caplog, make, extra, match):
    features = tmp_path / "F.npz"
    if make:
        make(features)
    with caplog.at_level(logging.ERROR):
        code = main(["meta-cv", "--features", str(features), "--classifier", "lr", *extra,
                     "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2
    assert match in caplog.text
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1


def test_folds_are_trained_in_chunks_when_many(monkeypatch):
    import meta_ood_training.meta_cv as meta_cv

    monkeypatch.setattr(meta_cv, "MAX_STACKED_FOLDS", 7)
    data = _data(30)
    result = cross_validate(data, CVConfig("mlp", "loo", mlp=MLPConfig(epochs=30, batch_size=8, lr=1e-2)))
    assert np.isfinite(result.proba).all()
    assert result.auroc > 0.8  # the first metric decides y up to noise


def test_single_class_training_folds_predict_the_prior():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3))
    y = np.zeros(12, np.int64)
    y[4] = 1  # leave-one-out: the fold holding it out trains on negatives only
    result = cross_validate(MetaDataset(X, y, NAMES), CVConfig("lr", "loo", standardize="pooled"))
    assert result.proba[4] == 0.0
    assert result.report()["single_class_folds"] == 1


def test_feature_files_with_float_bool_or_bytes(tmp_path):
    X = np.zeros((4, 3))
    np.savez(tmp_path / "a.npz", X=X, y=np.array([0.0, 1.0, 1.0, 0.0]), names=np.array([b"a", b"b", b"c"]))
    data = load_features(tmp_path / "a.npz")
    assert data.names == NAMES and data.y.tolist() == [0, 1, 1, 0]
    np.savez(tmp_path / "b.npz", X=X, y=np.array([True, False, True, False]), names=np.array(NAMES))
    assert load_features(tmp_path / "b.npz").y.tolist() == [1, 0, 1, 0]
    np.savez(tmp_path / "c.npz", X=X, y=np.array([0.2, 0.9, 1.0, 0.0]), names=np.array(NAMES))
    with pytest.raises(MetaDataError, match=r"y must hold 0/1 targets \(1 = false positive\), found \[0.0, 0.2"):
        load_features(tmp_path / "c.npz")


def test_cli_cuda_without_cuda_is_one_line(tmp_path, caplog):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    _data().save(tmp_path / "F.npz")
    args = ["meta-cv", "--features", str(tmp_path / "F.npz"), "--classifier", "mlp", "--device", "cuda",
            "--report", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 2
    assert "CUDA is not available" in caplog.text
