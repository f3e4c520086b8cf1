"""``anomaly_node``: the rclpy shell around :class:`~meta_ood_perception.ros.processor.CameraProcessor`.

A plain node (not a lifecycle node): the bundle and backend are loaded, and the pipeline warmed up, in the
constructor, so the node either starts ready or exits with one line naming the bad parameter or model file.

Per camera (``image_topics``): a subscription with queue depth ``qos.depth`` whose callback only stores the newest
frame in a one-slot buffer (a frame replaced before it was processed is counted as dropped, never queued); one
worker thread processes the newest frame of each camera in turn and publishes ``<ns>/anomaly_mask``,
``<ns>/anomaly_score`` (optional), ``<ns>/detections`` (when ``vision_msgs`` is installed), ``<ns>/emergency_brake``
(every output with the input header), and ``~/<camera>/processing_time_ms`` / ``~/<camera>/pipeline_latency_ms``
(``std_msgs/Float64``). A timer publishes ``/diagnostics`` (one status per camera: state, rates, frames received /
processed / rejected / dropped, faults, latency percentiles) and, while a camera has no input for
``input_timeout_s`` or its backend is stalled or failing, a fail-safe ``emergency_brake`` that says perception is
unavailable. A bad frame is logged (throttled), dropped and counted; the node never stops on one. While the domain
monitor (:mod:`meta_ood_perception.domain`) holds a camera's brake hint unavailable (``domain_patience`` frames in
a row outside the bundle's domain), its ``/diagnostics`` status is STALE with a message naming the domain.

Parameters (see :data:`~meta_ood_perception.ros.params.PARAMETERS` and ``config/anomaly_node.param.yaml``) are
validated at start-up. At runtime ``threshold``, ``max_p_false_positive``, ``region``, ``road_class``,
``domain_patience``, ``brake.*``, ``publish_score`` and ``max_rate_hz`` can be changed (validated the same way;
the brake history restarts); the others are rejected with the reason that they need a restart.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..brake import BrakeHint
from ..bundle import DEFAULT_BUNDLE, DEFAULT_BUNDLE_WARNING, Bundle, load_bundle
from ..pipeline import AnomalyPipeline
from ..reports import first_line
from . import conversions as cv
from .params import PARAMETERS, CameraTopics, NodeConfig
from .processor import CameraProcessor, ProcessedFrame
from .scheduler import LatestFrameScheduler

LIVE_PARAMETERS = {
    "threshold", "max_p_false_positive", "region", "road_class", "domain_patience", "publish_score", "max_rate_hz",
}  # fmt: skip
LOG = logging.getLogger(__name__)


@dataclass
class _Camera:
    """One camera: its topics, processor and publishers (scheduling state lives in the scheduler)."""

    topics: CameraTopics
    processor: CameraProcessor
    publishers: dict[str, Any] = field(default_factory=dict)


def _live(name: str) -> bool:
    return name in LIVE_PARAMETERS or name.startswith("brake.")


def make_node_class() -> type:
    """Build the ``AnomalyNode`` class (rclpy is imported here, so that importing this module needs no ROS)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.subscription import Subscription
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Float64, Header

    class AnomalyNode(Node):  # type: ignore[misc]
        """See the module docstring."""

        def __init__(self, node_name: str = "anomaly_node", **kwargs: Any) -> None:
            super().__init__(node_name, **kwargs)
            for name, (default, description) in PARAMETERS.items():
                # dynamic typing: an int given for a float (max_rate_hz: 10) reaches NodeConfig, which accepts it,
                # and a value of a wrong type gets NodeConfig's one-line error instead of an rclpy exception
                descriptor = ParameterDescriptor(description=description, dynamic_typing=True)
                self.declare_parameter(name, default, descriptor)
            self.params = {name: self.get_parameter(name).value for name in PARAMETERS}
            self.config = NodeConfig.from_params(_plain(self.params))  # ValueError names the bad parameter
            self.bundle = bundle = load_bundle(self.config.bundle)
            for line in bundle_warnings(bundle):
                self.get_logger().warning(line)
            from ..backends import create_backend

            self.backend = create_backend(self.config.backend, bundle, **self.config.backend_options)
            self.types = cv.RclpyTypes()
            self.detection_type: Any = None
            try:
                from vision_msgs.msg import Detection2DArray

                self.detection_type = Detection2DArray
            except ImportError:
                self.get_logger().warning("vision_msgs is not installed: detections are not published")
            qos_in = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=self.config.qos_depth,
                reliability=ReliabilityPolicy.BEST_EFFORT if self.config.qos_reliability == "best_effort"
                else ReliabilityPolicy.RELIABLE,
            )  # fmt: skip
            qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
            self.cameras: list[_Camera] = []
            for topics in self.config.cameras:
                pipeline = AnomalyPipeline(bundle, self.backend, self.config.pipeline)
                warm = pipeline.warm_up()
                processor = CameraProcessor(topics, pipeline, self.types, publish_score=self.config.publish_score,
                                            publish_detections=self.detection_type is not None)  # fmt: skip
                cam = _Camera(topics, processor)
                pub = cam.publishers
                pub["anomaly_mask"] = self.create_publisher(Image, topics.outputs["anomaly_mask"], qos_out)
                pub["anomaly_score"] = self.create_publisher(Image, topics.outputs["anomaly_score"], qos_out)
                if self.detection_type is not None:
                    pub["detections"] = self.create_publisher(self.detection_type, topics.outputs["detections"],
                                                              qos_out)  # fmt: skip
                pub["emergency_brake"] = self.create_publisher(
                    DiagnosticArray, topics.outputs["emergency_brake"], qos_out
                )
                private = topics.name.replace("/", "_")
                pub["processing_time_ms"] = self.create_publisher(Float64, f"~/{private}/processing_time_ms", 10)
                pub["pipeline_latency_ms"] = self.create_publisher(Float64, f"~/{private}/pipeline_latency_ms", 10)
                msg_type = CompressedImage if topics.compressed else Image
                callback = self._callback(topics.input)
                self.create_subscription(msg_type, topics.input, callback, qos_in)
                self.cameras.append(cam)
                self.get_logger().info(
                    f"camera {topics.name}: {topics.input} -> {', '.join(sorted(topics.outputs.values()))} "
                    f"(warm-up {warm:.0f} ms)"
                )
            self.diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.header_type = Header
            self.float_type = Float64
            self.by_topic = {cam.topics.input: cam for cam in self.cameras}
            self.sequence: dict[str, int] = {}
            self.lock = threading.Lock()  # guards `pending` (parameter changes for the worker)
            self.pending: NodeConfig | None = None
            self.scheduler = LatestFrameScheduler(list(self.by_topic), self._handle,
                                                  max_rate_hz=self.config.max_rate_hz)  # fmt: skip
            self.scheduler.start()
            self.timer = self.create_timer(self.config.diagnostics_period_s, self._on_timer)
            self.add_on_set_parameters_callback(self._on_set_parameters)
            self.get_logger().info(
                f"ready: bundle {self.config.bundle}, {self.backend.description}, "
                f"threshold {self.cameras[0].processor.pipeline.threshold:.2f}, {len(self.cameras)} camera(s)"
            )

        # -- input and processing --------------------------------------------------------------------------
        def _callback(self, topic: str) -> Any:
            if not hasattr(Subscription, "CallbackType"):  # rclpy before Iron (Humble): no message info

                def plain(msg: Any) -> None:
                    self._on_frame(topic, msg, None)

                return plain

            def callback(msg: Any, info: Any) -> None:  # two arguments: rclpy passes the rmw message info
                self._on_frame(topic, msg, info)

            return callback

        def _on_frame(self, topic: str, msg: Any, info: Any = None) -> None:
            """Subscription callback (with rmw message info): hand the frame to the scheduler, counting the frames
            the subscription queue superseded since the previous one (gaps in the publisher's sequence numbers;
            assumes one publisher per camera topic, as with a camera driver; a restart resets the count)."""
            sequence = info.get("publication_sequence_number") if isinstance(info, dict) else None
            gap = 0
            if sequence is not None:
                last = self.sequence.get(topic)
                if last is not None and sequence > last:
                    gap = sequence - last - 1
                self.sequence[topic] = sequence
            self.scheduler.submit(topic, msg, gap)

        def _handle(self, topic: str, msg: Any, received: float) -> ProcessedFrame:
            """Worker thread: process one frame and publish its outputs."""
            cam = self.by_topic[topic]
            with self.lock:
                pending, self.pending = self.pending, None
            if pending is not None:
                for c in self.cameras:
                    c.processor.pipeline.configure(pending.pipeline)
                    c.processor.publish_score = pending.publish_score
            if self.scheduler.take_reset(topic):
                cam.processor.pipeline.reset()
            frame = cam.processor.process(msg)
            for name, out in frame.messages.items():
                publisher = cam.publishers.get(name)
                if publisher is not None:
                    publisher.publish(out)
            if frame.error is not None:
                self.get_logger().warning(f"{topic}: frame dropped: {frame.error.reason}", throttle_duration_sec=1.0)
                return frame
            cam.publishers["processing_time_ms"].publish(self.float_type(data=(time.monotonic() - received) * 1e3))
            if frame.stamp_ns is not None:
                latency = (self.get_clock().now().nanoseconds - frame.stamp_ns) / 1e6
                cam.publishers["pipeline_latency_ms"].publish(self.float_type(data=latency))
            return frame

        # -- diagnostics and the fail-safe heartbeat ---------------------------------------------------------
        def _on_timer(self) -> None:
            header = self.header_type(stamp=self.get_clock().now().to_msg(), frame_id="")
            statuses = []
            for cam in self.cameras:
                try:
                    level, message, reason = self.scheduler.health(cam.topics.input, self.config.input_timeout_s)
                    if reason is not None:
                        hint = BrakeHint(False, 1.0, f"perception unavailable: {reason}", available=False)
                        cam.publishers["emergency_brake"].publish(cv.brake_to_msg(hint, header, self.types))
                    statuses.append(self._status(cam, level, message))
                except Exception as err:  # the timer must survive anything: it carries the fail-safe heartbeat
                    self.get_logger().error(f"diagnostics of {cam.topics.input} failed: {err}",
                                            throttle_duration_sec=5.0)  # fmt: skip
            self.diagnostics.publish(cv.diagnostic_array(header, statuses, self.types))

        def _status(self, cam: _Camera, level: int, message: str) -> Any:
            state = self.scheduler.cameras[cam.topics.input]
            stats = state.stats
            values: dict[str, Any] = {
                "state": ["OK", "WARN", "ERROR", "STALE"][level], "input_topic": cam.topics.input,
                "input_rate_hz": self.scheduler.input_rate(cam.topics.input), "frames_received": stats.frames_in,
                "frames_processed": stats.frames_processed, "frames_rejected": stats.frames_rejected,
                "frames_dropped": stats.frames_dropped, "frames_superseded": stats.frames_superseded,
                "faults": stats.faults, "last_error": state.last_error,
                "backend": self.backend.description, "frames_out_of_domain": stats.frames_out_of_domain,
                "domain": "off" if self.bundle.domain is None else "outside" if stats.domain_unavailable else "in",
            }  # fmt: skip
            for stage, q in stats.percentiles().items():
                if stage in ("inference", "total"):
                    values.update({f"latency_{stage}_{k}_ms": v for k, v in q.items() if k != "mean"})
            waited = list(state.latency_s)  # receipt → outputs published, including the wait in the slot
            if waited:
                p50, p99 = np.percentile(np.asarray(waited) * 1e3, [50, 99])
                values.update(latency_receipt_p50_ms=float(p50), latency_receipt_p99_ms=float(p99))
            return cv.diagnostic_status(self.types, level, f"{self.get_name()}: {cam.topics.name}", message,
                                        cam.topics.name, values)  # fmt: skip

        # -- parameters at runtime ---------------------------------------------------------------------------
        def _on_set_parameters(self, changes: Sequence[Any]) -> Any:
            updated = dict(self.params)
            ours = [p for p in changes if p.name in PARAMETERS]  # rclpy's own (use_sim_time, ...) pass through
            if not ours:
                return SetParametersResult(successful=True)
            for p in ours:
                if not _live(p.name) and p.value != self.params[p.name]:
                    return SetParametersResult(
                        successful=False, reason=f"{p.name} takes effect only at start-up: restart the node"
                    )
                updated[p.name] = p.value
            try:
                config = NodeConfig.from_params(_plain(updated))
                try:
                    config.pipeline.check_classes(self.bundle.class_names)
                except ValueError as err:
                    raise ValueError(f"parameter {err}") from None
            except ValueError as err:
                self.get_logger().warning(f"rejected parameter change: {err}")
                return SetParametersResult(successful=False, reason=str(err))
            with self.lock:  # applied by the worker before its next frame (never blocks this executor thread)
                self.pending = config
                self.scheduler.max_rate_hz = config.max_rate_hz
                self.params, self.config = updated, config
            self.get_logger().info(f"parameters changed: {', '.join(p.name for p in ours)}")
            return SetParametersResult(successful=True)

        def destroy_node(self) -> None:
            self.scheduler.stop()
            super().destroy_node()

    return AnomalyNode


def bundle_warnings(bundle: Bundle) -> list[str]:
    """What the node logs once at load time about ``bundle``: that the embedded default bundle is a demonstrator of
    the synthetic world; that a bundle without a domain calibration runs with the domain monitor off is said once by
    its :class:`~meta_ood_perception.pipeline.AnomalyPipeline`."""
    lines = []
    if bundle.root.resolve() == DEFAULT_BUNDLE.resolve():
        lines.append(DEFAULT_BUNDLE_WARNING)
    return lines


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Array parameters come from rclpy as array.array / lists; NodeConfig wants lists."""
    return {k: list(v) if not isinstance(v, str | bytes | bool | int | float) else v for k, v in params.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``anomaly_node``: start, spin until shutdown; a bad parameter or bundle exits with status 2."""
    import rclpy
    from rclpy.exceptions import InvalidTopicNameException, ParameterException
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    node = None
    try:
        try:
            node = make_node_class()()
        except (ValueError, ParameterException, InvalidTopicNameException) as err:  # one line, no traceback
            rclpy.logging.get_logger("anomaly_node").fatal(f"cannot start: {first_line(err)}")
            return 2
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
