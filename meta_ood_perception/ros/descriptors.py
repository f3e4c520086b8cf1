"""ROS parameter descriptors from the parameter table, and their declaration on a node (needs rclpy).

:func:`parameter_descriptor` turns a :class:`~meta_ood_perception.ros.params.ParameterSpec` into a
``rcl_interfaces/msg/ParameterDescriptor``: description (with unit), ``read_only`` for restart-only parameters,
type, an ``IntegerRange`` / ``FloatingPointRange`` (step 0, inclusive; an unbounded side gets the type's limit, and
the range includes the ``-1`` "the bundle's" value where there is one) and the other constraints in words in
``additional_constraints`` — what ``ros2 param describe`` shows.

Typing: float parameters (and ``brake.corridor``) are declared with ``dynamic_typing`` so that a YAML ``10`` for
``max_rate_hz`` (an integer to ROS) loads; :class:`~meta_ood_perception.ros.params.NodeConfig` then checks and
converts the value. The others are statically typed: a value of another type is refused by rclpy. rclpy enforces the
ranges when a parameter is declared (from a parameter file or override) and set; :func:`declare_parameters` turns
its refusal into one :class:`~meta_ood_perception.errors.ConfigError` line naming the parameter and the value.
"""

from __future__ import annotations

import array
import sys
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

from ..errors import ConfigError
from ..reports import first_line
from .params import PARAMETER_SPECS, ParameterSpec

#: Largest ROS ``integer`` parameter (int64).
INT64_MAX = 2**63 - 1

_TYPES = {
    "bool": ParameterType.PARAMETER_BOOL,
    "int": ParameterType.PARAMETER_INTEGER,
    "float": ParameterType.PARAMETER_DOUBLE,
    "str": ParameterType.PARAMETER_STRING,
    "float[]": ParameterType.PARAMETER_DOUBLE_ARRAY,
    "str[]": ParameterType.PARAMETER_STRING_ARRAY,
}


def parameter_descriptor(spec: ParameterSpec) -> Any:
    """The ``ParameterDescriptor`` of ``spec`` (see the module docstring)."""
    descriptor = ParameterDescriptor(
        name=spec.name,
        type=_TYPES[spec.kind],
        description=spec.summary,
        additional_constraints=spec.constraints(),
        read_only=spec.read_only,
        dynamic_typing=spec.kind in ("float", "float[]"),
    )
    if spec.minimum is None and spec.maximum is None:
        return descriptor
    low = [v for v in (spec.minimum, spec.unset) if v is not None]
    if spec.kind == "int":
        descriptor.integer_range = [
            IntegerRange(
                from_value=int(min(low, default=-INT64_MAX - 1)),
                to_value=int(spec.maximum) if spec.maximum is not None else INT64_MAX,
                step=0,
            )
        ]
    elif spec.kind == "float":
        descriptor.floating_point_range = [
            FloatingPointRange(
                from_value=float(min(low, default=-sys.float_info.max)),
                to_value=float(spec.maximum) if spec.maximum is not None else sys.float_info.max,
                step=0.0,
            )
        ]
    return descriptor


def declare_parameters(node: Node) -> dict[str, Any]:
    """Declare every parameter of the table on ``node`` (values from its parameter files and overrides, else the
    defaults) and return ``{name: value}`` (arrays as lists).

    Raises:
        ConfigError: rclpy refused a value (out of the descriptor's range, wrong type) — one line naming the parameter
            and the value.
    """
    values: dict[str, Any] = {}
    for spec in PARAMETER_SPECS.values():
        try:
            parameter = node.declare_parameter(spec.name, spec.ros_default, parameter_descriptor(spec))
        except (InvalidParameterValueException, InvalidParameterTypeException) as err:
            raise ConfigError(f"parameter {spec.name}: {first_line(err)}") from None
        value = parameter.value
        values[spec.name] = list(value) if isinstance(value, list | tuple | array.array) else value
    return values
