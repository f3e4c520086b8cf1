"""CameraProcessor sorts failures by the error's type (never by its text) and times its stages with the stopwatch."""

from __future__ import annotations

import numpy as np
import pytest

from meta_ood_perception.backends import BackendError
from meta_ood_perception.bundle import DEFAULT_BUNDLE, load_bundle
from meta_ood_perception.errors import ConfigError, FaultError, InputError
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.params import camera_topics
from meta_ood_perception.ros.processor import LATENCY_STAGES, CameraProcessor
from meta_ood_training.synthetic import drive

pytestmark = pytest.mark.skipif(not DEFAULT_BUNDLE.exists(), reason="the default bundle is not built in this checkout")

T = cv.RosbagsTypes()
TOPIC = "/cam/front/image_raw"
PIXELS = next(iter(drive(3, 1, 64, 128)))[0]


def image_msg(stamp: int = 10**9):
    h, w = PIXELS.shape[:2]
    return T.get("sensor_msgs/msg/Image")(header=cv.make_header(T, stamp, "cam"), height=h, width=w, encoding="rgb8",
                                          is_bigendian=0, step=w * 3, data=PIXELS.reshape(-1))  # fmt: skip


class Raising:
    """A backend that raises ``error`` on every run."""

    name, description = "raising", "raises on every run"

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def run(self, batch):
        raise self.error


def processor_with(backend) -> tuple[CameraProcessor, list[int]]:
    """A processor over ``backend`` and the list its pipeline's reset() calls are counted in."""
    pipeline = AnomalyPipeline(load_bundle("default"), backend)
    resets: list[int] = []
    original = pipeline.reset

    def counting_reset() -> None:
        resets.append(1)
        original()

    pipeline.reset = counting_reset  # type: ignore[method-assign]
    return CameraProcessor(camera_topics(TOPIC), pipeline, T), resets


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (InputError("frame of 3×3 pixels is too small"), "input", "frame of 3×3 pixels is too small"),
        (ConfigError("road_class 'runway' is unknown"), "input", "road_class 'runway' is unknown"),
        # the message mentions network output, the type says input: the type decides (no text sorting any more)
        (InputError("network output of a frame the camera marked invalid"), "input", "network output of a frame"),
        (FaultError("the GPU fell off the bus"), "fault", "the GPU fell off the bus"),
        (BackendError("torch backend: run failed: CUDA 700"), "fault", "torch backend: run failed: CUDA 700"),
        # bugs and foreign types are faults named by their type, never bad input (a bare ValueError was "input")
        (ValueError("operands could not be broadcast together"), "fault", "backend failure: ValueError: operands"),
        (KeyError("logits"), "fault", "backend failure: KeyError: 'logits'"),
        (RuntimeError("CUDA error: illegal memory access"), "fault", "backend failure: RuntimeError: CUDA error"),
    ],
)
def test_pipeline_failures_are_sorted_by_type(error, kind, reason):
    processor, resets = processor_with(Raising(error))
    frame = processor.process(image_msg())
    assert frame.error is not None and frame.error.kind == kind and reason in frame.error.reason
    assert frame.result is None and frame.timings_ms == {} and set(frame.messages) == {"emergency_brake"}
    assert not cv.msg_to_brake(frame.messages["emergency_brake"])["available"]
    assert len(resets) == (1 if kind == "fault" else 0)  # a fault restarts the history, a bad frame does not


def test_decode_failures_bad_messages_are_input_unexpected_errors_are_faults(monkeypatch):
    processor, _ = processor_with(Raising(AssertionError("not reached")))
    no_data = T.get("sensor_msgs/msg/Image")(header=cv.make_header(T, 5, "cam"), height=4, width=4, encoding="rgb8",
                                             is_bigendian=0, step=12, data=None)  # fmt: skip
    frame = processor.process(no_data)
    assert frame.error.kind == "input" and frame.error.reason.startswith("bad frame: ")

    def broken(*args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cv, "message_to_rgb", broken)
    frame = processor.process(image_msg())
    assert frame.error.kind == "fault" and frame.error.reason == "decode failure: ZeroDivisionError: division by zero"
    assert frame.stamp_ns == 10**9 and "emergency_brake" in frame.messages


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (TypeError("header.stamp must be a Time"), "input", "cannot build the outputs: header.stamp must be a Time"),
        (MemoryError("cannot allocate"), "fault", "encode failure: MemoryError: cannot allocate"),
    ],
)
def test_encode_failures(monkeypatch, error, kind, reason):
    pipeline = AnomalyPipeline.from_bundle("default")
    processor = CameraProcessor(camera_topics(TOPIC), pipeline, T)

    def broken(*args):
        raise error

    monkeypatch.setattr(cv, "mask_to_msg", broken)
    frame = processor.process(image_msg())
    assert frame.error.kind == kind and frame.error.reason == reason


def test_timings_cover_every_stage_in_order_within_the_total():
    processor = CameraProcessor(camera_topics(TOPIC), AnomalyPipeline.from_bundle("default"), T)
    frame = processor.process(image_msg())
    assert frame.error is None
    assert tuple(frame.timings_ms) == LATENCY_STAGES
    stages = [ms for name, ms in frame.timings_ms.items() if name != "total"]
    assert all(ms >= 0.0 for ms in stages)
    # every stage is a disjoint interval of the same clock inside the processor's total
    assert sum(stages) <= frame.timings_ms["total"] * (1 + 1e-9)
    assert frame.timings_ms["inference"] == frame.result.timings_ms["inference"]
    assert np.isclose(sum(frame.result.timings_ms[s] for s in frame.result.timings_ms if s != "total"),
                      sum(stages) - frame.timings_ms["decode"] - frame.timings_ms["encode"])  # fmt: skip
