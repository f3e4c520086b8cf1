from __future__ import annotations

import numpy as np
import oracle
import pytest
import torch
from conftest import load_case, random_probs

from meta_ood_perception.metrics import component_metrics, ground_truth_metrics


def _uncertain(rng, c=19, h=24, w=32):
    return random_probs(rng, c, h, w, temperature=4.0)


@pytest.mark.parametrize("seed", range(5))
def test_matches_independent_oracle_with_ground_truth(seed):
    rng = np.random.default_rng(seed)
    h, w = 18, 26
    probs = random_probs(rng, 7, h, w, temperature=2.0)
    mask = rng.random((h, w)) < 0.45
    gt = rng.choice([0, 1, 255], size=(h, w), p=[0.5, 0.35, 0.15]).astype(np.uint8)
    expected, marked = oracle.component_metrics(probs, mask, gt)
    result = component_metrics(probs, mask, gt)
    np.testing.assert_array_equal(result.components, marked)
    out = result.to_dict()
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=1e-12, atol=1e-12, err_msg=key)


def test_no_components():
    probs = load_case("case_p1_64x128")["probs"]
    result = component_metrics(probs, np.zeros(probs.shape[1:], np.uint8), np.zeros(probs.shape[1:], np.uint8))
    assert len(result) == 0
    assert result.features.shape == (0, 75)
    assert all(v.shape == (0,) for v in result.to_dict().values())
    assert (result.components == 0).all()


def test_prediction_only_inside_void_gives_no_components(rng):
    probs = _uncertain(rng)
    gt = np.full(probs.shape[1:], 255, np.uint8)
    assert len(component_metrics(probs, np.ones(probs.shape[1:], bool), gt)) == 0


def test_one_pixel_components(rng):
    probs = _uncertain(rng)
    mask = np.zeros(probs.shape[1:], bool)
    mask[3, 4] = mask[10, 20] = True
    result = component_metrics(probs, mask)
    for key, expected in [("S", 1), ("S_in", 0), ("S_bd", 1), ("S_rel", 1), ("S_rel_in", 0), ("E_in", 0)]:
        np.testing.assert_array_equal(result.column(key), [expected, expected], err_msg=key)
    np.testing.assert_array_equal(result.column("mean_x"), [3, 10])
    np.testing.assert_array_equal(result.column("E_var"), [0, 0])
    assert result.column("E_bd")[0] == pytest.approx(result.column("E")[0])
    ndist = result.features[:, [result.names.index(f"ndist{c}") for c in range(19)]]
    np.testing.assert_allclose(ndist.sum(axis=1), 1.0)


def test_components_touching_every_border(rng):
    probs = _uncertain(rng)
    mask = np.zeros(probs.shape[1:], bool)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    mask[:3, :3] = True
    expected, marked = oracle.component_metrics(probs, mask)
    result = component_metrics(probs, mask)
    assert len(result) == 1
    np.testing.assert_array_equal(result.components, marked)
    # (0,0), (0,1), (1,0), (1,1): their clipped windows lie inside the mask, the image edge is no boundary
    assert result.column("S_in")[0] == 4
    out = result.to_dict()
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=1e-12, atol=1e-12, err_msg=key)


def test_whole_image_component_has_safe_values(rng):
    # The reference raises ZeroDivisionError here (no boundary pixel); we divide by max(n_bd, 1).
    probs = _uncertain(rng, h=6, w=7)
    result = component_metrics(probs, np.ones((6, 7), bool))
    assert len(result) == 1
    assert result.column("S_bd")[0] == 0
    assert result.column("S")[0] == 42
    assert result.column("S_rel")[0] == 42
    assert result.column("S_rel_in")[0] == 42
    assert result.column("E_bd")[0] == 0
    assert result.column("E_var_bd")[0] == 0
    assert result.column("E_in")[0] == pytest.approx(result.column("E")[0])
    assert np.isfinite(result.features).all()
    ndist = result.features[:, [result.names.index(f"ndist{c}") for c in range(19)]]
    assert (ndist == 0).all()


def test_whole_valid_region_has_a_boundary(rng):
    probs = _uncertain(rng, h=6, w=7)
    gt = np.zeros((6, 7), np.uint8)
    gt[:, 0] = 255
    result = component_metrics(probs, np.ones((6, 7), bool), gt)
    assert result.column("S")[0] == 36
    assert result.column("S_bd")[0] == 6


