from __future__ import annotations

import numpy as np
import pytest

from meta_ood_training.synthetic import (
    ALL_HAZARDS,
    CLASS_NAMES,
    COMMON_HAZARDS,
    HELD_OUT_HAZARDS,
    LOOKALIKES,
    ROAD,
    SyntheticWorld,
    drive,
    render,
)  # fmt: skip
from meta_ood_training.synthetic.canvas import Canvas, camera, draw_lighting
from meta_ood_training.synthetic.hazards import MATERIAL_COLORS, material
from meta_ood_training.synthetic.lookalikes import PAINTERS
from meta_ood_training.synthetic.proxies import UNNATURAL_COLORS
from meta_ood_training.synthetic.street import ground, sky


@pytest.mark.parametrize("kind", ["closed", "proxy", "hazard"])
def test_deterministic_per_seed_and_index(kind):
    a_img, a_lab = render(kind, 11, 3, 96, 160)
    b_img, b_lab = render(kind, 11, 3, 96, 160)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = render(kind, 12, 3, 96, 160)
    assert not np.array_equal(a_img, c_img)
    assert a_img.dtype == np.uint8 and a_img.shape == (96, 160, 3) and a_lab.shape == (96, 160)


def test_the_layout_scales_with_the_frame_size():
    _, small = render("closed", 4, 2, 128, 256)
    _, large = render("closed", 4, 2, 256, 512)
    assert (large[::2, ::2] == small).mean() > 0.9  # same scene, only edges differ


def test_closed_scenes_label_every_pixel_with_a_train_id():
    seen = set()
    for i in range(12):
        _, lab = render("closed", 0, i, 128, 256)
        assert lab.max() < len(CLASS_NAMES) == 19
        seen |= set(np.unique(lab).tolist())
    assert {0, 1, 2, 5, 8, 9, 10, 13} <= seen  # road, sidewalk, building, pole, vegetation, terrain, sky, car


@pytest.mark.parametrize("kind", sorted(PAINTERS))
def test_lookalikes_change_only_road_pixels_and_never_a_label(kind):
    rng = np.random.default_rng(3)
    light = draw_lighting(rng)
    light = type(light)(light.name, light.brightness, light.tint, light.desaturate, light.sun_x, 0.4)
    canvas = Canvas(128, 256, rng, light)
    cam = camera(rng, 128, 256)
    sky(canvas, cam)
    ground(canvas, cam)
    labels, image = canvas.labels.copy(), canvas.image.copy()
    PAINTERS[kind](canvas, cam, 0.6, 0.1)
    np.testing.assert_array_equal(canvas.labels, labels)
    changed = np.abs(canvas.image - image).max(axis=2) > 1e-3
    assert changed.any(), kind
    assert (labels[changed] == ROAD).all(), kind
    assert set(LOOKALIKES) == set(PAINTERS)


@pytest.mark.parametrize(("low", "high"), [(0.02, 0.2), (0.8, 0.95)])
def test_proxy_frames_are_labelled_like_coco_ood(low, high):
    for i in range(6):
        _, lab = render("proxy", 5, i, 128, 256, proxy_fraction=(low, high))
        fraction = (lab == 254).mean()
        assert low <= fraction <= high
        assert set(np.unique(lab).tolist()) <= {254, 255}  # the background is void, as in COCO-OoD


def test_hazards_stand_on_the_road_and_are_labelled_lostandfound_style():
    found = 0
    for i in range(12):
        _, target = render("hazard", 9, i, 128, 256, n_hazards=(2, 3))
        assert set(np.unique(target).tolist()) <= {0, 1, 255}
        hazard = target == 1
        if not hazard.any():
            continue  # hazards can be hidden by nearer traffic
        found += 1
        bottom = np.flatnonzero(hazard.any(axis=1)).max()
        row = target[min(bottom + 1, 127)]
        assert (row == 0).any()  # the road continues below the lowest hazard pixel
    assert found >= 10


def test_hazard_families_are_disjoint_and_selectable():
    assert not set(COMMON_HAZARDS) & set(HELD_OUT_HAZARDS)
    assert set(ALL_HAZARDS) == set(COMMON_HAZARDS) | set(HELD_OUT_HAZARDS)
    a, _ = render("hazard", 9, 1, 96, 160, hazard_shapes=("animal",))
    b, _ = render("hazard", 9, 1, 96, 160, hazard_shapes=("box",))
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="hazard_shapes"):
        render("hazard", 0, 0, hazard_shapes=("spaceship",))


def test_hazard_materials_are_muted_and_unlike_the_proxies():
    rng = np.random.default_rng(0)
    for name in MATERIAL_COLORS:
        tex = material(rng, name, 20, 30)
        assert tex.shape == (20, 30, 3) and tex.dtype == np.float32
        mean = tex.reshape(-1, 3).mean(axis=0)
        saturation = (mean.max() - mean.min()) / max(mean.max(), 1)
        assert saturation < 0.6, name  # natural, muted colours
    proxy = np.asarray(UNNATURAL_COLORS, np.float64)
    hazard = np.asarray([c for colors in MATERIAL_COLORS.values() for c in colors], np.float64)
    distance = np.linalg.norm(proxy[:, None] - hazard[None], axis=2)
    assert distance.min() > 80  # no hazard colour is one of the proxies' saturated colours


def test_lighting_varies_between_frames():
    names = {draw_lighting(np.random.default_rng([1, i])).name for i in range(40)}
    assert names == {"day", "overcast", "dusk", "low sun"}
    brightness = [render("closed", 2, i, 64, 128)[0].mean() for i in range(10)]
    assert max(brightness) - min(brightness) > 20


def test_drive_hazard_approaches():
    frames = drive(4, 5, 128, 256)
    sizes = [int((t == 1).sum()) for _, t in frames]
    bottoms = [int(np.flatnonzero((t == 1).any(axis=1)).max()) for _, t in frames]
    assert sizes == sorted(sizes) and sizes[-1] > 5 * sizes[0]
    assert bottoms == sorted(bottoms)
    backgrounds = [img[: img.shape[0] // 3] for img, _ in frames]  # the sky and skyline stay put
    assert np.abs(backgrounds[0].astype(int) - backgrounds[-1].astype(int)).mean() < 10


def test_dataset_and_bad_options():
    world = SyntheticWorld("hazard", 1, 3, 64, 96, hazard_shapes=("rock",))
    assert len(world) == 3 and world[2][0].shape == (64, 96, 3)
    assert world.identity() == {"dataset": "synthetic hazard", "seed": 1, "frames": 3, "size": [64, 96],
                                "hazard_shapes": ["rock"]}  # fmt: skip
    with pytest.raises(IndexError):
        world[3]
    with pytest.raises(ValueError, match="kind must be"):
        render("weird", 0, 0)
    with pytest.raises(ValueError, match="proxy_fraction"):
        render("proxy", 0, 0, proxy_fraction=(0.5, 0.2))
    with pytest.raises(ValueError, match="n_lookalikes"):
        render("closed", 0, 0, n_lookalikes=(3, 1))
    with pytest.raises(ValueError, match="at least 32"):
        SyntheticWorld("closed", 0, 1, 16, 16)
    assert ROAD == 0
