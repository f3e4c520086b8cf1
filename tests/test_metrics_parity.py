"""Parity with the research code on its own outputs (tests/data/reference, docs/METRICS.md §9)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CASES, MASK_CASES, load_case, load_np1

from meta_ood_perception.metrics import FEATURE_NAMES, component_metrics, ground_truth_metrics, reference_keys

HEAT_VAR_OR_REL = ("_var", "_rel")


def _tolerance_np2(key: str, s_rel: np.ndarray) -> tuple[float, np.ndarray | float]:
    """(rtol, atol) of METRICS.md §9 against the numpy-2 (float32-accumulating) fixtures."""
    if key[0] in "EDV" and (key == key[0] or key[1] == "_"):
        if any(part in key for part in HEAT_VAR_OR_REL):
            return 0.0, 2e-5 * np.maximum(1.0, s_rel)
        return 1e-5, 0.0
    return 0.0, 0.0  # geometry, class probabilities, neighbour distribution, iou: exact


@pytest.mark.parametrize("case", CASES)
def test_components_against_numpy2_fixture(case):
    d = load_case(case)
    result = component_metrics(d["probs"], d["ood_mask"], d["gt_train"])
    np.testing.assert_array_equal(result.components, d["marked"])
    assert len(result) == int(d["n_components"])
    out = result.to_dict()
    assert list(out) == [str(k) for k in d["metric_keys"]]
    for key in out:
        rtol, atol = _tolerance_np2(key, d["S_rel"])
        err = np.abs(out[key] - d[key])
        assert np.all(err <= atol + rtol * np.abs(d[key])), (key, float(err.max()))


@pytest.mark.parametrize("case", CASES)
def test_components_against_numpy1_fixture_to_1e9(case):
    d, ref = load_case(case), load_np1(case)
    out = component_metrics(d["probs"], d["ood_mask"], d["gt_train"]).to_dict()
    for key in out:
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=1e-9, err_msg=key)


@pytest.mark.parametrize("case", CASES)
def test_feature_table_is_the_sorted_reference_columns(case):
    d = load_case(case)
    result = component_metrics(d["probs"], d["ood_mask"], d["gt_train"])
    assert result.names == sorted(set(reference_keys()) - {"iou", "iou0", "prc"})
    assert tuple(result.names) == FEATURE_NAMES
    assert len(result.names) == 75
    assert result.features.shape == (int(d["n_components"]), 75)
    assert result.features.dtype == np.float64
    for j, name in enumerate(result.names):
        np.testing.assert_allclose(result.features[:, j], load_np1(case)[name], atol=1e-9, err_msg=name)
    np.testing.assert_array_equal(result.iou0, d["iou0"])
    np.testing.assert_array_equal(result.iou, d["iou"])


@pytest.mark.parametrize("case", MASK_CASES)
@pytest.mark.parametrize("numpy_run", ["np2", "np1"])
def test_ground_truth_side(case, numpy_run):
    d = load_case(case)
    probs = load_case(case.removesuffix("_mask"))["probs"]
    ref = d if numpy_run == "np2" else load_np1(case)
    result = ground_truth_metrics(probs, d["ood_mask"], d["gt_train"], gt_label=d["gt_label"])
    np.testing.assert_array_equal(result.components, ref["marked"])
    out = result.to_dict()
    assert list(out) == [str(k) for k in ref["metric_keys"]]
    for key in out:
        np.testing.assert_allclose(out[key], ref[key], rtol=0, atol=1e-12, err_msg=key)
    assert "label_class" not in ground_truth_metrics(probs, d["ood_mask"], d["gt_train"]).to_dict()