def test_more_than_int16_components():
    rng = np.random.default_rng(3)
    probs = random_probs(rng, 4, 400, 400, temperature=3.0)
    mask = np.zeros((400, 400), bool)
    mask[::2, ::2] = True
    result = component_metrics(probs, mask)
    assert len(result) == 40_000
    assert result.components.min() == -40_000
    assert (result.column("S") == 1).all()
    np.testing.assert_array_equal(result.column("mean_x")[-3:], [398, 398, 398])


def test_image_wider_than_uint16():
    rng = np.random.default_rng(4)
    probs = random_probs(rng, 3, 2, 70_001, temperature=3.0)
    mask = np.zeros((2, 70_001), bool)
    mask[:, 69_990:] = True
    result = component_metrics(probs, mask)
    assert len(result) == 1
    assert result.column("mean_y")[0] == pytest.approx(69_995.0)
    assert result.column("S")[0] == 22


def test_ground_truth_iou_hand_computed():
    probs = np.full((2, 5, 8), 0.5, np.float32)
    mask = np.zeros((5, 8), bool)
    mask[1:3, 1:3] = True  # component 1: 4 px, covers 2 GT px
    mask[1:3, 6:8] = True  # component 2: 4 px, no GT
    gt = np.zeros((5, 8), np.uint8)
    gt[2:4, 1:4] = 1  # GT blob of 6 px, 2 covered, the other 4 touch component 1
    result = component_metrics(probs, mask, gt)
    np.testing.assert_allclose(result.iou, [2 / 8, 0.0])
    np.testing.assert_array_equal(result.iou0, [0.0, 1.0])
    truth = ground_truth_metrics(probs, mask, gt)
    np.testing.assert_allclose(truth.rec, [2 / 6])
    np.testing.assert_allclose(truth.iou, [2 / (6 + 2)])  # union adds the 2 predicted px outside GT
    assert truth.to_dict()["train_class"].tolist() == [255.0]


def test_valid_region_acts_like_void(rng):
    probs = _uncertain(rng)
    mask = np.ones(probs.shape[1:], bool)
    valid = np.zeros(probs.shape[1:], bool)
    valid[5:15, 5:15] = True
    gt = np.where(valid, 0, 255).astype(np.uint8)
    a = component_metrics(probs, mask, valid=valid)
    b = component_metrics(probs, mask, gt)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.iou is None
    assert (a.to_dict()["iou"] == -1).all()


def test_torch_input_and_validate_off(rng):
    d = load_case("case_p2_96x160")
    ref = component_metrics(d["probs"], d["ood_mask"], d["gt_train"])
    via_torch = component_metrics(torch.from_numpy(d["probs"]), torch.from_numpy(d["ood_mask"]), d["gt_train"])
    unchecked = component_metrics(d["probs"], d["ood_mask"], d["gt_train"], validate=False)
    np.testing.assert_array_equal(via_torch.features, ref.features)
    np.testing.assert_array_equal(unchecked.features, ref.features)
    probs64 = component_metrics(d["probs"].astype(np.float64), d["ood_mask"], d["gt_train"])
    np.testing.assert_array_equal(probs64.features, ref.features)


def test_stage_timings_are_reported(rng):
    timings = {}
    component_metrics(_uncertain(rng), np.ones((24, 32), bool), timings_ms=timings)
    assert {"components", "pixels", "assemble"} <= set(timings)
    assert all(v >= 0 for v in timings.values())


def _bad(probs, **kw):
    mask = np.zeros(probs.shape[1:] if probs.ndim == 3 else (4, 4), np.uint8)
    return component_metrics(probs, kw.pop("mask", mask), **kw)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p.__setitem__((0, 0, 0), np.nan), r"finite.*1 pixel\(s\) fail, first at \(row 0, col 0\)"),
        (lambda p: p.__setitem__((3, 5, 7), np.inf), r"first at \(row 5, col 7\)"),
        (lambda p: p.__imul__(2.0), "sum to 1"),
        (lambda p: p.__setitem__((slice(0, 2), 2, 2), [-0.5, 1.5 + p[1, 2, 2]]), "non-negative"),
    ],
)
def test_invalid_probabilities_rejected_anywhere_in_the_image(rng, mutate, match):
    probs = random_probs(rng, 19, 12, 16)
    mutate(probs)
    with pytest.raises(ValueError, match=match):
        _bad(probs)


