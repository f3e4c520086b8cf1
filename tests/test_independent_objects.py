"""The independent road-object painter of benchmarks/independent_objects.py (no pipeline run)."""

from __future__ import annotations

import independent_objects
import numpy as np
import pytest

from meta_ood_training.synthetic import render

H, W = 128, 256


@pytest.fixture(scope="module")
def scenes() -> list[tuple[np.ndarray, np.ndarray]]:
    return [render("closed", 500, i, H, W) for i in range(6)]


def _paint(image: np.ndarray, labels: np.ndarray, seed: int) -> tuple:
    return independent_objects.paint_objects(image, labels, np.random.default_rng([seed, 7]))


def test_outputs_and_ground_truth(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    n_objects = 0
    for i, (image, labels) in enumerate(scenes):
        original = image.copy()
        painted, target, instances, kinds = _paint(image, labels, i)
        np.testing.assert_array_equal(image, original)  # input untouched
        assert painted.shape == (H, W, 3)
        assert painted.dtype == np.uint8
        assert target.shape == (H, W)
        assert target.dtype == np.uint8
        assert instances.shape == (H, W)
        assert set(np.unique(target).tolist()) <= {0, 1, 255}
        assert 1 <= len(kinds) <= 3
        assert set(kinds) <= set(independent_objects.KINDS)
        assert instances.max() == len(kinds)
        np.testing.assert_array_equal(target == 1, instances > 0)
        # road stays 0 unless covered by an object, everything else is ignored
        np.testing.assert_array_equal(target[(labels == 0) & (instances == 0)], 0)
        assert (target[(labels != 0) & (instances == 0)] == 255).all()
        road_rows = np.flatnonzero((labels == 0).any(axis=1))
        top = road_rows[0]
        for k in range(1, len(kinds) + 1):
            obj = instances == k
            assert obj.any(), f"instance {k} has no pixels"
            ys, xs = np.nonzero(obj)
            base = ys.max()
            assert base in road_rows
            depth = (base - top) / (H - top)
            assert 0.05 <= depth <= 0.95
            base_cols = xs[ys == base]
            assert (labels[base, base_cols] == 0).mean() >= 0.5, "the base must stand on road"
            # painted pixels differ from the original frame
            diff = np.abs(painted[obj].astype(int) - original[obj].astype(int)).sum(axis=1)
            assert (diff > 0).mean() > 0.5
        n_objects += len(kinds)
    assert n_objects >= len(scenes)


def test_objects_do_not_overlap_and_differ(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    image, labels = scenes[3]
    painted, _, instances, _ = _paint(image, labels, 3)
    assert not np.array_equal(painted, image)
    # instances are a partition: every object pixel has exactly one id (by construction of a label map)
    ids = np.unique(instances)
    np.testing.assert_array_equal(ids, np.arange(ids.size))


def test_deterministic(scenes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    image, labels = scenes[1]
    a = _paint(image, labels, 42)
    b = _paint(image, labels, 42)
    for x, y in zip(a[:3], b[:3], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[3] == b[3]
    c = _paint(image, labels, 43)
    assert not np.array_equal(a[0], c[0])
