"""The domain monitor: statistics, calibration, bundle schema, pipeline decisions and the brake hint.

The rate tests run the embedded default bundle (calibrated on synthetic frames of seeds 31000–32111, see its
``bundle.json``) through its deployed pipeline on real photographs, degraded synthetic frames and synthetic frames of
seeds the calibration never saw.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import math
import shutil

import matplotlib.cbook as cbook
import numpy as np
import pytest
from PIL import Image, ImageFilter

from meta_ood_perception.brake import BrakeConfig, BrakeHintPolicy
from meta_ood_perception.bundle import DEFAULT_BUNDLE, BundleError, load_bundle
from meta_ood_perception.domain import (
    METHOD,
    STATISTIC_NAMES,
    DomainCalibration,
    DomainFeatures,
    fit_calibration,
    frame_features,
    monitor_off,
)
from meta_ood_perception.pipeline import STAGES, AnomalyPipeline, PipelineConfig
from meta_ood_perception.ros.params import NodeConfig
from meta_ood_training.synthetic import drive, render

SIZES = ((256, 512), (512, 1024))
#: Seeds of the unseen synthetic frames (the default bundle was calibrated on 31000–31011 and drives 32000–32111).
TEST_SEED = 7_000

pytestmark = pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle is not built")


@pytest.fixture(scope="module")
def pipeline() -> AnomalyPipeline:
    return AnomalyPipeline.from_bundle("default")


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size[::-1], Image.BILINEAR))


def _grace_hopper() -> np.ndarray:
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def photographs(size: tuple[int, int], n_crops: int = 16) -> list[np.ndarray]:
    """Real images that are not street scenes, at ``size``: crops (2:1, random scale and place, some mirrored) of
    Grace Hopper's portrait and the whole portrait stretched, and matplotlib's other sample pictures (an MRI slice,
    a photographed present, a logo)."""
    rng = np.random.default_rng(size[0])
    g = _grace_hopper()
    h, w = g.shape[:2]
    out = [_resize(g, size)]
    for k in range(n_crops):
        cw = int(rng.uniform(0.4, 1.0) * w)
        ch = cw // 2
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = g[y0 : y0 + ch, x0 : x0 + cw]
        out.append(_resize(crop[:, ::-1] if k % 2 else crop, size))
    with gzip.open(cbook.get_sample_data("s1045.ima.gz", asfileobj=False)) as f:
        mri = np.frombuffer(f.read(), np.uint16).reshape(256, 256).astype(np.float64)
    out.append(_resize(np.repeat((mri / mri.max() * 255).astype(np.uint8)[..., None], 3, axis=2), size))
    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        picture = Image.open(cbook.get_sample_data(name, asfileobj=False)).convert("RGB")
        out.append(_resize(np.asarray(picture), size))
    return out


def _crops(image: np.ndarray, size: tuple[int, int], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The whole ``image`` stretched to ``size`` and ``n`` 2:1 crops of it (random scale and place, every second one
    mirrored), each resized to ``size``."""
    h, w = image.shape[:2]
    out = [_resize(image, size)]
    for k in range(n):
        cw = int(rng.uniform(0.4, 1.0) * w)
        ch = min(cw // 2, h)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = image[y0 : y0 + ch, x0 : x0 + cw]
        out.append(_resize(crop[:, ::-1] if k % 2 else crop, size))
    return out


def outdoor_photographs(size: tuple[int, int], n_crops: int = 5) -> dict[str, list[np.ndarray]]:
    """scikit-learn's two sample photographs at ``size``, whole and cropped: a Chinese temple outdoors (sky above
    buildings and trees, the layout of a street scene without a street), a flower, and both in grey (converted back
    to three channels)."""
    from sklearn.datasets import load_sample_image

    rng = np.random.default_rng([size[0], 1])
    out = {}
    for name in ("china.jpg", "flower.jpg"):
        image = load_sample_image(name)
        grey = np.repeat(np.asarray(Image.fromarray(image).convert("L"))[..., None], 3, axis=2)
        out[name] = _crops(image, size, n_crops, rng)
        out[f"{name} (grey)"] = _crops(grey, size, n_crops, rng)
    return out


#: Degradations of synthetic frames (:func:`degraded`); the first five are the issue's.
DEGRADATIONS = ("night", "fog", "inverted", "blank", "noise", "dusk-dark", "haze", "gaussian", "low-contrast", "blur")


def degraded(kind: str, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A synthetic frame made foreign: night (strongly darkened, ×0.15–0.3), fog (blended toward grey-white, α
    0.4–0.7), colours inverted, a blank (constant) frame, uniform noise; and milder ones: darkened ×0.35–0.5 (as dark
    as dusk, without its warm light), haze (fog at α 0.3), additive Gaussian noise (σ 25–50), contrast lowered to
    0.4 around the mean, a Gaussian blur of 1.2 % of the frame height."""
    f = image.astype(np.float32)
    if kind in ("night", "dusk-dark"):
        return (f * rng.uniform(*((0.15, 0.3) if kind == "night" else (0.35, 0.5)))).astype(np.uint8)
    if kind in ("fog", "haze"):
        alpha = rng.uniform(0.4, 0.7) if kind == "fog" else 0.3
        return (f * (1 - alpha) + alpha * np.array([212, 214, 218], np.float32)).astype(np.uint8)
    if kind == "inverted":
        return 255 - image
    if kind == "blank":
        return np.full_like(image, int(rng.integers(0, 256)))
    if kind == "gaussian":
        return np.clip(f + rng.normal(0.0, rng.uniform(25, 50), f.shape), 0, 255).astype(np.uint8)
    if kind == "low-contrast":
        return np.clip(f.mean() + (f - f.mean()) * 0.4, 0, 255).astype(np.uint8)
    if kind == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(0.012 * image.shape[0])))
    assert kind == "noise"
    return rng.integers(0, 256, image.shape, dtype=np.uint8)


def _flagged(pipeline: AnomalyPipeline, frames: list[np.ndarray]) -> list[bool]:
    flags = []
    for frame in frames:
        result = pipeline.process(frame)
        flags.append(not result.domain.in_domain)
    pipeline.reset()
    return flags


# ------------------------------------------------------------------------------------- the default bundle's rates


@pytest.mark.parametrize("size", SIZES)
def test_real_photographs_are_outside_the_default_bundles_domain(pipeline, size):
    frames = photographs(size)
    flags = _flagged(pipeline, frames)
    assert np.mean(flags) >= 0.9, f"{sum(flags)} of {len(flags)} photographs flagged"
    reason = pipeline.process(frames[0]).domain.reason
    assert reason.startswith("outside the bundle's domain: ") and "calibrated" in reason
    pipeline.reset()


@pytest.mark.parametrize("size", SIZES)
def test_outdoor_photographs_with_sky_above_ground_are_outside_the_domain(pipeline, size):
    for name, frames in outdoor_photographs(size).items():
        flags = _flagged(pipeline, frames)
        assert np.mean(flags) >= 0.9, f"{name} at {size}: {sum(flags)} of {len(flags)} flagged"


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degraded_synthetic_frames_are_outside_the_domain(pipeline, kind, size):
    rng = np.random.default_rng([TEST_SEED, size[0]])
    base = [render("hazard" if i % 2 else "closed", TEST_SEED + 5, i, *size)[0] for i in range(10)]
    flags = _flagged(pipeline, [degraded(kind, image, rng) for image in base])
    assert np.mean(flags) >= 0.9, f"{kind}: {sum(flags)} of {len(flags)} flagged"


@pytest.mark.parametrize("size", SIZES)
def test_unseen_synthetic_frames_stay_in_the_domain(pipeline, size):
    frames = [
        render(kind, TEST_SEED + k, i, *size)[0] for k, kind in enumerate(("closed", "hazard")) for i in range(40)
    ]
    frames += [image for seed in (TEST_SEED + 100, TEST_SEED + 101) for image, _ in drive(seed, 15, *size)]
    flags = _flagged(pipeline, frames)
    assert np.mean(flags) <= 0.03, f"{sum(flags)} of {len(flags)} in-domain frames flagged"
    # a hazard is in the domain: an approaching one brakes, and none of its frames is flagged for it
    frames, targets = zip(*drive(TEST_SEED + 102, 12, *size), strict=True)
    results = [pipeline.process(image) for image in frames]
    pipeline.reset()
    assert (targets[-1] == 1).sum() > 1000 and results[-1].brake.active and results[-1].brake.available
    assert all(r.domain.in_domain for r in results)


# ----------------------------------------------------------------------------------------- brake integration


def test_ten_photo_frames_make_the_brake_hint_unavailable_naming_the_domain(pipeline):
    photo = photographs((256, 512), n_crops=0)[0]
    results = [pipeline.process(photo) for _ in range(10)]
    assert all(not r.domain.in_domain and r.domain.score > 1.0 for r in results)
    last = results[-1].brake
    assert not last.available and not last.active and "domain" in last.reason
    assert "10 frames in a row" in last.reason
    # back in the world: available again with the first in-domain frame
    image, _ = render("closed", TEST_SEED + 7, 0, 256, 512)
    back = pipeline.process(image)
    assert back.domain.in_domain and back.brake.available
    pipeline.reset()


def test_frames_outside_the_domain_never_turn_the_brake_hint_on():
    # two hits in three frames brake, and a photograph hits in every frame: without the monitor it brakes at the
    # second frame, before a patience of three frames makes the hint unavailable
    config = PipelineConfig(brake=BrakeConfig(persistence_k=2, persistence_n=3), domain_patience=3)
    pipeline = AnomalyPipeline.from_bundle("default", config=config)
    blind = AnomalyPipeline(dataclasses.replace(pipeline.bundle, domain=None), pipeline.backend, config,
                            warn_uncalibrated=False)  # fmt: skip
    photos = photographs((256, 512), n_crops=3)[:4] + outdoor_photographs((256, 512), n_crops=0)["china.jpg"]
    for photo in photos:
        assert [blind.process(photo).brake.active for _ in range(3)] == [False, True, True]  # the monitor off
        blind.reset()
        results = [pipeline.process(photo) for _ in range(6)]
        assert not any(r.domain.in_domain for r in results)
        assert not any(r.brake.active or r.brake.hit for r in results)  # every frame, also before the patience runs out
        assert [r.brake.available for r in results] == [True, True, False, False, False, False]
        assert all("held" in r.brake.reason and "domain" in r.brake.reason for r in results[:2])
        assert all("domain" in r.brake.reason for r in results[2:])
        pipeline.reset()
    # a hazard of the world still brakes with the same settings, and a short foreign run only holds its state
    frames = [image for image, _ in drive(TEST_SEED + 102, 12, 256, 512)]
    hints = [pipeline.process(image).brake for image in frames]
    assert hints[-1].active and all(h.available for h in hints)
    held = [pipeline.process(photos[0]).brake for _ in range(2)]
    assert all(h.active and h.available and "brake (held)" in h.reason for h in held)
    assert held[-1].hits_in_window == hints[-1].hits_in_window  # the history did not advance
    assert not pipeline.process(photos[0]).brake.available  # the third frame in a row: unavailable
    pipeline.reset()


def test_hold_repeats_the_previous_state_without_advancing_the_history():
    policy = BrakeHintPolicy(BrakeConfig(persistence_k=2, persistence_n=3, release_frames=2, min_area_px=1, min_risk=0))
    hazard, clear = np.ones((4, 4), np.int32), np.zeros((4, 4), np.int32)
    assert not policy.hold("no evidence").active  # nothing seen yet: clear
    assert not policy.update(hazard, [0.0]).active
    held = policy.hold("no evidence")
    assert not held.active and held.available and not held.hit and held.hits_in_window == 1
    assert held.reason == "clear (held): no evidence"
    assert policy.update(hazard, [0.0]).active  # the held frame did not count as a miss: 2 of the last 3
    for _ in range(3):
        assert policy.hold("no evidence").active  # held frames never release
    assert policy.update(clear, np.zeros(0)).active and not policy.update(clear, np.zeros(0)).active


def test_domain_patience_counts_frames_in_a_row():
    pipeline = AnomalyPipeline.from_bundle("default", config=PipelineConfig(domain_patience=3))
    photo = photographs((256, 512), n_crops=0)[0]
    street, _ = render("closed", TEST_SEED + 8, 0, 256, 512)
    sequence = [photo, photo, street, photo, photo, photo, photo, street]
    hints = [pipeline.process(frame).brake for frame in sequence]
    assert [h.available for h in hints] == [True, True, True, True, True, False, False, True]
    assert not any(h.active for h in hints) and "(held)" in hints[0].reason and "(held)" in hints[4].reason
    assert "(3 frames in a row)" in hints[5].reason and "(4 frames in a row)" in hints[6].reason
    pipeline.configure(PipelineConfig(domain_patience=1))
    assert not pipeline.process(photo).brake.available  # one frame is enough with patience 1
    pipeline.reset()
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="domain_patience"):
            PipelineConfig(domain_patience=bad)
    with pytest.raises(ValueError, match=r"^parameter domain_patience: must be >= 1, got 0$"):
        NodeConfig.from_params({"domain_patience": 0})
    assert NodeConfig.from_params({"domain_patience": 5}).pipeline.domain_patience == 5


def test_every_frame_carries_a_domain_status_and_its_timing(pipeline):
    image, _ = render("hazard", TEST_SEED + 9, 0, 256, 512)
    result = pipeline.process(image)
    assert "domain" in STAGES and set(result.timings_ms) == {*STAGES, "total"}
    assert result.domain.in_domain and 0.0 <= result.domain.score <= 1.0
    assert result.domain.features is not None and set(result.domain.features.values) == set(STATISTIC_NAMES)
    assert result.domain.statistic in STATISTIC_NAMES and result.domain.reason.startswith("in domain")
    pipeline.reset()


def test_a_bundle_without_calibration_runs_with_the_monitor_off(tmp_path, caplog):
    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest.pop("domain", None)  # the schema-2 bundles written before the monitor existed
    (copy / "bundle.json").write_text(json.dumps(manifest, indent=1))
    with caplog.at_level(logging.WARNING):
        bundle = load_bundle(copy)
        load_bundle(copy)
    assert bundle.domain is None
    assert "domain calibration" not in caplog.text  # loading says nothing: the pipeline that runs it does, once
    with caplog.at_level(logging.WARNING):
        pipeline = AnomalyPipeline.from_bundle(bundle)
        AnomalyPipeline.from_bundle(copy)  # another pipeline of the same bundle (a second camera): no repeat
        photo = photographs((256, 512), n_crops=0)[0]
        results = [pipeline.process(photo) for _ in range(5)]
    warnings = [r.getMessage() for r in caplog.records if "domain calibration" in r.getMessage()]
    assert len(warnings) == 1 and "monitor is off" in warnings[0] and str(copy) in warnings[0]
    assert all(r.domain.in_domain and r.domain.score == 0.0 and "monitor off" in r.domain.reason for r in results)
    assert all(r.brake.available for r in results)
    assert results[0].domain.features is not None  # still measured: calibration reads them


# ------------------------------------------------------------------------------ calibration, JSON, bundle schema


def _calibration(n: int = 200, seed: int = 0) -> DomainCalibration:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.5, 0.05, (n, len(STATISTIC_NAMES)))
    return fit_calibration(values, STATISTIC_NAMES, data={"dataset": "random", "seed": seed})


def test_calibration_json_round_trip_and_decisions():
    calibration = _calibration()
    again = DomainCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again == calibration and again.method == METHOD and again.data == {"dataset": "random", "seed": 0}
    assert calibration.threshold >= 1.0 and calibration.frames == 200
    assert calibration.flagged_fraction <= 0.01
    inside = DomainFeatures(dict(zip(STATISTIC_NAMES, calibration.center, strict=True)))
    status = calibration.check(inside)
    assert status.in_domain and status.score == 0.0
    _, high = calibration.limits("score_mean")
    off = DomainFeatures({**inside.values, "score_mean": high + 0.1})
    status = calibration.check(off)
    assert not status.in_domain and status.score > 1.0 and status.statistic == "score_mean"
    assert (
        status.reason == f"outside the bundle's domain: mean anomaly score {high + 0.1:.2f} vs calibrated ≤ {high:.2f}"
    )
    status = calibration.check(DomainFeatures({**inside.values, "brightness": 0.0}))
    assert not status.in_domain and "brightness 0.00 vs calibrated ≥" in status.reason
    missing = calibration.check(DomainFeatures({k: v for k, v in inside.values.items() if k != "contrast"}))
    assert not missing.in_domain and "contrast cannot be computed" in missing.reason
    status = calibration.check(DomainFeatures({**inside.values, "noise_floor": 0.0}))
    assert not status.in_domain and "noise floor 0.00 vs calibrated ≥" in status.reason
    assert monitor_off().in_domain and monitor_off().score == 0.0 and "off" in monitor_off().reason


def test_scale_dependent_statistics_are_compared_only_at_calibrated_frame_scales():
    values = np.random.default_rng(2).normal(0.5, 0.05, (100, len(STATISTIC_NAMES)))
    scales = np.linspace(4 / 3, 8 / 3, 100)  # 256×512 to 512×1024 frames for a 192×384 network input
    calibration = fit_calibration(values, STATISTIC_NAMES, scales=scales)
    assert calibration.scale_range == pytest.approx((4 / 3, 8 / 3))
    again = DomainCalibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert again == calibration and fit_calibration(values, STATISTIC_NAMES).scale_range is None
    center = dict(zip(STATISTIC_NAMES, calibration.center, strict=True))
    quiet = {**center, "noise_floor": 0.0}  # e.g. a blurred, darkened or fogged frame
    for scale, inside in ((2.0, False), (4 / 3 / 1.5, False), (8 / 3 * 1.5, False), (math.nan, False),
                          (0.5, True), (5.4, True)):  # fmt: skip
        status = calibration.check(DomainFeatures(quiet, scale))
        assert status.in_domain == inside, scale  # outside the scales it was calibrated at, the noise floor is ignored
    assert not calibration.check(DomainFeatures({**quiet, "brightness": 0.0}, 0.5)).in_domain  # the others are not
    with pytest.raises(ValueError, match="scale_range"):
        DomainCalibration.from_dict({**calibration.to_dict(), "scale_range": [2.0, 1.0]})
    with pytest.raises(ValueError, match="scales for"):
        fit_calibration(values, STATISTIC_NAMES, scales=scales[:5])


def test_fit_calibration_checks_its_input_and_drops_statistics_a_bundle_cannot_compute():
    values = np.random.default_rng(1).normal(0.5, 0.05, (50, len(STATISTIC_NAMES)))
    values[:, STATISTIC_NAMES.index("sky_top")] = math.nan  # a bundle without a sky class
    calibration = fit_calibration(values, STATISTIC_NAMES)
    assert "sky_top" not in calibration.statistics and len(calibration.statistics) == len(STATISTIC_NAMES) - 1
    with pytest.raises(ValueError, match="at least 20"):
        fit_calibration(values[:10], STATISTIC_NAMES)
    with pytest.raises(ValueError, match="must be"):
        fit_calibration(values[:, :3], STATISTIC_NAMES)
    with pytest.raises(ValueError, match="unknown domain statistic"):
        fit_calibration(values[:, :1], ["nope"])


def test_frame_features_of_a_constant_frame():
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    x = np.stack([np.full((32, 64), (0.5 - m) / s, np.float32) for m, s in zip(mean, std, strict=True)])[None]
    probs = np.full((3, 16, 32), 1 / 3, np.float32)
    features = frame_features(x, mean, std, probs, np.ones((16, 32), np.float32), road_index=0)
    v = features.values
    assert v["brightness"] == pytest.approx(0.5, abs=1e-5) and v["contrast"] == pytest.approx(0.0, abs=1e-6)
    assert v["sharpness"] == pytest.approx(0.0, abs=1e-6) and v["saturation"] == pytest.approx(0.0, abs=1e-6)
    assert v["noise_floor"] == pytest.approx(0.0, abs=1e-6) and math.isnan(features.scale)
    assert frame_features(x, mean, std, probs, probs[0], frame_size=(128, 256)).scale == pytest.approx(4.0)
    assert v["score_mean"] == 1.0 and v["confidence"] == pytest.approx(1 / 3) and math.isnan(v["sky_top"])
    with pytest.raises(ValueError, match="network input"):
        frame_features(x[0], mean, std, probs, probs[0])


def test_the_shipped_default_bundle_records_its_calibration_frames():
    calibration = load_bundle("default").domain
    assert calibration is not None and calibration.method == METHOD
    assert set(calibration.statistics) == set(STATISTIC_NAMES)
    assert calibration.scale_range == pytest.approx((4 / 3, 8 / 3))  # 256×512 and 512×1024 for a 192×384 input
    data = calibration.data
    assert data["frames"] == calibration.frames >= 1000
    kinds = {part["kind"] for part in data["parts"]}
    sizes = {tuple(part["size"]) for part in data["parts"]}
    assert kinds == {"closed", "hazard", "drive"} and sizes == set(SIZES)
    assert len(data["lighting"]) >= 3 and sum(data["lighting"].values()) == calibration.frames
    seeds = {part["seed"] for part in data["parts"] if "seed" in part}
    seeds |= {s for part in data["parts"] for s in part.get("seeds", [])}
    assert not seeds & {TEST_SEED + k for k in range(200)}  # the tests above use frames it never saw


def _with_domain(path, domain):
    manifest = json.loads((path / "bundle.json").read_text())
    manifest["domain"] = domain
    (path / "bundle.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: "yes", "domain calibration must be an object"),
        (lambda d: {k: v for k, v in d.items() if k != "threshold"}, "missing field 'threshold'"),
        (lambda d: {**d, "threshold": -1.0}, "threshold must be a finite number > 0"),
        (lambda d: {**d, "threshold": "NaN"}, "threshold must be a finite number"),
        (lambda d: {**d, "method": "magic-v9"}, "method 'magic-v9'"),
        (lambda d: {**d, "frames": 0}, "frames must be a positive integer"),
        (lambda d: {**d, "statistics": {}}, "'statistics' must be a non-empty object"),
        (lambda d: {**d, "statistics": {**d["statistics"], "colour": d["statistics"]["contrast"]}}, "unknown"),
        (lambda d: {**d, "statistics": {"contrast": {"center": 0.1, "scale_low": 0.0, "scale_high": 1.0}}}, "> 0"),
        (lambda d: {**d, "statistics": {"contrast": {"center": None, "scale_low": 1, "scale_high": 1}}}, "center"),
        (lambda d: {**d, "statistics": {"contrast": {"center": 0.1}}}, "needs center, scale_low and scale_high"),
    ],
)
def test_bad_calibration_data_in_bundle_json_is_one_line(tmp_path, edit, match):
    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    good = json.loads((copy / "bundle.json").read_text())["domain"]
    _with_domain(copy, edit(good))
    with pytest.raises(BundleError, match=match) as err:
        load_bundle(copy)
    assert "\n" not in str(err.value) and "domain" in str(err.value)
    _with_domain(copy, None)  # null = monitor off
    assert load_bundle(copy).domain is None


def test_calibrate_bundle_runs_the_deployed_pipeline_and_keeps_checksums(tmp_path, caplog):
    from meta_ood_training.domain_calibration import SyntheticCalibration, calibrate_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    _with_domain(copy, None)  # not calibrated yet
    before = load_bundle(copy)
    frames = SyntheticCalibration(seed=TEST_SEED + 150, frames=8, drives=1, drive_frames=6, sizes=((128, 256),))
    pairs = [render("closed", TEST_SEED + 151, i, 128, 256) for i in range(2)]  # (image, target) pairs are accepted
    with caplog.at_level(logging.WARNING):
        calibration = calibrate_bundle(copy, [*frames, *pairs], progress=False, data=frames.identity())
    assert "domain calibration" not in caplog.text  # no "monitor off" while it is being calibrated
    assert calibration.scale_range == pytest.approx((2 / 3, 2 / 3))
    bundle = load_bundle(copy)  # the checksummed files were not touched
    assert bundle.manifest["checksums"] == before.manifest["checksums"] and before.domain is None
    assert bundle.domain == calibration and calibration.frames == len(frames) + 2
    assert bundle.domain.data["frame_sizes"] == {"128x256": len(frames) + 2}
    assert bundle.domain.data["parts"][0]["seed"] == TEST_SEED + 150
    with pytest.raises(ValueError, match="at least 20"):
        calibrate_bundle(copy, [render("closed", 1, 0, 64, 128)[0]] * 5, progress=False)


# ------------------------------------------------------------------------------------------ the node's code path


def test_node_diagnostics_are_stale_while_the_domain_holds_the_brake_unavailable():
    import time

    from meta_ood_perception.ros import conversions as cv
    from meta_ood_perception.ros.params import camera_topics
    from meta_ood_perception.ros.processor import CameraProcessor
    from meta_ood_perception.ros.scheduler import LatestFrameScheduler

    types = cv.RosbagsTypes()
    topic = "/cam/front/image_raw"
    processor = CameraProcessor(camera_topics(topic), AnomalyPipeline.from_bundle("default"), types)
    # a clock that stands still: no input timeout or stalled backend however slow the machine is
    scheduler = LatestFrameScheduler([topic], lambda cam, msg, received: processor.process(msg), clock=lambda: 0.0)
    photo = photographs((128, 256), n_crops=0)[0]
    street = [image for image, _ in drive(TEST_SEED + 3, 3, 128, 256)]

    def feed(frames, first_stamp):
        stats = scheduler.cameras[topic].stats
        for i, frame in enumerate(frames):
            done = stats.frames_processed + 1
            scheduler.submit(topic, cv.rgb_to_image(frame, cv.make_header(types, first_stamp + i), types))
            deadline = time.monotonic() + 600  # only a bound against a hang: a frame takes well under a second
            while stats.frames_processed < done and time.monotonic() < deadline:
                time.sleep(0.005)
            assert stats.frames_processed == done, "the worker did not process the frame"
        return scheduler.health(topic, timeout_s=1.0)

    scheduler.start()
    try:
        assert feed(street, 0)[0] == cv.OK
        level, message, reason = feed([photo] * 4, 100)
        assert level == cv.STALE and "domain" in message and reason is None  # frames flow: no heartbeat needed
        assert scheduler.cameras[topic].stats.frames_out_of_domain == 4
        assert feed(street, 200)[0] == cv.OK  # back in the world
    finally:
        scheduler.stop()


def test_the_node_says_at_load_time_what_the_default_bundle_is(tmp_path):
    from meta_ood_perception.bundle import bundle_warnings

    lines = bundle_warnings(load_bundle("default"))
    assert len(lines) == 1 and "demonstrator" in lines[0] and "synthetic world" in lines[0]
    assert "mean nothing" in lines[0] and "domain" in lines[0]
    copy = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    del manifest["domain"]
    (copy / "bundle.json").write_text(json.dumps(manifest))
    # neither the demonstrator line nor "monitor off": that one is the pipeline's, logged once per bundle
    assert bundle_warnings(load_bundle(copy)) == []


def test_write_bundle_stores_a_calibration_and_loads_it_back(tmp_path):
    import torch

    from meta_ood_perception.bundle import write_bundle
    from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", 19, width=4)
    calibration = _calibration()
    common = {"model": model, "architecture": "deeplabv3plus_light", "model_options": {"width": 4},
              "class_names": [f"c{i}" for i in range(19)], "input_size": (32, 48), "meta_classifier": None,
              "mean": MEAN_RGB, "std": STD_RGB}  # fmt: skip
    bundle = write_bundle(tmp_path / "b", **common, domain=calibration)
    assert bundle.domain == calibration and load_bundle(tmp_path / "b").domain == calibration
    assert write_bundle(tmp_path / "c", **common, domain=calibration.to_dict()).domain == calibration
    plain = write_bundle(tmp_path / "d", **common)
    assert plain.domain is None and "domain" not in plain.manifest
    # a bundle whose classes include neither road nor sky still runs: those statistics are NaN, out of the calibration
    pipeline = AnomalyPipeline.from_bundle(plain, backend="torch", config=PipelineConfig(region="frame"))
    result = pipeline.process(np.zeros((32, 64, 3), np.uint8))
    assert math.isnan(result.domain.features.values["road_bottom"]) and result.domain.in_domain