@pytest.mark.parametrize(
    ("probs", "kwargs", "match"),
    [
        (np.full((19, 4), 1 / 19, np.float32), {}, r"probs must have shape \(C, H, W\)"),
        (np.ones((19, 4, 4), np.int32), {}, "probs must be floating point"),
        (np.ones((1, 4, 4), np.float32), {}, "at least 2 classes"),
        (np.ones((19, 0, 4), np.float32), {}, "probs is an empty image"),
        (np.full((2, 4, 4), 0.5, np.float32), {"mask": np.zeros((4, 5), bool)}, "ood_mask has shape"),
        (
            np.full((2, 4, 4), 0.5, np.float32),
            {"mask": np.full((4, 4), 3)},
            "ood_mask must hold only 0 and 1",
        ),
        (np.full((2, 4, 4), 0.5, np.float32), {"mask": np.zeros((4, 4, 1))}, "ood_mask must be a 2-D"),
        (np.full((2, 4, 4), 0.5, np.float32), {"gt": np.zeros((4, 4), np.float32)}, "gt must hold integer"),
        (np.full((2, 4, 4), 0.5, np.float32), {"gt": np.zeros((3, 4), np.uint8)}, "gt has shape"),
        (
            np.full((2, 4, 4), 0.5, np.float32),
            {"gt": np.zeros((4, 4), np.uint8), "ood_label": 255},
            "must differ",
        ),
        (np.full((2, 4, 4), 0.5, np.float32), {"valid": np.zeros((2, 2), bool)}, "valid has shape"),
        (np.full((2, 4, 4), 0.5, np.float32), {"sum_tolerance": 0}, "sum_tolerance must be positive"),
    ],
)
def test_bad_arguments_name_the_argument(probs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _bad(probs, **kwargs)


def test_ground_truth_metrics_bad_input():
    probs = np.full((2, 4, 4), 0.5, np.float32)
    with pytest.raises(ValueError, match="gt_label has shape"):
        ground_truth_metrics(probs, np.zeros((4, 4)), np.zeros((4, 4), np.uint8), gt_label=np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="gt must be a 2-D"):
        ground_truth_metrics(probs, np.zeros((4, 4)), np.zeros(16, np.uint8))


def test_ground_truth_side_without_objects_and_with_a_missed_object():
    probs = np.full((19, 16, 16), 1 / 19, np.float32)
    gt = np.zeros((16, 16), np.uint8)
    empty = ground_truth_metrics(probs, np.ones((16, 16), np.uint8), gt, gt_label=gt)
    assert len(empty) == 0
    assert all(v.shape == (0,) for v in empty.to_dict().values())
    gt[3:6, 3:6] = 1
    missed = ground_truth_metrics(probs, np.zeros((16, 16), np.uint8), gt, gt_label=gt * 7).to_dict()
    assert missed["iou"].tolist() == [0.0]
    assert missed["iou0"].tolist() == [1.0]
    assert missed["rec"].tolist() == [0.0]
    assert missed["label_class"].tolist() == [7.0]
    assert missed["S"].tolist() == [9.0]
    assert missed["S_in"].tolist() == [1.0]


def test_iou_ignores_ground_truth_outside_the_valid_region():
    probs = np.full((2, 1, 3), 0.5, np.float32)
    mask = np.array([[1, 0, 0]], np.uint8)
    with_valid = component_metrics(probs, mask, np.array([[1, 1, 1]], np.uint8), valid=np.array([[1, 1, 0]]))
    with_void = component_metrics(probs, mask, np.array([[1, 1, 255]], np.uint8))
    np.testing.assert_array_equal(with_valid.iou, with_void.iou)
    assert with_valid.iou.tolist() == [0.5]


def test_bfloat16_and_float16_torch_inputs():
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(random_probs(rng, 4, 6, 7, temperature=3.0))
    mask = np.ones((6, 7), bool)
    for dtype in (torch.bfloat16, torch.float16):
        result = component_metrics(probs.to(dtype), mask, sum_tolerance=2e-2)
        assert len(result) == 1
        assert result.column("S")[0] == 42


@pytest.fixture
def small_work_units(monkeypatch):
    """Bands of 2 rows, superbands of 4 rows and 3 workers even on tiny frames."""
    from meta_ood_perception import _kernels, pixel_pass

    def set_units(width: int) -> None:
        monkeypatch.setattr(pixel_pass, "BAND_PIXELS", 2 * width)
        monkeypatch.setattr(pixel_pass, "SUPERBAND_PIXELS", 4 * width)
        monkeypatch.setattr(pixel_pass, "PARALLEL_MIN_VALUES", 0)
        monkeypatch.setattr(_kernels, "worker_count", lambda: 3)

    return set_units


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("validate", [True, False])
def test_bands_superbands_and_workers_match_the_oracle(small_work_units, seed, validate):
    rng = np.random.default_rng(100 + seed)
    h, w = 21, 26
    small_work_units(w)
    probs = random_probs(rng, 5, h, w, temperature=2.0)
    mask = rng.random((h, w)) < [0.05, 0.3, 0.6, 0.9][seed]  # sparse bands skip the stream without validation
    gt = rng.choice([0, 1, 255], size=(h, w), p=[0.5, 0.35, 0.15]).astype(np.uint8)
    expected, marked = oracle.component_metrics(probs, mask, gt)
    result = component_metrics(probs, mask, gt, validate=validate)
    np.testing.assert_array_equal(result.components, marked)
    out = result.to_dict()
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=1e-12, atol=1e-12, err_msg=key)


