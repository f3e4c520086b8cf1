"""The pipeline's stages on a controlled backend: metric grid, geometry in frame pixels, regions, the meta cut,
keep-all bundles, regime warnings, and metric extraction through the pipeline."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from meta_ood_perception import meta_classifier as mc
from meta_ood_perception.bundle import write_bundle
from meta_ood_perception.metrics import FEATURE_NAMES
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model
from meta_ood_perception.pipeline import AnomalyPipeline, PipelineConfig, drivable_region
from meta_ood_perception.resolution import FrameMapping, nearest_indices
from meta_ood_training.meta_extract import extract

C = 19
METRIC = (32, 64)


def _logits(blobs, h=32, w=64, road_rows=None):
    """(1, C, h, w) logits: confident class 2 everywhere, road (class 0) in ``road_rows``, nearly uniform in the blobs
    (class 1 slightly ahead, so that a blob is not argmax road)."""
    logits = np.zeros((1, C, h, w), np.float32)
    logits[0, 2] = 8.0
    if road_rows is not None:
        logits[0, 2, road_rows] = 0.0
        logits[0, 0, road_rows] = 8.0
    for y0, y1, x0, x1 in blobs:
        logits[0, :, y0:y1, x0:x1] = 0.0
        logits[0, 1, y0:y1, x0:x1] = 0.2
    return logits


class FixedBackend:
    """Returns the same logits for every frame (the network's output does not depend on the camera size)."""

    name, description = "fixed", "fixed logits"

    def __init__(self, logits):
        self.logits = logits

    def run(self, batch):
        return {"logits": self.logits}


def _bundle(path, meta=None, **options):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", C, width=4)
    return write_bundle(path, model=model, architecture="deeplabv3plus_light", model_options={"width": 4},
                        class_names=[f"c{i}" if i else "road" for i in range(C)], input_size=(32, 64),
                        metric_size=METRIC, meta_classifier=meta, mean=MEAN_RGB, std=STD_RGB, **options)  # fmt: skip


def _size_meta(cut_px: float):
    """A logistic meta classifier that calls components larger than ``cut_px`` metric pixels false positives."""
    coef = np.zeros(len(FEATURE_NAMES))
    coef[FEATURE_NAMES.index("S")] = 1.0
    return mc.logistic(FEATURE_NAMES, mean=np.zeros(75), scale=np.ones(75), coef=coef * 10, intercept=-10 * cut_px)


@pytest.mark.parametrize("frame", [(64, 128), (128, 256), (96, 200), (20, 40), (7, 9), (1, 1)])
def test_components_live_on_the_metric_grid_whatever_the_camera_size(tmp_path, frame):
    bundle = _bundle(tmp_path / "b", meta=_size_meta(30.0))
    logits = _logits([(4, 8, 4, 10), (20, 28, 30, 50)])  # 24 px (kept) and 160 px (removed) on the grid
    pipeline = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region="frame"))
    result = pipeline.process(np.zeros((*frame, 3), np.uint8))
    assert [c.kept for c in result.components] == [True, False]
    assert result.score.shape == frame and result.labels.shape == frame and result.mask.shape == frame
    assert result.analysis is not None and result.analysis.labels.shape == METRIC
    for c in result.components:
        pixels = result.labels == c.id
        assert c.area == pixels.sum()
        if pixels.any():
            ys, xs = np.nonzero(pixels)
            assert c.bbox == (xs.min(), ys.min(), xs.max(), ys.max())
            assert c.centroid == pytest.approx((xs.mean(), ys.mean()))
        else:  # a frame smaller than the grid can miss a component altogether
            assert c.bbox == (-1, -1, -1, -1) and c.centroid == (-1.0, -1.0)
        assert (result.mask[pixels] == int(c.kept)).all()
    reference = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region="frame"))
    same = reference.process(np.zeros((*METRIC, 3), np.uint8))
    assert result.analysis is not None and same.analysis is not None
    np.testing.assert_array_equal(result.analysis.table.features, same.analysis.table.features)


def test_the_cut_is_the_bundles_unless_configured(tmp_path):
    bundle = _bundle(tmp_path / "b", meta=_size_meta(30.0), max_p_false_positive=0.9)
    logits = _logits([(4, 8, 4, 10), (20, 28, 30, 50)])
    pipeline = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region="frame"))
    assert pipeline.max_p_false_positive == 0.9
    p = [c.p_false_positive for c in pipeline.process(np.zeros((32, 64, 3), np.uint8)).components]
    assert p[0] < 0.01 and p[1] > 0.99
    pipeline.configure(PipelineConfig(region="frame", max_p_false_positive=1.0))
    assert [c.kept for c in pipeline.process(np.zeros((32, 64, 3), np.uint8)).components] == [True, False]
    with pytest.raises(ValueError, match="max_p_false_positive"):
        PipelineConfig(max_p_false_positive=1.5)


def test_a_bundle_without_meta_classifier_keeps_everything_and_says_so(tmp_path, caplog):
    bundle = _bundle(tmp_path / "b")
    assert bundle.meta_classifier is None and bundle.manifest["meta_classifier"] is None
    with caplog.at_level(logging.WARNING):
        pipeline = AnomalyPipeline(bundle, FixedBackend(_logits([(4, 8, 4, 10), (20, 28, 30, 50)])),
                                   PipelineConfig(region="frame"))  # fmt: skip
    assert "no meta classifier: every component is kept" in caplog.text
    result = pipeline.process(np.zeros((32, 64, 3), np.uint8))
    assert [(c.kept, c.p_false_positive) for c in result.components] == [(True, 0.0), (True, 0.0)]


