"""Bad network output is a one-line FaultError (a fault for the node), an oversized frame a one-line InputError (a
rejected frame); neither is ever "clear"."""

from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.backends import BackendError
from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.errors import BundleError, FaultError, InputError
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics
from meta_ood_perception.ros.processor import CameraProcessor

BUNDLE = load_bundle("default")
SIZE = BUNDLE.metric_size  # in-graph heat maps are used when they come at the metric grid's size


class Graph:
    """A backend returning in-graph heat maps at the metric grid's size (as a GPU engine exported with
    --heatmaps at that size)."""

    name, description = "graph", "fake graph backend"

    def __init__(self, **outputs):
        self.outputs = outputs

    def run(self, batch):
        c = BUNDLE.num_classes
        base = {
            "logits": np.zeros((1, c, 8, 8), np.float32),
            "probs": np.full((1, c, *SIZE), 1.0 / c, np.float32),
            "score": np.ones((1, *SIZE), np.float32),
        }
        return {**base, **self.outputs}


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"score": np.full((1, *SIZE), np.nan, np.float32)}, "non-finite score"),
        ({"probs": np.full((1, 5, *SIZE), 0.2, np.float32)}, "network output 'probs' has shape"),
        ({"probs": np.full((1, BUNDLE.num_classes, *SIZE), np.inf, np.float32)}, "non-finite probabilities"),
        (
            {"logits": np.full((1, BUNDLE.num_classes, 8, 8), np.nan, np.float32), "probs": None, "score": None},
            "non-finite logits",
        ),
    ],
)
def test_bad_network_output_is_a_fault_not_a_clear_frame(outputs, message):
    clean = {k: v for k, v in outputs.items() if v is not None}
    backend = Graph(**clean)
    if outputs.get("probs", 0) is None:  # a plain graph: logits only
        backend.run = lambda batch: {"logits": clean["logits"]}
    pipeline = AnomalyPipeline(BUNDLE, backend)
    with pytest.raises(FaultError, match=message):
        pipeline.process(np.zeros((*SIZE, 3), np.uint8))
    types = cv.RosbagsTypes()
    header = cv.make_header(types, 10**9, "cam")
    msg = types.get("sensor_msgs/msg/Image")(header=header, height=SIZE[0], width=SIZE[1], encoding="rgb8",
                                             is_bigendian=0, step=SIZE[1] * 3,
                                             data=np.zeros(SIZE[0] * SIZE[1] * 3, np.uint8))  # fmt: skip
    frame = CameraProcessor(camera_topics("/cam/image_raw"), pipeline, types).process(msg)
    assert frame.error is not None and frame.error.kind == "fault" and message in frame.error.reason
    assert not cv.msg_to_brake(frame.messages["emergency_brake"])["available"]


def test_onnxruntime_run_failures_are_backend_errors(tmp_path):
    from meta_ood_perception.backends.onnxruntime_backend import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend.from_bundle(BUNDLE)
    with pytest.raises(BackendError, match="run failed"):
        backend.run(np.zeros((1, 4, 8, 8), np.float32))  # 4 channels: ONNX Runtime refuses it


def test_torch_run_failures_are_backend_errors():
    from meta_ood_perception.backends import create_backend

    backend = create_backend("torch", BUNDLE)
    with pytest.raises(BackendError, match="torch backend: run failed") as err:
        backend.run(np.zeros((1, 4, 8, 8), np.float32))  # 4 channels: the first convolution refuses it
    assert isinstance(err.value, FaultError) and isinstance(err.value.__cause__, RuntimeError)


def test_a_graph_of_another_fixed_size_is_refused(tmp_path):
    from meta_ood_training.export import export_onnx, model_from_bundle

    path = tmp_path / "fixed.onnx"
    model, classes = model_from_bundle(BUNDLE)
    export_onnx(model, path, num_classes=classes, height=64, width=96)
    from meta_ood_perception.backends import create_backend

    h, w = BUNDLE.input_size
    with pytest.raises(BundleError, match=f"the bundle runs the network at {h}×{w}"):
        create_backend("onnxruntime", BUNDLE, model=str(path))


def test_oversized_frames_are_refused_before_any_allocation():
    pipeline = AnomalyPipeline.from_bundle("default")
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (7000, 7000, 3))
    with pytest.raises(InputError, match="36000000-pixel limit"):
        pipeline.process(huge)
