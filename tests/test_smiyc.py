from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.smiyc import SegmentMetricsAccumulator, frame_segments


def _frame(h=20, w=20):
    return np.zeros((h, w), bool), np.zeros((h, w), np.uint8)


def test_exact_hit_and_a_false_positive():
    pred, lab = _frame()
    lab[2:6, 2:6] = 1
    pred[2:6, 2:6] = True
    pred[12:15, 12:15] = True
    seg = frame_segments(pred, lab, min_pred_size=1, min_gt_size=1)
    assert seg.siou_gt.tolist() == [1.0]
    assert sorted(seg.ppv.tolist()) == [0.0, 1.0]
    acc = SegmentMetricsAccumulator()
    acc.update(seg)
    result = acc.compute()
    assert result["tp"]["0.50"] == 1 and result["fn"]["0.50"] == 0 and result["fp"]["0.50"] == 1
    assert result["mean_F1"] == pytest.approx(2 / 3)


def test_partial_overlap_hand_computed():
    pred, lab = _frame()
    lab[2:6, 2:6] = 1  # 16 px
    pred[2:6, 0:4] = True  # 16 px, 8 on the object
    seg = frame_segments(pred, lab, min_pred_size=1, min_gt_size=1)
    assert seg.siou_gt[0] == pytest.approx(8 / (16 + 16 - 8))
    assert seg.ppv[0] == pytest.approx(0.5)
    acc = SegmentMetricsAccumulator()
    acc.update(seg)
    out = acc.compute()
    assert out["tp"]["0.30"] == 1 and out["tp"]["0.35"] == 0  # sIoU = 1/3
    assert out["fp"]["0.50"] == 0 and out["fp"]["0.55"] == 1  # PPV = 1/2


def test_adjustment_for_other_objects_and_siou_criterion():
    pred, lab = _frame()
    lab[2:5, 2:5] = 1  # A, 9 px
    lab[2:5, 8:11] = 1  # B, 9 px
    pred[2:5, 2:11] = True  # one component over both, 27 px
    seg = frame_segments(pred, lab, min_pred_size=1, min_gt_size=1)
    # sIoU(A) = 9 / (27 + 9 - 9 - 9): B's pixels under the prediction are not counted against A
    assert seg.siou_gt.tolist() == pytest.approx([0.5, 0.5])
    assert seg.ppv.tolist() == pytest.approx([18 / 27])
    assert seg.siou_pred.tolist() == pytest.approx([18 / 27])  # union: 27 + 18 − 18
    acc = SegmentMetricsAccumulator(fp_criterion="siou")
    acc.update(seg)
    assert acc.compute()["fp"]["0.70"] == 1


def test_void_and_size_filters():
    pred, lab = _frame()
    lab[0, :] = 255
    pred[0, 5:10] = True  # inside void: ignored
    lab[10, 10] = 1  # a 1-pixel object: below min_gt_size, becomes void
    pred[10, 10] = True
    pred[15:17, 15:17] = True  # 4 px: below min_pred_size
    seg = frame_segments(pred, lab, min_pred_size=5, min_gt_size=2)
    assert seg.siou_gt.size == 0 and seg.ppv.size == 0
    seg = frame_segments(pred, lab, min_pred_size=1, min_gt_size=1)
    assert seg.siou_gt.tolist() == [1.0] and sorted(seg.ppv.tolist()) == [0.0, 1.0]
    with pytest.raises(ValueError, match="same 2-D shape"):
        frame_segments(pred, lab[:5])


def test_two_frames_sum_counts():
    acc = SegmentMetricsAccumulator()
    for shift in (0, 1):
        pred, lab = _frame()
        lab[2:6, 2:6] = 1
        pred[2:6, 2 + shift : 6 + shift] = True
        acc.update(frame_segments(pred, lab, min_pred_size=1, min_gt_size=1))
    out = acc.compute()
    assert out["tp"]["0.25"] == 2
    assert out["tp"]["0.75"] == 1  # the shifted frame: sIoU 12/20 = 0.6 → a false negative
    assert out["fp"]["0.75"] == 0  # its PPV is 12/16 = 0.75, not below τ
    assert out["F1"]["0.75"] == pytest.approx(2 / (2 + 1 + 0))
