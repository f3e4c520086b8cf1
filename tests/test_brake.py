"""Brake-hint policy on scripted sequences (labels drawn at native resolution)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from meta_ood_perception.brake import BRAKE_STATES, BrakeConfig, BrakeHint, BrakeHintPolicy
from meta_ood_perception.errors import ConfigError, InputError

H, W = 120, 200


def frame(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    """Label map with component k+1 = boxes[k] (x0, y0, x1, y1), exclusive ends."""
    labels = np.zeros((H, W), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        labels[y0:y1, x0:x1] = k + 1
    return labels


def policy(**kw) -> BrakeHintPolicy:
    return BrakeHintPolicy(BrakeConfig(min_area_px=50, persistence_k=2, persistence_n=3, release_frames=3, **kw))


def approach(p: BrakeHintPolicy, steps: int = 8, p_fp: float = 0.1) -> list:
    """A box in the lane centre, growing as it approaches: 6×6 px (too small), then 12×12 … 48×48."""
    hints = []
    for step in range(steps):
        half = 3 + 3 * step
        hints.append(p.update(frame((W // 2 - half, 90 - half, W // 2 + half, 90 + half)), [p_fp]))
    return hints


def test_hazard_appearing_and_approaching_is_seen_first_and_brakes_once_its_risk_is_worth_it():
    p = policy()
    hints = approach(p)
    assert [h.state for h in hints][:2] == ["clear", "candidate"]  # 6×6 = 36 px: too small; then 1 of 2 hits
    seen = next(i for i, h in enumerate(hints) if h.seen)
    active = next(i for i, h in enumerate(hints) if h.active)
    assert seen == 2 and seen < active  # persistent from the 2nd hit, but not yet worth braking: warn first
    assert all(h.state == "warn" and h.risk < p.config.min_risk for h in hints[seen:active])
    assert "warn (risk" in hints[seen].reason and "below min_risk 0.25" in hints[seen].reason
    assert hints[active].risk >= p.config.min_risk and all(h.state == "brake" for h in hints[active:])
    risks = [h.risk for h in hints[1:]]
    assert risks == sorted(risks) and 0 < risks[0] < risks[-1] <= 1
    assert "hazard in corridor" in hints[-1].reason and hints[-1].component_ids == (1,)


def test_min_risk_zero_brakes_on_persistence_alone():
    hints = approach(policy(min_risk=0.0))
    first_hit = next(i for i, h in enumerate(hints) if h.hit)
    assert not hints[first_hit].active and hints[first_hit + 1].active  # 2 of 3 frames needed, nothing more
    assert not any(h.state == "warn" for h in hints)


def test_min_risk_one_never_brakes_on_a_doubtful_or_small_hazard():
    hints = approach(policy(min_risk=1.0))  # P(FP) 0.1: confidence at most 0.9
    assert not any(h.active for h in hints) and hints[-1].state == "warn"


def test_a_hazard_big_and_confident_enough_brakes_as_soon_as_it_persists():
    """The default min_risk costs no frame on a hazard covering full_risk_area_px with a low P(FP)."""
    p = policy()
    box = frame((60, 50, 140, 119))  # 80 × 69 px, much of it in the corridor
    assert p.corridor_areas(box, 1)[0] >= p.config.full_risk_area_px
    hints = [p.update(box, [0.3]) for _ in range(3)]
    assert [h.state for h in hints] == ["candidate", "brake", "brake"]
    assert math.isclose(hints[1].risk, 2 / 3 * 0.7)


def test_risk_grows_with_the_area_in_the_corridor_and_ignores_the_row():
    """risk = hits/n × (1 − P(FP)) × min(1, corridor area / full_risk_area_px); a box of the same corridor area
    near the far edge of the corridor and near the bottom gives the same risk (distance only through size)."""
    cfg = dict(min_area_px=1, persistence_k=1, persistence_n=1)
    far, near = frame((92, 62, 108, 72)), frame((92, 100, 108, 110))  # 16 × 10 px each, inside the corridor
    p = policy()
    assert p.corridor_areas(far, 1)[0] == p.corridor_areas(near, 1)[0] == 160
    risk_far = BrakeHintPolicy(BrakeConfig(**cfg)).update(far, [0.2]).risk
    risk_near = BrakeHintPolicy(BrakeConfig(**cfg)).update(near, [0.2]).risk
    assert math.isclose(risk_far, 0.8 * 160 / 2000) and math.isclose(risk_far, risk_near)
    bigger = BrakeHintPolicy(BrakeConfig(**cfg, full_risk_area_px=100)).update(near, [0.2]).risk
    assert math.isclose(bigger, 0.8)  # saturates at full_risk_area_px


def test_one_frame_flicker_never_brakes():
    p = policy()
    box = frame((90, 80, 110, 100))
    empty = frame()
    hints = [p.update(f, [0.0] if f is box else []) for f in (empty, box, empty, empty, box, empty, empty)]
    assert not any(h.active for h in hints)
    assert sum(h.hit for h in hints) == 2


def test_hysteresis_holds_through_a_dropout_and_releases_after_clear_frames():
    p = policy(min_risk=0.0)
    box = frame((90, 80, 110, 100))
    for _ in range(3):
        assert p.update(box, [0.0]).hit
    assert p.update(box, [0.0]).active
    held = [p.update(frame(), []) for _ in range(3)]
    assert [h.active for h in held] == [True, True, False]
    assert [h.state for h in held] == ["brake", "brake", "clear"]
    assert "holding" in held[0].reason


def test_warn_holds_through_a_dropout_and_releases_like_the_brake():
    p = policy()  # a 20 × 20 box: 400 px, risk at most 0.2 < 0.25
    box = frame((90, 80, 110, 100))
    hints = [p.update(box, [0.0]) for _ in range(3)] + [p.update(frame(), []) for _ in range(3)]
    assert [h.state for h in hints] == ["candidate", "warn", "warn", "warn", "warn", "clear"]
    assert "warn (holding)" in hints[3].reason and not any(h.active for h in hints)


def test_an_active_hint_stays_active_while_the_risk_dips_and_the_hazard_is_still_seen():
    p = policy()
    big, small = frame((70, 60, 130, 119)), frame((95, 85, 105, 95))  # risk ≥ 0.25, then a 10 × 10 fragment
    assert [p.update(big, [0.0]).state for _ in range(2)] == ["candidate", "brake"]
    dips = [p.update(small, [0.0]) for _ in range(6)]
    assert dips[-1].risk < p.config.min_risk and all(h.state == "brake" for h in dips)  # never back to warn
    released = [p.update(frame(), []) for _ in range(3)]
    assert [h.state for h in released] == ["brake", "brake", "clear"]
    again = [p.update(small, [0.0]) for _ in range(2)]  # a new small hazard after the release: warn, no brake
    assert [h.state for h in again] == ["candidate", "warn"]


def test_states_of_the_hint():
    assert [
        BrakeHint(False, 1.0, "x", available=False).state,
        BrakeHint(True, 0.5, "x", hit=True, seen=True).state,
        BrakeHint(False, 0.1, "x", hit=True, seen=True).state,
        BrakeHint(False, 0.1, "x", seen=True).state,
        BrakeHint(False, 0.1, "x", hit=True).state,
        BrakeHint(False, 0.0, "x").state,
    ] == ["unavailable", "brake", "warn", "warn", "candidate", "clear"]
    assert set(BRAKE_STATES) == {"unavailable", "brake", "warn", "candidate", "clear"}


def test_hold_repeats_a_warning():
    p = policy()
    box = frame((90, 80, 110, 100))
    p.update(box, [0.0])
    assert p.update(box, [0.0]).state == "warn"
    held = p.hold("frame outside the domain")
    assert held.state == "warn" and held.reason == "warn (held): frame outside the domain"
    p.reset()
    assert p.update(box, [0.0]).state == "candidate"  # reset forgets the warning too


def test_hazard_outside_the_corridor_is_ignored():
    p = policy()
    hints = [p.update(frame((2, 90, 30, 118)), [0.0]) for _ in range(5)]  # far left, beside the road
    assert not any(h.active or h.hit for h in hints)
    assert "none with 50 px in the corridor" in hints[-1].reason
    assert p.corridor_areas(frame((2, 90, 30, 118)), 1)[0] == 0


def test_hazard_rejected_by_the_meta_classifier_is_ignored():
    p = policy(max_p_false_positive=0.5)
    hints = [p.update(frame((90, 80, 110, 100)), [0.9]) for _ in range(5)]
    assert not any(h.active or h.seen or h.hit for h in hints)
    assert "rejected by the meta classifier" in hints[-1].reason


def test_road_intersection_and_unavailable_state():
    p = policy(use_road=True, min_risk=0.0)
    labels = frame((90, 80, 110, 100))
    road = np.zeros((H, W), bool)  # the network sees no road there: nothing counts
    assert not p.update(labels, [0.0], road).hit
    assert p.update(labels, [0.0], np.ones((H, W), bool)).hit
    down = p.unavailable("backend timed out")
    assert not down.available and not down.active and down.risk == 1.0 and "unavailable" in down.reason
    assert p.update(labels, [0.0], np.ones((H, W), bool)).state == "candidate"  # history was reset
    assert p.update(labels, [0.0], np.ones((H, W), bool)).active


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"corridor": ((0, 0), (1, 1))}, "at least 3 vertices"),
        ({"corridor": ((0, 0), (1.5, 1), (0, 1))}, "in [0, 1]"),
        ({"min_area_px": 0}, "min_area_px"),
        ({"max_p_false_positive": 1.5}, "max_p_false_positive"),
        ({"persistence_k": 4, "persistence_n": 3}, "persistence"),
        ({"release_frames": 0}, "brake.release_frames"),
        ({"full_risk_area_px": 0}, "brake.full_risk_area_px"),
        ({"min_risk": -0.01}, "brake.min_risk must lie in [0, 1], got -0.01"),
        ({"min_risk": 1.5}, "brake.min_risk must lie in [0, 1], got 1.5"),
        ({"min_risk": float("nan")}, "brake.min_risk must lie in [0, 1], got nan"),
    ],
)
def test_bad_configuration_names_the_setting(kw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        BrakeConfig(**kw)


def test_min_risk_bounds_are_valid():
    assert BrakeConfig(min_risk=0).min_risk == 0 and BrakeConfig(min_risk=1).min_risk == 1


def test_every_setting_has_a_one_line_description():
    """The ROS parameter table reads brake.* defaults and descriptions from these fields."""
    for f in dataclasses.fields(BrakeConfig):
        text = f.metadata.get("description")
        assert isinstance(text, str) and text and "\n" not in text, f.name
        assert f.default is not dataclasses.MISSING, f.name


def test_misshaped_inputs_are_input_errors():
    p = policy()
    with pytest.raises(InputError, match="labels must be"):
        p.update(np.zeros((2, 2, 2), np.int32), [])
    with pytest.raises(InputError, match="corridor areas"):
        p.update(frame(), [0.0], areas=np.zeros(2, np.int64))


def test_release_does_not_flicker_back_on_without_a_new_hazard():
    p = BrakeHintPolicy(BrakeConfig(persistence_k=2, persistence_n=5, release_frames=1, min_area_px=1, min_risk=0))
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


def test_the_overlay_banner_tells_warn_from_brake_and_clear():
    from types import SimpleNamespace

    from meta_ood_perception.overlay import annotate

    image = np.zeros((H, W, 3), np.uint8)

    def banner(hint: BrakeHint) -> tuple[int, ...]:
        result = SimpleNamespace(mask=np.zeros((H, W), np.uint8), components=(), brake=hint, domain=None)
        return tuple(int(v) for v in annotate(image, result)[2, W - 2])  # a banner pixel past the text

    warn, brake = banner(BrakeHint(False, 0.1, "warn", seen=True)), banner(BrakeHint(True, 0.6, "brake", seen=True))
    clear = banner(BrakeHint(False, 0.0, "clear"))
    assert len({warn, brake, clear}) == 3
