"""Brake-hint policy on scripted sequences (labels drawn at native resolution)."""

from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.brake import BrakeConfig, BrakeHintPolicy

H, W = 120, 200


def frame(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    """Label map with component k+1 = boxes[k] (x0, y0, x1, y1), exclusive ends."""
    labels = np.zeros((H, W), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        labels[y0:y1, x0:x1] = k + 1
    return labels


def policy(**kw) -> BrakeHintPolicy:
    return BrakeHintPolicy(BrakeConfig(min_area_px=50, persistence_k=2, persistence_n=3, release_frames=3, **kw))


def test_hazard_appearing_and_approaching_turns_the_hint_on_and_risk_grows():
    p = policy()
    hints = []
    for step in range(8):  # a box in the lane centre, growing as it approaches
        half = 3 + 3 * step
        hints.append(p.update(frame((W // 2 - half, 90 - half, W // 2 + half, 90 + half)), [0.1]))
    assert [h.active for h in hints][:2] == [False, False]  # 6×6 = 36 px: too small at first
    first_hit = next(i for i, h in enumerate(hints) if h.hit)
    assert not hints[first_hit].active and hints[first_hit + 1].active  # 2 of 3 frames needed
    assert all(h.active for h in hints[first_hit + 1 :])
    risks = [h.risk for h in hints[first_hit + 1 :]]
    assert risks == sorted(risks) and 0 < risks[0] < risks[-1] <= 1
    assert "hazard in corridor" in hints[-1].reason and hints[-1].component_ids == (1,)


def test_one_frame_flicker_never_brakes():
    p = policy()
    box = frame((90, 80, 110, 100))
    empty = frame()
    hints = [p.update(f, [0.0] if f is box else []) for f in (empty, box, empty, empty, box, empty, empty)]
    assert not any(h.active for h in hints)
    assert sum(h.hit for h in hints) == 2


def test_hysteresis_holds_through_a_dropout_and_releases_after_clear_frames():
    p = policy()
    box = frame((90, 80, 110, 100))
    for _ in range(3):
        assert p.update(box, [0.0]).hit
    assert p.update(box, [0.0]).active
    held = [p.update(frame(), []) for _ in range(3)]
    assert [h.active for h in held] == [True, True, False]
    assert "holding" in held[0].reason


def test_hazard_outside_the_corridor_is_ignored():
    p = policy()
    hints = [p.update(frame((2, 90, 30, 118)), [0.0]) for _ in range(5)]  # far left, beside the road
    assert not any(h.active or h.hit for h in hints)
    assert "none with 50 px in the corridor" in hints[-1].reason
    assert p.corridor_areas(frame((2, 90, 30, 118)), 1)[0] == 0


def test_hazard_rejected_by_the_meta_classifier_is_ignored():
    p = policy(max_p_false_positive=0.5)
    hints = [p.update(frame((90, 80, 110, 100)), [0.9]) for _ in range(5)]
    assert not any(h.active for h in hints)
    assert "rejected by the meta classifier" in hints[-1].reason


def test_road_intersection_and_unavailable_state():
    p = policy(use_road=True)
    labels = frame((90, 80, 110, 100))
    road = np.zeros((H, W), bool)  # the network sees no road there: nothing counts
    assert not p.update(labels, [0.0], road).hit
    assert p.update(labels, [0.0], np.ones((H, W), bool)).hit
    down = p.unavailable("backend timed out")
    assert not down.available and not down.active and down.risk == 1.0 and "unavailable" in down.reason
    assert not p.update(labels, [0.0], np.ones((H, W), bool)).active  # history was reset


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"corridor": ((0, 0), (1, 1))}, "at least 3 vertices"),
        ({"corridor": ((0, 0), (1.5, 1), (0, 1))}, "in [0, 1]"),
        ({"min_area_px": 0}, "min_area_px"),
        ({"max_p_false_positive": 1.5}, "max_p_false_positive"),
        ({"persistence_k": 4, "persistence_n": 3}, "persistence"),
        ({"release_frames": 0}, "release_frames"),
    ],
)
def test_bad_configuration_names_the_setting(kw, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BrakeConfig(**kw)


def test_release_does_not_flicker_back_on_without_a_new_hazard():
    p = BrakeHintPolicy(BrakeConfig(persistence_k=2, persistence_n=5, release_frames=1, min_area_px=1))
    labels = np.zeros((10, 10), np.int32)
    labels[8, 5] = 1
    empty = np.zeros((10, 10), np.int32)
    states = [p.update(lab, [0.0] if lab.any() else []).active for lab in (labels, labels, empty, empty, empty)]
    assert states == [False, True, False, False, False]


def test_a_component_at_the_cut_does_not_count():
    p = BrakeHintPolicy(BrakeConfig(persistence_k=1, persistence_n=1, min_area_px=1, max_p_false_positive=0.5))
    labels = np.zeros((10, 10), np.int32)
    labels[8, 5] = 1
    assert not p.update(labels, [0.5]).hit and p.update(labels, [0.49]).hit
