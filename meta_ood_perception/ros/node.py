"""``anomaly_node``: the rclpy shell around :class:`~meta_ood_perception.ros.processor.CameraProcessor`.

:class:`AnomalyNode` is a plain node: the bundle and backend are loaded, and the pipeline warmed up, in the
constructor, so the node either starts ready or exits with one line naming the bad parameter or model file.
:class:`~meta_ood_perception.ros.lifecycle_node.AnomalyLifecycleNode` (executable ``anomaly_lifecycle_node``) hosts
the same :class:`Perception` in a managed lifecycle (configure loads, activate warms up and starts).

Per camera (``image_topics``): a subscription with queue depth ``qos.depth`` whose callback only stores the newest
frame in a one-slot buffer (a frame replaced before it was processed is counted as dropped, never queued); one
worker thread processes the newest frame of each camera in turn and publishes, every output with the input header:

- ``<ns>/anomaly_mask`` (mono8), ``<ns>/anomaly_score`` (32FC1, optional), ``<ns>/detections`` (when
  ``vision_msgs`` is installed) with the output QoS (``output_qos.reliability``, ``output_qos.depth``);
- ``<ns>/anomaly_overlay`` (rgb8, the human view: kept components, boxes with P(FP), brake banner, corridor), built
  only while somebody subscribes;
- ``<ns>/emergency_brake`` (``diagnostic_msgs/DiagnosticArray``, one status): RELIABLE, TRANSIENT_LOCAL depth 1 (a
  late subscriber gets the current hint at once), a **deadline** of 2 × ``diagnostics_period_s`` and AUTOMATIC
  liveliness with the same lease, so a consumer that requests a deadline learns when the hint goes silent. The node
  keeps the deadline: a diagnostics-timer heartbeat republishes the last hint of a camera that published nothing
  for one period (e.g. under ``max_rate_hz``), a fail-safe "perception unavailable" hint while a camera has no
  input for ``input_timeout_s``, before its first frame, or while its backend is stalled or failing;
- ``~/<camera>/processing_time_ms`` / ``~/<camera>/pipeline_latency_ms`` (``std_msgs/Float64``).

A timer publishes ``/diagnostics`` (one status per camera: state, rates, frames received / processed / rejected /
dropped, faults, latency percentiles). A bad frame is logged (throttled), dropped and counted; the node never stops
on one. While the domain monitor (:mod:`meta_ood_perception.domain`) holds a camera's brake hint unavailable, its
``/diagnostics`` status is STALE with a message naming the domain.

Parameters (:mod:`meta_ood_perception.ros.params`, one table) are declared with their descriptions, ranges and
``read_only`` flags and validated at start-up; the live ones (``LIVE_PARAMETERS``) can be changed at runtime
(validated the same way; the brake history restarts).

Shutdown: SIGINT / SIGTERM make rclpy shut its context down; the worker may be publishing a frame at that moment:
a publish that fails because the context is gone ends that frame quietly (not a fault), ``main`` stops the worker
and exits 0.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from rclpy.utilities import try_shutdown
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64, Header

from ..backends import Backend, create_backend
from ..bundle import Bundle, bundle_warnings, load_bundle
from ..errors import MetaOodError
from ..pipeline import AnomalyPipeline
from ..reports import first_line
from . import conversions as cv
from .descriptors import declare_parameters
from .params import LIVE_PARAMETERS, PARAMETERS, CameraTopics, NodeConfig
from .processor import CameraProcessor, ProcessedFrame, failure_reason
from .scheduler import LatestFrameScheduler

LOG = logging.getLogger(__name__)

#: Exceptions that stop the node at start-up with one line (no traceback) and exit status 2.
STARTUP_ERRORS = (MetaOodError, ParameterException, InvalidTopicNameException)

#: ``publisher(message type, topic, qos)``: ``Node.create_publisher`` or ``LifecycleNode.create_lifecycle_publisher``.
PublisherFactory = Callable[[Any, str, QoSProfile], Publisher]


@dataclass
class _Camera:
    """One camera: its topics, processor, publishers and the last brake message (for the heartbeat)."""

    topics: CameraTopics
    processor: CameraProcessor
    publishers: dict[str, Publisher] = field(default_factory=dict)
    last_brake: Any = None  # the last emergency_brake message published (worker or timer thread)
    last_brake_at: float = 0.0  # time.monotonic() of that publication
    frames_seen: bool = False


def _reliability(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.BEST_EFFORT if name == "best_effort" else ReliabilityPolicy.RELIABLE


def brake_qos(heartbeat_s: float) -> QoSProfile:
    """QoS of ``<ns>/emergency_brake``: RELIABLE, TRANSIENT_LOCAL, KEEP_LAST 1, deadline and AUTOMATIC liveliness
    lease of 2 × the heartbeat period ``heartbeat_s`` (seconds)."""
    period = Duration(nanoseconds=int(2e9 * heartbeat_s))
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL, deadline=period,
        liveliness=LivelinessPolicy.AUTOMATIC, liveliness_lease_duration=period,
    )  # fmt: skip


class Perception:
    """The node's work, whichever node hosts it (plain or lifecycle).

    Construction (= *configure*): validates ``params`` into a :class:`NodeConfig`, loads the bundle and backend,
    builds one processor and the publishers per camera. :meth:`activate` warms the pipelines up, subscribes, starts
    the worker and the diagnostics timer; :meth:`deactivate` undoes that; :meth:`close` stops everything.

    Args:
        node: the hosting node. params: ``{parameter name: value}`` as declared. publisher: how to create publishers.

    Raises:
        MetaOodError: a bad parameter, bundle or backend (one line).
    """

    def __init__(self, node: Node, params: dict[str, Any], publisher: PublisherFactory) -> None:
        self.node = node
        self.params = dict(params)
        self.config = NodeConfig.from_params(_plain(self.params))
        self.bundle: Bundle = load_bundle(self.config.bundle)
        for line in bundle_warnings(self.bundle):
            node.get_logger().warning(line)
        self.backend: Backend = create_backend(self.config.backend, self.bundle, **self.config.backend_options)
        self.types = cv.RclpyTypes()
        self.detection_type: Any = None
        try:
            from vision_msgs.msg import Detection2DArray

            self.detection_type = Detection2DArray
        except ImportError:
            node.get_logger().warning("vision_msgs is not installed: detections are not published")
        qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.config.output_qos_depth,
                             reliability=_reliability(self.config.output_qos_reliability))  # fmt: skip
        qos_brake = brake_qos(self.config.diagnostics_period_s)
        self.cameras: list[_Camera] = []
        for topics in self.config.cameras:
            pipeline = AnomalyPipeline(self.bundle, self.backend, self.config.pipeline)
            processor = CameraProcessor(topics, pipeline, self.types, publish_score=self.config.publish_score,
                                        publish_detections=self.detection_type is not None,
                                        limits=self.config.frame_limits)  # fmt: skip
            cam = _Camera(topics, processor)
            pub = cam.publishers
            for name in ("anomaly_mask", "anomaly_score", "anomaly_overlay"):
                pub[name] = publisher(Image, topics.outputs[name], qos_out)
            if self.detection_type is not None:
                pub["detections"] = publisher(self.detection_type, topics.outputs["detections"], qos_out)
            pub["emergency_brake"] = publisher(DiagnosticArray, topics.outputs["emergency_brake"], qos_brake)
            private = topics.name.replace("/", "_")
            pub["processing_time_ms"] = publisher(Float64, f"~/{private}/processing_time_ms", QoSProfile(depth=10))
            pub["pipeline_latency_ms"] = publisher(Float64, f"~/{private}/pipeline_latency_ms", QoSProfile(depth=10))
            self.cameras.append(cam)
        self.diagnostics = publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self.by_topic = {cam.topics.input: cam for cam in self.cameras}
        self.sequence: dict[str, int] = {}
        self.lock = threading.Lock()  # guards `pending` (parameter changes for the worker)
        self.pending: NodeConfig | None = None
        self.scheduler: LatestFrameScheduler | None = None
        self.subscriptions: list[Subscription] = []
        self.timer: Timer | None = None
        self.closed = False
        node.add_on_set_parameters_callback(self._on_set_parameters)

    # -- activation ------------------------------------------------------------------------------------------------
    def activate(self) -> None:
        """Warm the pipelines up, subscribe to the cameras, start the worker and the diagnostics timer."""
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.config.qos_depth,
                            reliability=_reliability(self.config.qos_reliability))  # fmt: skip
        for cam in self.cameras:
            warm = cam.processor.pipeline.warm_up()
            msg_type = CompressedImage if cam.topics.compressed else Image
            self.subscriptions.append(
                self.node.create_subscription(msg_type, cam.topics.input, self._callback(cam.topics.input), qos_in)
            )
            cam.last_brake_at = time.monotonic()
            self.node.get_logger().info(
                f"camera {cam.topics.name}: {cam.topics.input} -> {', '.join(sorted(cam.topics.outputs.values()))} "
                f"(warm-up {warm:.0f} ms)"
            )
        self.scheduler = LatestFrameScheduler(list(self.by_topic), self._handle, max_rate_hz=self.config.max_rate_hz)
        self.scheduler.start()
        self.timer = self.node.create_timer(self.config.diagnostics_period_s, self._on_timer)
        self.node.get_logger().info(
            f"ready: bundle {self.config.bundle}, {self.backend.description}, "
            f"threshold {self.cameras[0].processor.pipeline.threshold:.2f}, {len(self.cameras)} camera(s)"
        )

    def deactivate(self, reason: str = "node inactive") -> None:
        """Stop processing: unsubscribe, stop the worker (after its current frame) and the timer; a last
        "perception unavailable" brake hint says why (while the context still runs)."""
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self.subscriptions.clear()
        if self.timer is not None:
            self.node.destroy_timer(self.timer)
            self.timer = None
        if self.scheduler is not None:
            self.scheduler.stop(timeout=1.5)
            self.scheduler = None
        if self.node.context.ok():
            header = Header(stamp=self.node.get_clock().now().to_msg(), frame_id="")
            for cam in self.cameras:
                frame = cam.processor.unavailable(header, reason, reset=False)
                self._publish(cam.publishers["emergency_brake"], frame.messages["emergency_brake"])

    def close(self) -> None:
        """Stop the worker (at most ~1.5 s for a frame in flight); safe to call twice and after the context ended."""
        if self.scheduler is not None:
            self.scheduler.stop(timeout=1.5)
            self.scheduler = None
        if not self.closed:  # a lifecycle node configured again must not keep validating against this instance
            self.closed = True
            self.node.remove_on_set_parameters_callback(self._on_set_parameters)

    # -- input and processing --------------------------------------------------------------------------------------
    def _callback(self, topic: str) -> Callable[[Any], None]:
        def callback(msg: Any, info: Any) -> None:  # two arguments: rclpy passes the rmw message info
            self._on_frame(topic, msg, info)

        # rclpy inspects the signature and passes (message, message info) to a two-argument callback (documented
        # since Iron); its annotation of create_subscription names only the one-argument form
        return cast(Callable[[Any], None], callback)

    def _on_frame(self, topic: str, msg: Any, info: Any = None) -> None:
        """Subscription callback: hand the frame to the scheduler, counting the frames the subscription queue
        superseded since the previous one (gaps in the publisher's sequence numbers; assumes one publisher per
        camera topic, as with a camera driver; a restart resets the count)."""
        sequence = info.get("publication_sequence_number") if isinstance(info, dict) else None
        gap = 0
        if sequence is not None:
            last = self.sequence.get(topic)
            if last is not None and sequence > last:
                gap = sequence - last - 1
            self.sequence[topic] = sequence
        if self.scheduler is not None:
            self.scheduler.submit(topic, msg, gap)

    def _publish(self, publisher: Publisher, msg: Any) -> bool:
        """Publish; False (quietly) when the context is already shut down (SIGINT while a frame was in flight)."""
        try:
            publisher.publish(msg)
        except Exception:
            if self.node.context.ok():
                raise
            return False
        return True

    def _handle(self, topic: str, msg: Any, received: float) -> ProcessedFrame:
        """Worker thread: process one frame and publish its outputs."""
        cam = self.by_topic[topic]
        with self.lock:
            pending, self.pending = self.pending, None
        if pending is not None:
            for c in self.cameras:
                c.processor.pipeline.configure(pending.pipeline)
                c.processor.publish_score = pending.publish_score
        if self.scheduler is not None and self.scheduler.take_reset(topic):
            cam.processor.pipeline.reset()
        frame = cam.processor.process(msg)
        cam.frames_seen = True
        for name, out in frame.messages.items():
            publisher = cam.publishers.get(name)
            if publisher is not None and not self._publish(publisher, out):
                return frame  # shutting down: the outputs of this frame cannot be delivered
            if name == "emergency_brake":
                cam.last_brake, cam.last_brake_at = out, time.monotonic()
        overlay = cam.publishers["anomaly_overlay"]
        if frame.image is not None and frame.stamp_ns is not None and overlay.get_subscription_count() > 0:
            rgb = cam.processor.overlay(frame)
            if rgb is not None:
                self._publish(overlay, cv.rgb_to_image(rgb, msg.header, self.types))
        if frame.error is not None:
            self.node.get_logger().warning(f"{topic}: frame dropped: {frame.error.reason}", throttle_duration_sec=1.0)
            return frame
        self._publish(cam.publishers["processing_time_ms"], Float64(data=(time.monotonic() - received) * 1e3))
        if frame.stamp_ns is not None:
            latency = (self.node.get_clock().now().nanoseconds - frame.stamp_ns) / 1e6
            self._publish(cam.publishers["pipeline_latency_ms"], Float64(data=latency))
        return frame

    # -- diagnostics and the heartbeat -----------------------------------------------------------------------------
    def _on_timer(self) -> None:
        if self.scheduler is None:
            return
        now = self.node.get_clock().now().to_msg()
        header = Header(stamp=now, frame_id="")
        statuses = []
        period = self.config.diagnostics_period_s
        for cam in self.cameras:
            try:
                level, message, reason = self.scheduler.health(cam.topics.input, self.config.input_timeout_s)
                if reason is None and not cam.frames_seen:  # never "clear" before the camera's first frame
                    level, message, reason = cv.STALE, "waiting for the first frame", "waiting for the first frame"
                brake = cam.publishers["emergency_brake"]
                if reason is not None:
                    # reset=False: the worker restarts the history itself (scheduler.take_reset), never this thread
                    frame = cam.processor.unavailable(header, reason, reset=False)
                    self._publish(brake, frame.messages["emergency_brake"])
                    cam.last_brake_at = time.monotonic()
                elif cam.last_brake is not None and time.monotonic() - cam.last_brake_at >= period:
                    self._publish(brake, cam.last_brake)  # keep the deadline; its stamp tells the hint's age
                    cam.last_brake_at = time.monotonic()
                statuses.append(self._status(cam, level, message))
            except Exception as err:  # the timer must survive anything: it carries the fail-safe heartbeat
                self.node.get_logger().error(f"diagnostics of {cam.topics.input} failed: {failure_reason(err)}",
                                             throttle_duration_sec=5.0)  # fmt: skip
        self._publish(self.diagnostics, cv.diagnostic_array(header, statuses, self.types))

    def _status(self, cam: _Camera, level: int, message: str) -> Any:
        assert self.scheduler is not None
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
        return cv.diagnostic_status(self.types, level, f"{self.node.get_name()}: {cam.topics.name}", message,
                                    cam.topics.name, values)  # fmt: skip

    # -- parameters at runtime -------------------------------------------------------------------------------------
    def _on_set_parameters(self, changes: Sequence[Parameter]) -> SetParametersResult:
        updated = dict(self.params)
        ours = [p for p in changes if p.name in PARAMETERS]  # rclpy's own (use_sim_time, ...) pass through
        if not ours:
            return SetParametersResult(successful=True)
        for p in ours:
            if p.name not in LIVE_PARAMETERS and p.value != self.params[p.name]:
                return SetParametersResult(
                    successful=False, reason=f"{p.name} takes effect only at start-up: restart the node"
                )
            updated[p.name] = p.value
        try:
            config = NodeConfig.from_params(_plain(updated))
            config.pipeline.check_classes(self.bundle.class_names)
        except MetaOodError as err:
            self.node.get_logger().warning(f"rejected parameter change: {first_line(err)}")
            return SetParametersResult(successful=False, reason=first_line(err))
        with self.lock:  # applied by the worker before its next frame (never blocks this executor thread)
            self.pending = config
            if self.scheduler is not None:
                self.scheduler.max_rate_hz = config.max_rate_hz
            self.params, self.config = updated, config
        self.node.get_logger().info(f"parameters changed: {', '.join(p.name for p in ours)}")
        return SetParametersResult(successful=True)


class AnomalyNode(Node):
    """The plain node: configured and activated in the constructor (see the module docstring).

    Args:
        node_name: the node's name (``-r __node:=`` remaps it). kwargs: passed to :class:`rclpy.node.Node`
            (e.g. ``parameter_overrides``).

    Raises:
        MetaOodError, ParameterException: a bad parameter, bundle or backend.
    """

    def __init__(self, node_name: str = "anomaly_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        try:
            self.perception = Perception(self, declare_parameters(self), self.create_publisher)
        except BaseException:
            self.destroy_node()
            raise
        self.config = self.perception.config
        if self.config.build_only:  # trt_build_only: the backend is loaded (its engine built); one warm-up run
            self.perception.cameras[0].processor.pipeline.warm_up()
        else:
            self.perception.activate()

    @property
    def cameras(self) -> list[_Camera]:
        """The cameras (topics, processor, publishers)."""
        return self.perception.cameras

    @property
    def scheduler(self) -> LatestFrameScheduler | None:
        """The newest-frame scheduler (None before activation and after shutdown)."""
        return self.perception.scheduler

    def destroy_node(self) -> None:
        """Stop the worker, then destroy the node."""
        perception: Perception | None = getattr(self, "perception", None)
        if perception is not None:
            perception.close()
        Node.destroy_node(self)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    """Array parameters come from rclpy as array.array / lists; NodeConfig wants lists."""
    return {k: list(v) if not isinstance(v, str | bytes | bool | int | float) else v for k, v in params.items()}


def run(make: Callable[[], Node], argv: Sequence[str] | None, name: str) -> int:
    """Start a node built by ``make``, spin until SIGINT / SIGTERM, shut down cleanly.

    Returns:
        0 after a shutdown or a finished build-only run, 2 when the node cannot start (one line, no traceback).
    """
    rclpy.init(args=list(argv) if argv is not None else sys.argv)
    node: Node | None = None
    try:
        try:
            node = make()
        except STARTUP_ERRORS as err:  # one line, no traceback
            rclpy.logging.get_logger(name).fatal(f"cannot start: {first_line(err)}")
            return 2
        if isinstance(node, AnomalyNode) and node.config.build_only:
            rclpy.logging.get_logger(name).info(f"build only: {node.perception.backend.description} is ready; exiting")
            return 0
        try:
            rclpy.spin(node)
        except Exception:
            # the signal handler shut the context down while the executor was building its next wait set (rclpy
            # raises RCLError "the given context is not valid" then, not ExternalShutdownException): a shutdown
            if node.context.ok():
                raise
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        try_shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``anomaly_node``: start, spin until shutdown; a bad parameter or bundle exits with status 2."""
    return run(AnomalyNode, argv, "anomaly_node")


if __name__ == "__main__":
    sys.exit(main())
