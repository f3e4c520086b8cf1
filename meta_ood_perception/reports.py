"""JSON reports and one-line error texts, shared by the CLI, replay, evaluation and the offline tools."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """``value`` made JSON-safe, recursively: NaN / inf → None, numpy scalars → Python, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(data: dict[str, Any], path: str | Path) -> None:
    """Write ``data`` (through :func:`json_safe`) as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=1) + "\n")


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text, or its type name (for one-line error messages)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
