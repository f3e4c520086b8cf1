"""The generated files of ``config/``: ``anomaly_node.param.yaml`` and ``anomaly_node.schema.json``, rendered from
the parameter table (:data:`~meta_ood_perception.ros.params.PARAMETER_SPECS`).

Regenerate after changing the table: ``python -m meta_ood_perception.ros.param_files --write config/``
(``--check config/`` exits 1 naming a file that differs; the tests check the committed files the same way).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .params import LIVE_PARAMETERS, NODE_NAME, PARAMETER_SPECS, ParameterSpec, Value

LOG = logging.getLogger(__name__)

PARAM_FILE_NAME = "anomaly_node.param.yaml"
SCHEMA_FILE_NAME = "anomaly_node.schema.json"
#: YAML 1.1 words a plain scalar must not be (they would read as booleans or null).
_YAML_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_COMMENT_COLUMN = 36
HEADER_WIDTH = 116


def _yaml_scalar(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    plain = re.fullmatch(r"[A-Za-z_/][A-Za-z0-9_./-]*", value) and value.lower() not in _YAML_WORDS
    return value if plain else json.dumps(value)


def _yaml_value(value: Value) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml_scalar(v) for v in value) + "]"
    return _yaml_scalar(value)


def render_param_yaml() -> str:
    """The text of ``config/anomaly_node.param.yaml``: every parameter at its default with its description as a
    comment, keyed ``/**`` → ``ros__parameters`` with the groups (``qos.depth``) nested."""
    live = [name for name in PARAMETER_SPECS if name in LIVE_PARAMETERS and not name.startswith("brake.")]
    header = (
        f"Parameters of {NODE_NAME} (meta_ood_perception) at their defaults. GENERATED from the table in "
        "meta_ood_perception/ros/params.py by `python -m meta_ood_perception.ros.param_files --write config/`: edit "
        "the table, not this file. Keyed /** so that it applies under any node name or namespace (-r __node:=..., "
        "-r __ns:=...). The node validates every key at start-up and stops with one line naming a bad one; schema: "
        f"config/{SCHEMA_FILE_NAME}. Changeable at runtime: {', '.join(live)} and brake.*; the others are read-only "
        "(restart the node)."
    )
    lines = [
        *(f"# {line}" for line in textwrap.wrap(header, HEADER_WIDTH)),
        "# Use: ros2 launch meta_ood_perception anomaly.launch.py params_file:=<this file>",
        f"#  or: ros2 run meta_ood_perception {NODE_NAME} --ros-args --params-file <this file>",
        "/**:",
        "  ros__parameters:",
    ]
    group = ""
    for spec in PARAMETER_SPECS.values():
        prefix, _, key = spec.name.rpartition(".")
        if prefix and prefix != group:
            lines.append(f"    {prefix}:")
        group = prefix
        entry = f"{'      ' if prefix else '    '}{key}: {_yaml_value(spec.default)}"
        lines.append(f"{entry:<{_COMMENT_COLUMN}}  # {spec.summary}")
    return "\n".join(lines) + "\n"


def _schema_of(spec: ParameterSpec) -> dict[str, Any]:
    """JSON Schema of one parameter (of each item for arrays, plus the array's own keywords)."""
    kind = spec.kind
    base = kind.removesuffix("[]")
    item: dict[str, Any] = {"type": {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}[base]}
    if spec.choices:
        item["enum"] = list(spec.choices)
    if spec.pattern:
        item["pattern"] = f"^({spec.pattern})$"
    if base == "str" and spec.min_length and not kind.endswith("[]"):
        item["minLength"] = spec.min_length
    bounds: dict[str, Any] = {}
    if spec.minimum is not None:
        bounds["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        bounds["maximum"] = spec.maximum
    if bounds and spec.unset is not None:
        item["anyOf"] = [{"const": spec.unset}, bounds]
    else:
        item.update(bounds)
    schema: dict[str, Any] = item
    if kind.endswith("[]"):
        schema = {"type": "array", "items": item, "minItems": spec.min_length}
    return {**schema, "default": spec.ros_default, "description": spec.summary}


def render_schema() -> str:
    """The text of ``config/anomaly_node.schema.json``: a JSON Schema (draft 2020-12) of the parameter file with
    each parameter's type, default, description and range / choices / pattern, as Autoware's schemas have."""
    properties: dict[str, Any] = {}
    for spec in PARAMETER_SPECS.values():
        prefix, _, key = spec.name.rpartition(".")
        target = properties
        if prefix:
            group = properties.setdefault(prefix, {"type": "object", "additionalProperties": False, "properties": {}})
            target = group["properties"]
        target[key] = _schema_of(spec)
    node = {"type": "object", "required": ["ros__parameters"], "additionalProperties": False,
            "properties": {"ros__parameters": {"$ref": f"#/$defs/{NODE_NAME}"}}}  # fmt: skip
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"meta_ood_perception/{SCHEMA_FILE_NAME}",
        "title": f"Parameters for {NODE_NAME}",
        "description": f"ROS 2 parameter file of meta_ood_perception's {NODE_NAME}, keyed /** (any node) or by node "
        "name. Generated from meta_ood_perception/ros/params.py.",
        "type": "object",
        "minProperties": 1,
        "properties": {"/**": {"$ref": "#/$defs/node"}},
        "additionalProperties": {"$ref": "#/$defs/node"},
        "$defs": {
            "node": node,
            NODE_NAME: {"type": "object", "additionalProperties": False, "properties": properties},
        },
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def rendered_files() -> dict[str, str]:
    """File name → text of the generated files of ``config/``."""
    return {PARAM_FILE_NAME: render_param_yaml(), SCHEMA_FILE_NAME: render_schema()}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meta_ood_perception.ros.params (--write | --check) DIR``: write the parameter file and schema
    into DIR, or check that DIR holds them as rendered (exit 1 naming a stale file)."""
    parser = argparse.ArgumentParser(prog="python -m meta_ood_perception.ros.param_files", description=main.__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", type=Path, metavar="DIR", help="write the generated files into DIR")
    mode.add_argument("--check", type=Path, metavar="DIR", help="exit 1 if DIR's files differ from the rendered")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stale = []
    for name, text in rendered_files().items():
        if args.write is not None:
            args.write.mkdir(parents=True, exist_ok=True)
            (args.write / name).write_text(text)
            LOG.info("wrote %s", args.write / name)
        elif not (args.check / name).is_file() or (args.check / name).read_text() != text:
            stale.append(str(args.check / name))
    if stale:
        LOG.error("out of date (regenerate with --write): %s", ", ".join(stale))
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
