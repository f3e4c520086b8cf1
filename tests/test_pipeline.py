"""AnomalyPipeline on the committed default bundle: torch vs ONNX Runtime, bad frames, results."""

from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.backends import BackendError, create_backend
from meta_ood_perception.brake import BrakeConfig
from meta_ood_perception.bundle import DEFAULT_BUNDLE, load_bundle
from meta_ood_perception.errors import ConfigError, FaultError
from meta_ood_perception.pipeline import STAGES, AnomalyPipeline, PipelineConfig
from meta_ood_training.synthetic import render

pytestmark = pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle is not built in this checkout")


@pytest.fixture(scope="module")
def pipelines():
    bundle = load_bundle("default")
    return {b: AnomalyPipeline.from_bundle(bundle, backend=b) for b in ("torch", "onnxruntime")}


@pytest.mark.parametrize("size", [(256, 512), (200, 333), (128, 256)])
def test_torch_and_onnxruntime_agree_at_any_frame_size(pipelines, size):
    image, _ = render("hazard", 31_337, 2, *size)
    results = {name: p.process(image) for name, p in pipelines.items()}
    a, b = results["torch"], results["onnxruntime"]
    assert a.score.shape == size and a.score.dtype == np.float32
    assert a.mask.shape == size and a.mask.dtype == np.uint8 and set(np.unique(a.mask)) <= {0, 1}
    np.testing.assert_allclose(a.score, b.score, atol=1e-4)
    assert (a.mask != b.mask).mean() < 1e-4
    assert [c.kept for c in a.components] == [c.kept for c in b.components]
    assert set(a.timings_ms) == {*STAGES, "total"}


def test_the_hazard_is_found_and_the_components_describe_it(pipelines):
    image, target = render("hazard", 31_337, 7, 256, 512, n_hazards=(1, 1))
    result = pipelines["onnxruntime"].process(image)
    hazard = target == 1
    assert (result.mask.astype(bool) & hazard).sum() >= 0.2 * hazard.sum()  # found and kept (partly: its edges)
    for c in result.components:
        pixels = result.labels == c.id
        ys, xs = np.nonzero(pixels)
        assert c.area == pixels.sum()
        assert c.bbox == (xs.min(), ys.min(), xs.max(), ys.max())
        assert c.centroid == pytest.approx((xs.mean(), ys.mean()))
        assert 0.0 <= c.p_false_positive <= 1.0
        assert c.kept == (c.p_false_positive < pipelines["onnxruntime"].max_p_false_positive)
        assert (result.mask[pixels] == int(c.kept)).all()
    assert ((result.labels > 0) >= result.mask.astype(bool)).all()


def _match(a, b):
    """Pairs (i, j) of components of two results (same frame size) that overlap most, each at most once."""
    pairs, used = [], set()
    for c in a.components:
        overlap = np.bincount(b.labels[a.labels == c.id], minlength=len(b.components) + 1)[1:]
        if overlap.size and overlap.max() > 0:
            j = int(overlap.argmax())
            if j not in used:
                used.add(j)
                pairs.append((c, b.components[j]))
    return pairs


def test_the_meta_classifier_decides_the_same_at_any_camera_resolution(pipelines):
    import cv2

    pipeline = pipelines["onnxruntime"]
    same = total = 0
    for i in range(8):
        large, _ = render("hazard", 424_242, i, 512, 1024, n_hazards=(1, 3))
        small = cv2.resize(large, (512, 256), interpolation=cv2.INTER_AREA)
        big, little = pipeline.process(large), pipeline.process(small)
        up = cv2.resize(little.labels.astype(np.float32), (1024, 512), interpolation=cv2.INTER_NEAREST)
        little_up = type(little)(little.score, little.mask, up.astype(np.int32), little.components, little.brake,
                                 little.timings_ms)  # fmt: skip
        for a, b in _match(big, little_up):
            total += 1
            same += a.kept == b.kept
    assert total >= 10
    assert same / total >= 0.9


def test_brake_hint_comes_on_for_an_approaching_hazard(pipelines):
    from meta_ood_training.synthetic import drive

    pipeline = AnomalyPipeline(
        pipelines["onnxruntime"].bundle, pipelines["onnxruntime"].backend, PipelineConfig(brake=BrakeConfig())
    )
    hints = [pipeline.process(image).brake for image, _ in drive(3, 12, 256, 512)]
    assert not hints[0].active and hints[-1].active
    assert all(h.available for h in hints)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((64, 64), np.uint8), "shape"),
        (np.zeros((64, 64, 4), np.uint8), "shape"),
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.full((64, 64, 3), np.nan, np.float64), "NaN"),
        ("not an image", "numpy array"),
    ],
)
def test_bad_frames_raise_value_error_and_keep_the_pipeline_usable(pipelines, frame, message):
    pipeline = pipelines["onnxruntime"]
    with pytest.raises(ValueError, match=message):
        pipeline.process(frame)
    image, _ = render("hazard", 1, 0, 128, 256)
    assert pipeline.process(image).score.shape == (128, 256)


def test_nan_logits_from_the_backend_are_a_value_error():
    bundle = load_bundle("default")

    class NaNBackend:
        name, description = "nan", "returns NaN"

        def run(self, batch):
            return {"logits": np.full((1, bundle.num_classes, *batch.shape[2:]), np.nan, np.float32)}

    pipeline = AnomalyPipeline(bundle, NaNBackend())
    with pytest.raises(FaultError, match="non-finite"):
        pipeline.process(np.zeros((64, 64, 3), np.uint8))


def test_backend_selection_errors_name_the_problem(tmp_path):
    bundle = load_bundle("default")
    with pytest.raises(ConfigError, match="unknown backend 'tflite'"):
        create_backend("tflite", bundle)
    with pytest.raises(ConfigError, match="provider 'cuda' is not available"):
        create_backend("onnxruntime", bundle, providers=["cuda"])
    with pytest.raises(ConfigError, match="unknown option"):
        create_backend("onnxruntime", bundle, precision="int8")
    corrupt = tmp_path / "m.onnx"
    corrupt.write_bytes(b"not a graph")
    with pytest.raises(BackendError, match="cannot load"):
        create_backend("onnxruntime", bundle, model=corrupt)
    with pytest.raises(ConfigError, match="not found"):
        create_backend("onnxruntime", bundle, model=tmp_path / "missing.onnx")
    with pytest.raises(ConfigError, match="road_class"):
        AnomalyPipeline.from_bundle(bundle, "onnxruntime", config=PipelineConfig(road_class="runway"))
    with pytest.raises(ConfigError, match="max_p_false_positive"):
        PipelineConfig(max_p_false_positive=0.0)
