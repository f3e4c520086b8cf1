"""``onnxruntime`` backend: the bundle's ONNX graph through ONNX Runtime, with configurable execution providers.

Providers (option ``providers``, tried in order, names or full ONNX Runtime names):

* ``tensorrt`` (``TensorrtExecutionProvider``): ``fp16`` (default False), ``device_id``, and an engine cache that
  is on by default: ``trt_cache_dir`` ``""`` = ``$XDG_CACHE_HOME/meta_ood_perception/engines/onnxruntime-<version>``
  (one folder per ONNX Runtime version; ONNX Runtime names its engines by graph, precision and GPU architecture),
  ``"off"`` = no cache, anything else = that folder (remove it after changing TensorRT, as ONNX Runtime asks);
* ``cuda`` (``CUDAExecutionProvider``), option ``device_id``;
* ``cpu`` (``CPUExecutionProvider``), the default; ``threads`` sets the intra-op thread count
  (idle threads do not spin, so that post-processing gets the cores right after inference).

A provider that this ONNX Runtime build does not have is an error naming the ones it has (never a silent fallback).
Errors: see :mod:`meta_ood_perception.backends` (setting → ``ConfigError``, model that does not fit the bundle →
``BundleError``, load or run failure → :class:`~meta_ood_perception.backends.BackendError`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import BundleError, ConfigError
from ..reports import first_line
from . import BackendError, check_options

if TYPE_CHECKING:
    from ..bundle import Bundle

PROVIDERS = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def execution_providers(
    names: list[str],
    available: list[str],
    version: str,
    *,
    fp16: bool = False,
    trt_cache_dir: str | Path = "",
    device_id: int = 0,
) -> list[Any]:
    """The ``providers`` argument of ``onnxruntime.InferenceSession`` for provider ``names`` (short or full names):
    full names, with an options dict for TensorRT and CUDA. Creates the TensorRT engine cache folder.

    Args:
        available: ``onnxruntime.get_available_providers()``. version: ``onnxruntime.__version__``.

    Raises:
        ConfigError: a provider this ONNX Runtime build does not have (naming the ones it has).
    """
    from .tensorrt_backend import engine_cache_dir

    chosen: list[Any] = []
    for name in names:
        full = PROVIDERS.get(name.lower(), name)
        if full not in available:
            raise ConfigError(f"onnxruntime backend: provider {name!r} is not available in onnxruntime {version} "
                              f"(available: {', '.join(available)})")  # fmt: skip
        if full == "TensorrtExecutionProvider":
            trt: dict[str, Any] = {"device_id": device_id, "trt_fp16_enable": bool(fp16)}
            folder = engine_cache_dir(trt_cache_dir)
            if folder is not None:
                folder = folder / f"onnxruntime-{version}" if not str(trt_cache_dir).strip() else folder
                folder.mkdir(parents=True, exist_ok=True)
                trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(folder))
            chosen.append((full, trt))
        elif full == "CUDAExecutionProvider":
            chosen.append((full, {"device_id": device_id}))
        else:
            chosen.append(full)
    return chosen


class OnnxRuntimeBackend:
    """An ONNX Runtime session over an exported graph with input ``image`` and output ``logits`` (+ heat maps)."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | Path,
        *,
        providers: list[str] | tuple[str, ...] | str = ("cpu",),
        fp16: bool = False,
        trt_cache_dir: str | Path = "",
        device_id: int = 0,
        threads: int | None = None,
        num_classes: int | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("onnxruntime backend needs the onnxruntime package (pip install onnxruntime)") from None
        path = Path(model_path)
        if not path.is_file():
            raise ConfigError(f"onnxruntime backend: model file not found: {path}")
        names = [providers] if isinstance(providers, str) else list(providers)
        if not names:
            raise ConfigError("onnxruntime backend: providers must name at least one provider")
        chosen = execution_providers(names, ort.get_available_providers(), ort.__version__, fp16=fp16,
                                     trt_cache_dir=trt_cache_dir, device_id=device_id)  # fmt: skip
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"onnxruntime backend: threads must be >= 1, got {threads}")
            options.intra_op_num_threads = threads
        # Idle intra-op threads would otherwise busy-wait after each run and steal the cores the post-processing
        # (numba kernels, OpenCV) needs right after inference: measured 15 ms instead of 1 ms for the components
        # stage at 128×256 on 2 cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own exception types for corrupt graphs
            raise BackendError(f"onnxruntime backend: cannot load {path}: {first_line(err)}") from None
        inputs = self._session.get_inputs()
        outputs = [o.name for o in self._session.get_outputs()]
        if len(inputs) != 1 or "logits" not in outputs:
            raise BundleError(
                f"onnxruntime backend: {path} must have one input and an output 'logits', has inputs "
                f"{[i.name for i in inputs]} and outputs {outputs}"
            )
        self._input = inputs[0].name
        self._outputs = outputs
        channels = self._session.get_outputs()[outputs.index("logits")].shape[1]
        if num_classes is not None and isinstance(channels, int) and channels != num_classes:
            raise BundleError(f"onnxruntime backend: {path} outputs {channels} classes, the bundle has {num_classes}")
        self.input_shape = tuple(inputs[0].shape)  # ints for fixed dimensions, names / None for dynamic ones
        self.providers = self._session.get_providers()
        self.description = f"onnxruntime {ort.__version__} ({', '.join(self.providers)})"

    @classmethod
    def from_bundle(cls, bundle: Bundle, **options: Any) -> OnnxRuntimeBackend:
        """Options: ``providers``, ``fp16``, ``trt_cache_dir``, ``device_id``, ``threads``, ``model`` (an ONNX file
        instead of the bundle's)."""
        check_options("onnxruntime", options, ("providers", "fp16", "trt_cache_dir", "device_id", "threads", "model"))
        model = options.pop("model", None) or bundle.file("onnx")
        backend = cls(model, num_classes=bundle.num_classes, **options)
        fixed = [v for v in backend.input_shape[2:] if isinstance(v, int)]
        if len(backend.input_shape) != 4 or (len(fixed) == 2 and tuple(fixed) != tuple(bundle.input_size)):
            raise BundleError(f"onnxruntime backend: {model} takes input {backend.input_shape}, the bundle runs the "
                               f"network at {bundle.input_size[0]}×{bundle.input_size[1]}")  # fmt: skip
        return backend

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """(N, 3, h, w) float32 → every graph output by name (``logits`` at least).

        Raises:
            BackendError: ONNX Runtime refused the input or failed while running (its own exception types).
        """
        try:
            values = self._session.run(None, {self._input: np.ascontiguousarray(batch, np.float32)})
        except Exception as err:  # onnxruntime's exception types do not derive from ValueError
            raise BackendError(f"onnxruntime backend: run failed: {first_line(err)}") from None
        return dict(zip(self._outputs, values, strict=True))
