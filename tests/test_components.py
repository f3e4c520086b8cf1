from __future__ import annotations

import numpy as np
import oracle
import pytest
from conftest import CASES, load_case

from meta_ood_perception.components import boundary_mask, label_components, ood_mask


@pytest.mark.parametrize("case", CASES)
def test_marked_map_matches_reference(case):
    d = load_case(case)
    seg = (d["ood_mask"] == 1) & (d["gt_train"] != 255)
    comps = label_components(seg)
    assert comps.marked.dtype == np.int32
    assert comps.count == int(d["n_components"])
    np.testing.assert_array_equal(comps.marked, d["marked"])


@pytest.mark.parametrize("seed", range(6))
def test_matches_independent_flood_fill(seed):
    rng = np.random.default_rng(seed)
    seg = rng.random((23, 31)) < [0.2, 0.45, 0.6, 0.7, 0.8, 0.95][seed]
    marked, n = oracle.marked_map(seg)
    comps = label_components(seg)
    assert comps.count == n
    np.testing.assert_array_equal(comps.marked, marked)
    np.testing.assert_array_equal(comps.labels, np.abs(marked))


def test_image_edge_is_not_a_boundary():
    seg = np.ones((4, 5), bool)
    seg[3, 4] = False
    marked = label_components(seg).marked
    assert marked[0, 0] == 1  # corner pixel, window clipped, all mask: interior
    assert marked[2, 3] == -1
    assert marked[3, 3] == -1
    assert marked[2, 4] == -1
    assert (marked[:2] == 1).all()
    full = label_components(np.ones((3, 3), bool))
    assert full.count == 1
    assert (full.marked == 1).all()


def test_diagonal_pixels_connect_and_singletons_are_boundary():
    seg = np.zeros((5, 5), bool)
    seg[0, 0] = seg[1, 1] = seg[2, 2] = True  # one diagonal component
    seg[4, 0] = True  # a singleton, later in raster order
    comps = label_components(seg)
    assert comps.count == 2
    assert comps.marked[2, 2] == -1
    assert comps.marked[4, 0] == -2


def test_more_than_int16_components_and_very_wide_images():
    seg = np.zeros((400, 400), bool)
    seg[::2, ::2] = True  # 40,000 isolated pixels
    comps = label_components(seg)
    assert comps.count == 40_000
    assert comps.marked[398, 398] == -40_000
    wide = np.zeros((2, 70_001), bool)
    wide[0, ::2] = True
    wide_comps = label_components(wide)
    assert wide_comps.count == 35_001
    assert wide_comps.marked[0, 70_000] == -35_001


def test_boundary_mask_and_ood_mask():
    score = np.array([[0.1, 0.7, 0.9], [0.69999, 0.8, 1.0], [0.2, 0.75, 0.3]], np.float32)
    valid = np.array([[1, 1, 1], [1, 1, 0], [1, 1, 1]], np.uint8)
    m = ood_mask(score, 0.7, valid)
    np.testing.assert_array_equal(m, [[0, 1, 1], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(boundary_mask(m), m)
    block = np.zeros((5, 5), bool)
    block[1:4, 1:4] = True
    assert boundary_mask(block).sum() == 8
    assert not boundary_mask(block)[2, 2]


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.zeros((2, 2, 2), bool), "2-D"),
        (np.zeros((0, 3), bool), "empty"),
        (np.array([[0, 2]]), "only 0 and 1"),
        (np.array([["a"]]), "0/1 values"),
    ],
)
def test_bad_masks_rejected(mask, match):
    with pytest.raises(ValueError, match=match):
        label_components(mask)


def test_ood_mask_rejects_bad_arguments():
    with pytest.raises(ValueError, match="threshold"):
        ood_mask(np.zeros((2, 2)), 1.5)
    with pytest.raises(ValueError, match="valid has shape"):
        ood_mask(np.zeros((2, 2)), 0.7, np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="score"):
        ood_mask(np.zeros(4), 0.7)