def test_invalid_probabilities_found_in_any_band_and_worker(small_work_units, rng):
    probs = random_probs(rng, 19, 23, 16)
    small_work_units(16)
    probs[4, 19, 3] = -0.25
    probs[5, 19, 3] += 0.25
    with pytest.raises(ValueError, match=r"non-negative.*1 pixel\(s\) fail, first at \(row 19, col 3\)"):
        _bad(probs)


def test_negative_zero_is_a_valid_probability(small_work_units, rng):
    # −0.0 sets the sign bit the kernel screens for; the exact re-check must accept it.
    probs = random_probs(rng, 4, 12, 10)
    small_work_units(10)
    probs[0, 7, 7] += probs[1, 7, 7]
    probs[1, 7, 7] = -0.0
    mask = np.zeros((12, 10), bool)
    mask[6:9, 6:9] = True
    reference = probs.copy()
    reference[1, 7, 7] = 0.0
    np.testing.assert_array_equal(component_metrics(probs, mask).features, component_metrics(reference, mask).features)


def test_same_result_whatever_the_worker_count(small_work_units, monkeypatch):
    from meta_ood_perception import _kernels

    rng = np.random.default_rng(7)
    probs = random_probs(rng, 6, 30, 24, temperature=2.0)
    mask = rng.random((30, 24)) < 0.5
    gt = rng.choice([0, 1, 255], size=(30, 24), p=[0.5, 0.35, 0.15]).astype(np.uint8)
    small_work_units(24)
    three = component_metrics(probs, mask, gt)
    monkeypatch.setattr(_kernels, "worker_count", lambda: 1)
    one = component_metrics(probs, mask, gt)
    np.testing.assert_array_equal(three.features, one.features)  # per-superband sums, added in order
    np.testing.assert_array_equal(three.iou, one.iou)


def test_many_components_share_fewer_superbands(small_work_units, monkeypatch):
    from meta_ood_perception import pixel_pass

    rng = np.random.default_rng(8)
    h, w = 24, 20
    small_work_units(w)
    monkeypatch.setattr(pixel_pass, "SUMS_BUDGET_BYTES", 1)  # room for a single superband's sums
    assert pixel_pass.superbands(h, w, 1) == [(0, h)]
    probs = random_probs(rng, 4, h, w, temperature=2.0)
    mask = rng.random((h, w)) < 0.4
    expected, _ = oracle.component_metrics(probs, mask)
    out = component_metrics(probs, mask).to_dict()
    for key, values in expected.items():
        np.testing.assert_allclose(out[key], values, rtol=1e-12, atol=1e-12, err_msg=key)


def test_concurrent_callers_share_the_helpers(small_work_units):
    # Several cameras in one process call the metrics from their own threads; the helper pool serves them all.
    import threading

    rng = np.random.default_rng(9)
    small_work_units(20)
    frames = [(random_probs(rng, 5, 24, 20, temperature=2.0), rng.random((24, 20)) < 0.5) for _ in range(4)]
    expected = [component_metrics(p, m).features for p, m in frames]
    got: list = [None] * len(frames)

    def run(i: int) -> None:
        for _ in range(5):
            got[i] = component_metrics(*frames[i]).features

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(frames))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for i, features in enumerate(got):
        np.testing.assert_array_equal(features, expected[i])


def test_an_error_in_any_superband_reaches_the_caller(small_work_units, monkeypatch):
    import itertools

    from meta_ood_perception import _kernels

    rng = np.random.default_rng(10)
    small_work_units(20)
    probs, mask = random_probs(rng, 5, 24, 20, temperature=2.0), rng.random((24, 20)) < 0.5
    calls = itertools.count()
    real = _kernels.accumulate

    def failing(*args):
        if next(calls) == 3:
            raise MemoryError("superband 4 could not allocate")
        return real(*args)

    monkeypatch.setattr(_kernels, "accumulate", failing)
    with pytest.raises(MemoryError, match="superband 4"):
        component_metrics(probs, mask)
    monkeypatch.setattr(_kernels, "accumulate", real)
    assert len(component_metrics(probs, mask)) > 0  # the helpers survived
