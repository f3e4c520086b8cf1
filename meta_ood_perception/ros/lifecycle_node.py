"""``anomaly_lifecycle_node``: the anomaly node as a managed (lifecycle) node, rclpy's lifecycle in Jazzy.

The same :class:`~meta_ood_perception.ros.node.Perception` as ``anomaly_node``, driven by the standard transitions
(``ros2 lifecycle set /anomaly_node configure`` …, or a lifecycle manager):

- *configure*: validate the parameters, load the bundle and backend, create the (lifecycle) publishers; a bad
  parameter or bundle fails the transition with one line in the log (the node stays *unconfigured*).
- *activate*: enable the publishers, warm the pipelines up (the first frame pays no start-up cost), subscribe to
  the cameras, start the worker and the diagnostics / brake heartbeat timer.
- *deactivate*: unsubscribe, stop the worker after its current frame, publish one last "perception unavailable:
  node inactive" brake hint, disable the publishers.
- *cleanup* / *shutdown*: release the pipeline and backend.

Parameters are declared (with descriptions, ranges, ``read_only``) when the node is created, so a parameter file
or ``-p`` overrides apply before *configure*.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import rclpy.logging
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, TransitionCallbackReturn

from ..reports import first_line
from .descriptors import declare_parameters
from .node import STARTUP_ERRORS, Perception, run


class AnomalyLifecycleNode(LifecycleNode):
    """See the module docstring.

    Args:
        node_name: the node's name. kwargs: passed to :class:`rclpy.lifecycle.LifecycleNode`.
    """

    def __init__(self, node_name: str = "anomaly_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = declare_parameters(self)
        self.perception: Perception | None = None

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the bundle and backend, create the publishers."""
        params = {name: self.get_parameter(name).value for name in self.params}
        try:
            self.perception = Perception(self, params, self.create_lifecycle_publisher)
        except STARTUP_ERRORS as err:
            rclpy.logging.get_logger(self.get_name()).error(f"cannot configure: {first_line(err)}")  # unconfigured
            return TransitionCallbackReturn.FAILURE
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the publishers, warm up, subscribe, start the worker."""
        result = super().on_activate(state)
        if self.perception is None:
            return TransitionCallbackReturn.FAILURE
        self.perception.activate()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop processing, say so on the brake topics, disable the publishers."""
        if self.perception is not None:
            self.perception.deactivate("node inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the pipeline and backend."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything."""
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything; the node returns to *unconfigured*."""
        self._release()
        return super().on_error(state)

    def _release(self) -> None:
        if self.perception is not None:
            if self.perception.scheduler is not None:
                self.perception.deactivate("node shut down")
            self.perception.close()
            publishers = [p for cam in self.perception.cameras for p in cam.publishers.values()]
            for publisher in [*publishers, self.perception.diagnostics]:
                if isinstance(publisher, LifecyclePublisher):
                    self.destroy_lifecycle_publisher(publisher)
            self.perception = None

    def destroy_node(self) -> None:
        """Stop the worker, then destroy the node."""
        if self.perception is not None:
            self.perception.close()
        LifecycleNode.destroy_node(self)


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``anomaly_lifecycle_node``: spin in *unconfigured* until a lifecycle manager drives it."""
    return run(AnomalyLifecycleNode, argv, "anomaly_lifecycle_node")


if __name__ == "__main__":
    sys.exit(main())
