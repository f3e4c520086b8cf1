"""Inference backends: one :class:`Backend` protocol, chosen by name.

* ``torch`` — the bundle's ``model.safetensors`` in PyTorch, CPU or CUDA (option ``device``).
* ``onnxruntime`` — the bundle's ``model.onnx``; providers ``cpu`` (default), ``cuda``, ``tensorrt`` (TensorRT
  execution provider with ``fp16`` and an engine cache directory ``trt_cache_dir``).
* ``tensorrt`` — a serialized TensorRT engine (option ``engine``, or the bundle's ``tensorrt`` file) run through
  the TensorRT Python API; checked against the TensorRT version, GPU and shapes recorded beside it.

Every backend maps a (N, 3, h, w) float32 normalized batch to a dict of float32 numpy arrays holding at least
``"logits"`` (N, C, h', w'). Graphs exported with heat maps also return ``"probs"``, ``"score"``, ``"entropy"``,
``"margin"``, ``"variation"`` and ``"argmax"`` (see :mod:`meta_ood_perception.export`).

Errors (:mod:`meta_ood_perception.errors`): what the user fixes by changing a setting or installing something is a
:class:`~meta_ood_perception.errors.ConfigError` raised at start-up — an unknown backend name or option, a bad
option value, a missing package, execution provider or CUDA device, a model file that is not there. A model file
that does not fit the bundle (classes, input size, inputs and outputs) is a
:class:`~meta_ood_perception.errors.BundleError`. :class:`BackendError` (a
:class:`~meta_ood_perception.errors.FaultError`) is the backend failing with a valid setting: a graph or engine it
cannot load, a run that fails (a node counts a fault and resets the frame's history), and a TensorRT engine built
for another system (:class:`~.tensorrt_backend.EngineMismatchError`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError, FaultError

if TYPE_CHECKING:
    from ..bundle import Bundle

#: Backend names accepted by :func:`create_backend`.
BACKENDS = ("torch", "onnxruntime", "tensorrt")


class BackendError(FaultError):
    """The backend failed with a valid setting: a graph or engine it cannot load, a run that fails."""


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
    """Build backend ``name`` for ``bundle``.

    Raises:
        ConfigError: an unknown name or option, a bad option value, a missing package, provider or device.
        BundleError: a model file that does not fit the bundle.
        BackendError: a graph or engine the backend cannot load.
    """
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend.from_bundle(bundle, **options)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend.from_bundle(bundle, **options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend.from_bundle(bundle, **options)
    raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_options(backend: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Raise :class:`~meta_ood_perception.errors.ConfigError` naming any option the backend does not know."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{backend} backend: unknown option(s) {unknown}; known: {list(allowed)}")
