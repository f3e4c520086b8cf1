from __future__ import annotations

import numpy as np
import pytest

from meta_ood_training.synthetic import CLASS_NAMES, ROAD, SyntheticWorld, drive, render


@pytest.mark.parametrize("kind", ["closed", "proxy", "hazard"])
def test_deterministic_per_seed_and_index(kind):
    a_img, a_lab = render(kind, 11, 3, 96, 160)
    b_img, b_lab = render(kind, 11, 3, 96, 160)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = render(kind, 12, 3, 96, 160)
    assert not np.array_equal(a_img, c_img)
    assert a_img.dtype == np.uint8 and a_img.shape == (96, 160, 3) and a_lab.shape == (96, 160)


def test_closed_scenes_label_every_pixel_with_a_train_id():
    seen = set()
    for i in range(12):
        _, lab = render("closed", 0, i, 128, 256)
        assert lab.max() < len(CLASS_NAMES) == 19
        seen |= set(np.unique(lab).tolist())
    assert {0, 1, 2, 5, 8, 9, 10, 13} <= seen  # road, sidewalk, building, pole, vegetation, terrain, sky, car


@pytest.mark.parametrize(("low", "high"), [(0.02, 0.2), (0.8, 0.95)])
def test_proxy_fraction_as_requested(low, high):
    for i in range(8):
        _, lab = render("proxy", 5, i, 128, 256, proxy_fraction=(low, high))
        fraction = (lab == 254).mean()
        assert low <= fraction <= high
        assert set(np.unique(lab[lab != 254]).tolist()) <= set(range(19))


def test_hazards_stand_only_on_the_road():
    for i in range(10):
        _, target = render("hazard", 9, i, 128, 256)
        assert set(np.unique(target).tolist()) <= {0, 1, 255}
        assert (target == 1).any()
        on_road = target != 255
        for row in np.flatnonzero(on_road.any(axis=1)):  # the road (incl. hazards) is one run per row
            cols = np.flatnonzero(on_road[row])
            assert cols[-1] - cols[0] + 1 == len(cols)
        assert not on_road[: int(np.flatnonzero(on_road.any(axis=1))[0])].any()


def test_drive_hazard_approaches():
    frames = drive(4, 5, 128, 256)
    sizes = [int((t == 1).sum()) for _, t in frames]
    bottoms = [int(np.flatnonzero((t == 1).any(axis=1)).max()) for _, t in frames]
    assert sizes == sorted(sizes) and sizes[-1] > 5 * sizes[0]
    assert bottoms == sorted(bottoms)
    backgrounds = [img[: img.shape[0] // 3] for img, _ in frames]  # the sky and skyline stay put
    assert np.abs(backgrounds[0].astype(int) - backgrounds[-1].astype(int)).mean() < 10


def test_dataset_and_bad_options():
    world = SyntheticWorld("hazard", 1, 3, 64, 96)
    assert len(world) == 3 and world[2][0].shape == (64, 96, 3)
    with pytest.raises(IndexError):
        world[3]
    with pytest.raises(ValueError, match="kind must be"):
        render("weird", 0, 0)
    with pytest.raises(ValueError, match="proxy_fraction"):
        render("proxy", 0, 0, proxy_fraction=(0.5, 0.2))
    with pytest.raises(ValueError, match="at least 32"):
        SyntheticWorld("closed", 0, 1, 16, 16)
    assert ROAD == 0
