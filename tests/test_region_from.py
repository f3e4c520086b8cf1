"""Where the components of a frame analysed with a target may lie: the target's labelled region (the LostAndFound
protocol) or the pipeline's deployed region with the target only labelling them (``region_from``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_pipeline_stages import FixedBackend, _bundle, _logits

from meta_ood_perception.cli import main
from meta_ood_perception.errors import ConfigError
from meta_ood_perception.pipeline import AnomalyPipeline, PipelineConfig
from meta_ood_training.evaluate_bundle import evaluate_bundle
from meta_ood_training.meta_extract import extract, extraction_metadata

FRAME = (64, 128)  # twice the metric grid
BLOBS = [(4, 8, 4, 10), (20, 28, 30, 50)]  # metric-grid rows / columns of two uncertain blobs


def _target() -> np.ndarray:
    """The first blob a hazard (1), the second blob's rows void (255), road (0) elsewhere; at the frame size."""
    target = np.zeros(FRAME, np.uint8)
    target[8:16, 8:20] = 1
    target[36:60] = 255
    return target


def _pipeline(tmp_path, region: str = "frame", road_rows=None) -> AnomalyPipeline:
    bundle = _bundle(tmp_path / "b")
    logits = _logits(BLOBS, road_rows=road_rows)
    return AnomalyPipeline(bundle, FixedBackend(logits), PipelineConfig(region=region))  # type: ignore[arg-type]


def test_labelled_region_drops_components_in_void_the_deployed_region_keeps_them_as_false_positives(tmp_path):
    pipeline = _pipeline(tmp_path)
    image = np.zeros((*FRAME, 3), np.uint8)
    labelled = pipeline.analyze(image, _target())
    deployed = pipeline.analyze(image, _target(), region_from="deployed")
    assert labelled.table.iou0 is not None and labelled.table.iou0.tolist() == [0.0]
    assert deployed.table.iou0 is not None and deployed.table.iou0.tolist() == [0.0, 1.0]  # the void blob: an FP
    assert deployed.region is None and labelled.region is not None and not labelled.region[18:30].any()
    assert deployed.target is not None and (deployed.target == 255).any()  # the analysis keeps the real target
    # the same components as without a target (what the node sees), features included
    blind = pipeline.analyze(image)
    np.testing.assert_array_equal(deployed.labels, blind.labels)
    np.testing.assert_allclose(deployed.table.features, blind.table.features)
    assert pipeline.process(image, _target(), region_from="deployed").labels.max() == 2


def test_deployed_road_region_excludes_labelled_objects_off_the_predicted_road(tmp_path):
    pipeline = _pipeline(tmp_path, region="road", road_rows=slice(16, 32))  # the road: the lower half of the grid
    image = np.zeros((*FRAME, 3), np.uint8)
    target = _target()
    target[36:60] = 0  # both blobs in the labelled region
    assert len(pipeline.analyze(image, target).table) == 2
    deployed = pipeline.analyze(image, target, region_from="deployed")
    assert deployed.region is not None and not deployed.region[:16].any()
    assert deployed.table.iou0 is not None and deployed.table.iou0.tolist() == [1.0]  # the hazard lies off the road


def test_region_from_is_validated(tmp_path):
    pipeline = _pipeline(tmp_path)
    with pytest.raises(ConfigError, match="region_from must be one of target, deployed, got 'road'"):
        pipeline.analyze(np.zeros((*FRAME, 3), np.uint8), _target(), region_from="road")  # type: ignore[arg-type]


class _Frames:
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        return np.zeros((*FRAME, 3), np.uint8), _target()


def test_extraction_and_evaluation_record_the_region(tmp_path):
    pipeline = _pipeline(tmp_path)
    labelled = extract(pipeline, _Frames(), progress=False).dataset()
    deployed = extract(pipeline, _Frames(), progress=False, region_from="deployed").dataset()
    assert (labelled.n, int(labelled.y.sum())) == (2, 0)
    assert (deployed.n, int(deployed.y.sum())) == (4, 2)
    assert extraction_metadata(pipeline, _Frames())["extraction"]["region"] == "labelled"
    assert extraction_metadata(pipeline, _Frames(), region_from="deployed")["extraction"]["region"] == "frame"
    report = evaluate_bundle(pipeline, _Frames(), progress=False, region_from="deployed")
    assert report["pipeline"]["region"] == "frame"
    assert report["components"]["false_positives_before"] == 2 and report["components"]["components"] == 4
    assert evaluate_bundle(pipeline, _Frames(), progress=False)["pipeline"]["region"] == "labelled"


def test_meta_ood_evaluate_region_option(tmp_path):
    args = ["evaluate", "--bundle", "default", "--dataset", "synthetic", "--seed", "5", "--frames", "3"]
    reports = {}
    for region in ("labelled", "deployed"):
        assert main([*args, "--region", region, "--report", str(tmp_path / f"{region}.json")]) == 0
        reports[region] = json.loads((tmp_path / f"{region}.json").read_text())
    assert reports["labelled"]["pipeline"]["region"] == "labelled"
    assert reports["deployed"]["pipeline"]["region"] == "road"
    assert reports["labelled"]["pixel"] == reports["deployed"]["pixel"]  # the score does not depend on the region
    assert main([*args, "--report", str(tmp_path / "default.json")]) == 0
    assert json.loads((tmp_path / "default.json").read_text())["components"] == reports["labelled"]["components"]