def test_road_region_keeps_components_off_the_road_out(tmp_path):
    bundle = _bundle(tmp_path / "b")
    road_rows = slice(16, 32)
    logits = _logits([(4, 8, 4, 10), (20, 28, 30, 50)], road_rows=road_rows)  # first blob above the road
    probs = torch.softmax(torch.from_numpy(logits[0]), 0).numpy()
    region = drivable_region(probs, 0)
    assert not region[:16].any() and region[16:].all()
    on_road = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region="road"))
    anywhere = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region="frame"))
    frame = np.zeros((32, 64, 3), np.uint8)
    assert len(on_road.process(frame).components) == 1
    assert len(anywhere.process(frame).components) == 2
    with pytest.raises(ValueError, match="region"):
        PipelineConfig(region="sky")  # type: ignore[arg-type]


def test_drivable_region_spans_each_row_between_its_outer_road_pixels():
    probs = np.zeros((3, 4, 8), np.float32)
    probs[1] = 1.0
    probs[:, 2, 1] = [1, 0, 0]
    probs[:, 2, 6] = [1, 0, 0]
    probs[:, 3, 3] = [1, 0, 0]
    region = drivable_region(probs, 0)
    assert region[2].tolist() == [False, True, True, True, True, True, True, False]
    assert region[3].tolist() == [False, False, False, True, False, False, False, False]
    assert not region[:2].any()


def test_training_regime_warnings_come_once(tmp_path, caplog):
    regime = {"threshold": 0.7, "metric_size": list(METRIC), "aspect_ratio": 2.0}
    bundle = _bundle(tmp_path / "b", meta=_size_meta(30.0), meta_training=regime)
    logits = _logits([(4, 8, 4, 10)])
    with caplog.at_level(logging.WARNING):
        pipeline = AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(threshold=0.5))
        pipeline.configure(PipelineConfig(threshold=0.6))
        for _ in range(3):
            pipeline.process(np.zeros((64, 64, 3), np.uint8))  # aspect 1.0, trained on 2.0
            pipeline.process(np.zeros((64, 128, 3), np.uint8))
    assert caplog.text.count("differs from the 0.7 the bundle's meta classifier was trained with") == 1
    assert caplog.text.count("differ from the aspect 2.00") == 1


def test_target_restricts_components_and_gives_their_targets(tmp_path):
    bundle = _bundle(tmp_path / "b")
    pipeline = AnomalyPipeline(bundle, FixedBackend(_logits([(4, 8, 4, 10), (20, 28, 30, 50)])),
                               PipelineConfig(region="frame"))  # fmt: skip
    target = np.zeros((64, 128), np.uint8)  # twice the metric grid
    target[8:16, 8:20] = 1  # the first blob is a hazard
    target[:4] = 255
    analysis = pipeline.analyze(np.zeros((64, 128, 3), np.uint8), target)
    assert analysis.target is not None and analysis.target.shape == METRIC
    assert analysis.table.iou0 is not None and analysis.table.iou0.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="target has shape"):
        pipeline.analyze(np.zeros((64, 128, 3), np.uint8), target[:10])
    with pytest.raises(ValueError, match=r"integer labels in 0\.\.255"):
        pipeline.analyze(np.zeros((64, 128, 3), np.uint8), target.astype(np.int32) - 1)


class _Frames:
    """A dataset of black frames with given targets; the backend decides what the network 'sees'."""

    def __init__(self, targets):
        self.targets = targets

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return np.zeros((*self.targets[i].shape, 3), np.uint8), self.targets[i]


class _Sequence:
    name, description = "sequence", "a list of logits, one per call"

    def __init__(self, logits):
        self.logits, self.calls = logits, 0

    def run(self, batch):
        self.calls += 1
        return {"logits": self.logits[self.calls - 1]}


def test_extract_targets_groups_and_object_overlaps(tmp_path):
    def target(objects):
        t = np.zeros(METRIC, np.uint8)
        for y0, y1, x0, x1 in objects:
            t[y0:y1, x0:x1] = 1
        t[-1] = 255
        return t

    logits = [_logits([(2, 6, 2, 6), (10, 13, 20, 25)]), _logits([(5, 8, 10, 14)])]
    targets = [target([(3, 7, 3, 7)]), target([(12, 15, 40, 45)])]  # frame 1: a hit and a false positive
    pipeline = AnomalyPipeline(_bundle(tmp_path / "b", meta=_size_meta(15.5)), _Sequence(logits),
                               PipelineConfig(region="frame"))  # fmt: skip
    collected = extract(pipeline, _Frames(targets), groups=[7, 9], progress=False)
    data = collected.dataset()
    assert data.n == 3 and data.X.shape == (3, 75)
    assert data.y.tolist() == [0, 1, 1]
    assert data.group.tolist() == [7, 7, 9]
    assert collected.kept.tolist() == [False, True, True]  # S = 16, 15, 12 metric pixels, cut at 15.5
    objects = data.objects
    assert objects.n_objects == 2 and objects.object_group.tolist() == [7, 9]
    assert list(zip(objects.pair_component.tolist(), objects.pair_object.tolist(), strict=True)) == [(0, 0)]
    assert objects.missed(np.ones(3, bool)) == 1 and objects.missed(collected.kept) == 2


def test_frame_mapping_round_trips():
    assert nearest_indices(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert nearest_indices(8, 4).tolist() == [1, 3, 5, 7]
    mapping = FrameMapping.create((100, 300), (32, 64))
    labels = np.zeros((32, 64), np.int32)
    labels[3:9, 10:40] = 1
    frame = mapping.to_frame_labels(labels)
    assert frame.shape == (100, 300)
    np.testing.assert_array_equal(mapping.to_metric(frame), labels)
    assert mapping.pixel_area().sum() == 100 * 300
