"""Inference backends: one :class:`Backend` protocol, chosen by name.

* ``torch`` — the bundle's ``model.safetensors`` in PyTorch, CPU or CUDA (option ``device``).
* ``onnxruntime`` — the bundle's ``model.onnx``; providers ``cpu`` (default), ``cuda``, ``tensorrt`` (TensorRT
  execution provider with ``fp16`` and an engine cache directory ``trt_cache_dir``).
* ``tensorrt`` — a serialized TensorRT engine (option ``engine``, or the bundle's ``tensorrt`` file) run through
  the TensorRT Python API; checked against the TensorRT version, GPU and shapes recorded beside it.

Every backend maps a (N, 3, h, w) float32 normalized batch to a dict of float32 numpy arrays holding at least
``"logits"`` (N, C, h', w'). Graphs exported with heat maps also return ``"probs"``, ``"score"``, ``"entropy"``,
``"margin"``, ``"variation"`` and ``"argmax"`` (see :mod:`meta_ood_perception.export`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ..bundle import Bundle

#: Backend names accepted by :func:`create_backend`.
BACKENDS = ("torch", "onnxruntime", "tensorrt")


class BackendError(ValueError):
    """A backend cannot be created or run (missing package or provider, bad option, mismatched model)."""


class Backend(Protocol):
    """Runs the segmentation network.

    Attributes:
        name: backend name (one of :data:`BACKENDS`).
        description: one line for logs and diagnostics (device, providers, precision).
    """

    name: str
    description: str

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """(N, 3, h, w) float32 normalized images → ``{"logits": (N, C, h, w) float32, ...}``."""
        ...


def create_backend(name: str, bundle: Bundle, **options: Any) -> Backend:
    """Build backend ``name`` for ``bundle``; unknown names and options raise :class:`BackendError`."""
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend.from_bundle(bundle, **options)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_bundle(bundle, **options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend.from_bundle(bundle, **options)
    raise BackendError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_options(backend: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise :class:`BackendError` naming any option the backend does not know."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise BackendError(f"{backend} backend: unknown option(s) {unknown}; known: {list(allowed)}")
