"""Segmentation networks and checkpoint loading (torch).

``build_model(name, num_classes)`` with ``name`` in :data:`MODEL_NAMES`; ``load_checkpoint(model, path)`` loads the
published format (``{"state_dict": {"module.<key>": tensor}}``) and plain state dicts, strictly and with
``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..reports import first_line
from .deeplab import DeepWV3Plus, LightDeepLabV3Plus

#: Input normalization of every model (ImageNet statistics, RGB order, values in [0, 1] before normalizing).
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)

MODEL_NAMES = ("deeplabv3plus_wrn38", "deeplabv3plus_resnet18", "deeplabv3plus_light")


class CheckpointError(InputError):
    """A checkpoint that does not fit the model, with the offending keys or the file (a file the user gives; a
    bundle's weights that do not load are a :class:`~meta_ood_perception.errors.BundleError`)."""


def build_model(name: str, num_classes: int = 19, **options: Any) -> nn.Module:
    """Build a segmentation network without weights.

    Args:
        name: ``deeplabv3plus_wrn38`` (DeepWV3Plus, matches the published checkpoints), ``deeplabv3plus_resnet18``
            (light model, ResNet-18 widths) or ``deeplabv3plus_light`` (ResNet-18 layout at half width, or
            ``width=`` as given).
        num_classes: output classes (19 Cityscapes train ids).
        **options: ``width`` and ``output_stride`` (16 or 8) for the light models.

    Raises:
        ConfigError: an unknown name or option.
    """
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    if name == "deeplabv3plus_wrn38":
        if options:
            raise ConfigError(f"deeplabv3plus_wrn38 takes no options, got {sorted(options)}")
        return DeepWV3Plus(num_classes)
    if name in ("deeplabv3plus_resnet18", "deeplabv3plus_light"):
        unknown = set(options) - {"width", "output_stride"}
        if unknown:
            raise ConfigError(f"{name} takes only 'width' and 'output_stride', got {sorted(unknown)}")
        width = int(options.get("width", 64 if name == "deeplabv3plus_resnet18" else 32))
        return LightDeepLabV3Plus(num_classes, width, int(options.get("output_stride", 16)))
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def extract_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint, without a DataParallel ``module.`` prefix.

    Accepts ``{"state_dict": {...}}`` (the published format), ``{"model": {...}}`` and plain state dicts.
    """
    sd = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if key in checkpoint and isinstance(checkpoint[key], Mapping):
                sd = checkpoint[key]
                break
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            "checkpoint holds no state dict (expected {'state_dict': {name: tensor}} or {name: tensor})"
        )
    keys = list(sd)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming missing, unexpected and mis-shaped keys; return if they all fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            shown = ", ".join(items[:5]) + (f", … ({len(items)} in all)" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label} key(s): {shown}")
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(problems))


def _numpy_scalar_globals() -> list[Any]:
    """List the numpy objects that plain metadata (e.g. ``mean_iu = np.float64(...)``) pickles: scalars and dtypes."""
    import numpy as np

    allowed: list[Any] = [np.dtype]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            allowed.append(__import__(module, fromlist=["scalar"]).scalar)
            break
        except (ImportError, AttributeError):
            continue
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return allowed


def read_checkpoint(path: str | Path) -> Any:
    """The loaded contents of a torch checkpoint file (tensors, containers, numbers and strings only:
    ``weights_only=True``), e.g. ``{"state_dict": …}`` (published) or ``{"model": …, "config": …}`` (``train-ood``).

    Raises:
        CheckpointError: a missing, unreadable or unsafe file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # NVIDIA's snapshots (the published DeepWV3Plus baseline) also store numpy scalars such as mean_iu.
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"cannot load checkpoint {path}: {type(err).__name__}: {first_line(err)}") from err


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights strictly into ``model`` (in place) and return it.

    Raises:
        CheckpointError: a missing or unreadable file (never unpickled beyond tensors: ``weights_only=True``), or
            keys / shapes that do not match (all named).
    """
    state_dict = extract_state_dict(read_checkpoint(path))
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model


__all__ = [
    "MEAN_RGB",
    "MODEL_NAMES",
    "STD_RGB",
    "CheckpointError",
    "DeepWV3Plus",
    "LightDeepLabV3Plus",
    "build_model",
    "check_state_dict",
    "extract_state_dict",
    "load_checkpoint",
    "read_checkpoint",
]
