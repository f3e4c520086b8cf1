"""``torch`` backend: the bundle's network in PyTorch on the CPU or a CUDA device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..reports import first_line
from . import BackendError, check_options

if TYPE_CHECKING:
    from ..bundle import Bundle


class TorchBackend:
    """Runs a torch module (logits at input size) on ``device``; outputs are copied to host numpy arrays.

    A bad device, a CUDA device without CUDA, bad threads or a missing PyTorch are a
    :class:`~meta_ood_perception.errors.ConfigError`; torch's errors while running (CUDA errors, out of memory)
    become a :class:`~meta_ood_perception.backends.BackendError`.
    """

    name = "torch"

    def __init__(self, model: Any, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        try:
            self._device = torch.device(device)
        except RuntimeError as err:
            raise ConfigError(f"torch backend: bad device {device!r}: {err}") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"torch backend: device {device!r} requested but CUDA is not available")
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"torch backend: threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = model.to(self._device).eval()
        self.description = f"torch {torch.__version__} on {self._device}"

    @classmethod
    def from_bundle(cls, bundle: Bundle, **options: Any) -> TorchBackend:
        """Options: ``device`` ("cpu", "cuda", "cuda:1", …), ``threads`` (CPU intra-op threads)."""
        check_options("torch", options, ("device", "threads"))
        try:
            import torch  # noqa: F401
        except ImportError:
            raise ConfigError("torch backend needs PyTorch: pip install 'meta_ood_perception[torch]'") from None
        return cls(bundle.build_torch_model(), **options)

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """(N, 3, h, w) float32 → {"logits": (N, C, h, w) float32}.

        Raises:
            BackendError: torch failed while running (its ``RuntimeError`` s: CUDA errors, out of memory, a batch
                the network cannot take).
        """
        torch = self._torch
        try:
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self._device)
                logits = self._model(x)
                return {"logits": logits.float().cpu().numpy()}
        except RuntimeError as err:
            raise BackendError(f"torch backend: run failed: {first_line(err)}") from err
