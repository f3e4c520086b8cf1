"""``torch`` backend: the bundle's network in PyTorch on the CPU or a CUDA device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import BackendError, check_options

if TYPE_CHECKING:
    from ..bundle import Bundle


class TorchBackend:
    """Runs a torch module (logits at input size) on ``device``; outputs are copied to host numpy arrays."""

    name = "torch"

    def __init__(self, model: Any, device: str = "cpu", threads: int | None = None) -> None:
        import torch

        try:
            self._device = torch.device(device)
        except RuntimeError as err:
            raise BackendError(f"torch backend: bad device {device!r}: {err}") from None
        if self._device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError(f"torch backend: device {device!r} requested but CUDA is not available")
        if threads is not None:
            if threads < 1:
                raise BackendError(f"torch backend: threads must be >= 1, got {threads}")
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
            raise BackendError("torch backend needs PyTorch: pip install 'meta_ood_perception[torch]'") from None
        return cls(bundle.build_torch_model(), **options)

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """(N, 3, h, w) float32 → {"logits": (N, C, h, w) float32}."""
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self._device)
            logits = self._model(x)
            return {"logits": logits.float().cpu().numpy()}
