"""``tensorrt`` backend: a serialized TensorRT engine run through the TensorRT Python API (optional ``tensorrt``).

Beside every engine ``M.engine`` lies ``M.engine.json`` (written by :func:`build_engine`): TensorRT version, GPU
name and compute capability, precision, input and output shapes and the SHA-256 of the engine and of its ONNX
source. :func:`check_engine` compares it with the running system; on a mismatch the backend raises
:class:`EngineMismatchError` naming the difference, or — with ``rebuild=True`` and the ONNX file at hand —
rebuilds it (as Autoware does when an engine does not match its TensorRT or GPU) into the engine cache, never over
the engine it was given (bundle files are checksummed and never rewritten). Engines with dynamic input dimensions are
run at the bundle's input size; outputs keep the engine's data types.

Engine cache (option ``cache_dir``, the node's ``trt_cache_dir``): ``""`` (the default) is
``$XDG_CACHE_HOME/meta_ood_perception/engines`` (``~/.cache/…`` without ``XDG_CACHE_HOME``), ``"off"`` builds into a
temporary folder that is removed once the engine is loaded (every start builds again), anything else is that folder.
A cached engine is named by its ONNX graph's SHA-256 and precision; its build record decides whether it still fits.

Device buffers are torch CUDA tensors (PyTorch is the one CUDA array library the project already depends on) on CUDA
device ``device_id``, which also runs the engine (it becomes the current device of the thread that creates the
backend, and each run selects it). This path needs an NVIDIA GPU; it is never imported on CPU machines.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..meta_classifier import sha256_file
from . import BackendError, check_options

if TYPE_CHECKING:
    from ..bundle import Bundle

LOG = logging.getLogger(__name__)


class EngineMismatchError(BackendError):
    """The engine was built for another TensorRT version, GPU or shape, or its file changed (a
    :class:`~meta_ood_perception.backends.BackendError`: rebuild it, or let the backend do so with ``rebuild``)."""


def _tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise ConfigError(
            "tensorrt backend needs NVIDIA TensorRT's Python package (pip install tensorrt) and a CUDA GPU"
        ) from None
    return trt


def _gpu(device_id: int = 0) -> dict[str, Any]:
    """Make CUDA device ``device_id`` the current one (TensorRT builds and loads engines there) and describe it."""
    import torch

    if not torch.cuda.is_available():
        raise ConfigError("tensorrt backend: no CUDA GPU available")
    if not 0 <= device_id < torch.cuda.device_count():
        raise ConfigError(f"tensorrt backend: no CUDA device {device_id} ({torch.cuda.device_count()} visible)")
    torch.cuda.set_device(device_id)
    props = torch.cuda.get_device_properties(device_id)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


#: ``cache_dir`` / ``trt_cache_dir`` value that turns the engine cache off.
CACHE_OFF = "off"
#: Precision of the engines the backend builds when ``fp16`` is not given.
DEFAULT_FP16 = True


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/meta_ood_perception/engines`` (``~/.cache/meta_ood_perception/engines`` without it)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "meta_ood_perception" / "engines"


def engine_cache_dir(setting: str | Path = "") -> Path | None:
    """The engine cache folder of a ``cache_dir`` setting: ``""`` → :func:`default_cache_dir`, ``"off"`` → None
    (no cache), anything else → that folder (``~`` expanded)."""
    text = str(setting).strip()
    if text == CACHE_OFF:
        return None
    return Path(text).expanduser() if text else default_cache_dir()


def engine_cache_path(onnx: str | Path, folder: Path | None = None, *, fp16: bool = DEFAULT_FP16) -> Path:
    """Where an engine built from ``onnx`` at that precision is cached in ``folder`` (default
    :func:`default_cache_dir`), named by the graph's SHA-256."""
    name = f"{sha256_file(Path(onnx))[:20]}-{'fp16' if fp16 else 'fp32'}.engine"
    return (folder if folder is not None else default_cache_dir()) / name


def _checked(engine: Path, system: dict[str, Any]) -> EngineInfo:
    """``engine``'s build record after :func:`check_engine` against ``system`` (its keyword arguments)."""
    if not engine.is_file():
        raise EngineMismatchError(f"engine file not found: {engine}")
    info = EngineInfo.read(engine)
    check_engine(engine, info, **system)
    return info


def _reuse_or_build(target: Path, system: dict[str, Any], reason: str, build: Callable[[], EngineInfo]) -> EngineInfo:
    """The engine at ``target`` if an earlier start built it and it fits ``system``, else ``build()`` it there."""
    try:
        info = _checked(target, system)
    except EngineMismatchError:
        LOG.warning("%s; building the engine into %s", reason, target)
        return build()
    LOG.info("%s; using %s, built by an earlier start", reason, target)
    return info


def engine_remedy(onnx: str | Path | None) -> str:
    """What to do about a missing or mismatched engine, in the words of both front ends (the backend does not know
    whether ``meta-ood`` or the node created it): their engine setting, their rebuild switch when the bundle has an
    ONNX graph (``onnx``) to build from, and ``meta-ood build-engine``."""
    if onnx is None:
        return ("give an engine file (command line: --engine; node parameter: engine) or first export the bundle's "
                "ONNX graph to build one from (meta-ood export-onnx --bundle BUNDLE)")  # fmt: skip
    return ("give an engine file (command line: --engine; node parameter: engine), turn building on (command line: "
            "--rebuild; node parameter: trt_rebuild true) to build one from the bundle's ONNX graph into the engine "
            f"cache, or build one with: meta-ood build-engine --onnx {onnx} --out ENGINE")  # fmt: skip


def missing_engine_message(onnx: str | Path | None) -> str:
    """The one-line error of a bundle without a TensorRT engine when none may be built (``onnx``: the bundle's ONNX
    graph, None when it has none)."""
    if onnx is None:
        return f"tensorrt backend: the bundle has neither a TensorRT engine nor an ONNX graph: {engine_remedy(None)}"
    return f"tensorrt backend: the bundle has no TensorRT engine and building one is off: {engine_remedy(onnx)}"


def engine_info_path(engine: str | Path) -> Path:
    """The JSON written beside ``engine``."""
    return Path(str(engine) + ".json")


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built for (the JSON beside it)."""

    tensorrt_version: str
    gpu: str
    compute_capability: str
    fp16: bool
    input_shape: tuple[int, ...]
    output_shapes: dict[str, tuple[int, ...]]
    engine_sha256: str
    onnx_sha256: str | None = None
    built_utc: str = ""

    @classmethod
    def read(cls, engine: str | Path) -> EngineInfo:
        """Parse ``engine``'s JSON; a missing or malformed file raises :class:`EngineMismatchError`."""
        path = engine_info_path(engine)
        try:
            raw = json.loads(path.read_text())
            return cls(
                str(raw["tensorrt_version"]), str(raw["gpu"]), str(raw["compute_capability"]), bool(raw["fp16"]),
                tuple(int(v) for v in raw["input_shape"]),
                {str(k): tuple(int(v) for v in s) for k, s in raw["output_shapes"].items()},
                str(raw["engine_sha256"]), raw.get("onnx_sha256"), str(raw.get("built_utc", "")),
            )  # fmt: skip
        except FileNotFoundError:
            raise EngineMismatchError(f"{engine}: no build record {path.name} beside the engine") from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise EngineMismatchError(f"{path}: unreadable engine build record ({err})") from None

    def write(self, engine: str | Path) -> Path:
        """Write the JSON beside ``engine``."""
        path = engine_info_path(engine)
        data = {**self.__dict__, "input_shape": list(self.input_shape),
                "output_shapes": {k: list(v) for k, v in self.output_shapes.items()}}  # fmt: skip
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path


def check_engine(
    engine: str | Path,
    info: EngineInfo,
    *,
    tensorrt_version: str,
    gpu: str,
    compute_capability: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    onnx_sha256: str | None = None,
) -> None:
    """Raise :class:`EngineMismatchError` naming the first difference between the engine's record and the system.

    Pure (no TensorRT needed): the caller passes the running TensorRT version and GPU, and the SHA-256 of the ONNX
    graph the engine must come from (an engine of older weights is a mismatch).
    """
    path = Path(engine)
    if not path.is_file():
        raise EngineMismatchError(f"engine file not found: {path}")
    if sha256_file(path) != info.engine_sha256:
        raise EngineMismatchError(f"{path}: SHA-256 differs from its build record (changed or corrupt)")
    if info.tensorrt_version != tensorrt_version:
        raise EngineMismatchError(
            f"{path}: built with TensorRT {info.tensorrt_version}, running TensorRT {tensorrt_version}"
        )
    if info.gpu != gpu or info.compute_capability != compute_capability:
        raise EngineMismatchError(
            f"{path}: built for {info.gpu} (sm {info.compute_capability}), running on {gpu} (sm {compute_capability})"
        )
    if input_shape is not None and tuple(info.input_shape) != tuple(input_shape):
        raise EngineMismatchError(f"{path}: input shape {info.input_shape}, the bundle needs {tuple(input_shape)}")
    if onnx_sha256 is not None and info.onnx_sha256 is not None and info.onnx_sha256 != onnx_sha256:
        raise EngineMismatchError(f"{path}: built from another ONNX graph (older or different weights)")
    logits = info.output_shapes.get("logits")
    if logits is None:
        raise EngineMismatchError(f"{path}: the engine has no 'logits' output ({sorted(info.output_shapes)})")
    if num_classes is not None and logits[1] != num_classes:
        raise EngineMismatchError(f"{path}: engine outputs {logits[1]} classes, the bundle has {num_classes}")


def build_engine(
    onnx_path: str | Path,
    out: str | Path,
    *,
    input_shape: tuple[int, int, int, int],
    fp16: bool = False,
    workspace_mb: int = 4096,
    device_id: int = 0,
) -> EngineInfo:
    """Build a serialized TensorRT engine for a static ``input_shape`` (N, 3, h, w) on CUDA device ``device_id`` and
    write it and its record."""
    trt = _tensorrt()
    gpu = _gpu(device_id)
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ConfigError(f"build-engine: ONNX file not found: {onnx_path}")
    if workspace_mb < 16:
        raise ConfigError(f"build-engine: workspace must be at least 16 MB, got {workspace_mb}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"build-engine: TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, input_shape, input_shape, input_shape)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"build-engine: TensorRT failed to build an engine from {onnx_path}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(serialized))
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(bytes(serialized))
    context = engine.create_execution_context()
    context.set_input_shape(name, input_shape)  # resolves dynamic dimensions of the outputs
    outputs = {}
    for i in range(engine.num_io_tensors):
        tensor = engine.get_tensor_name(i)
        if engine.get_tensor_mode(tensor) == trt.TensorIOMode.OUTPUT:
            outputs[tensor] = tuple(int(v) for v in context.get_tensor_shape(tensor))
    info = EngineInfo(
        trt.__version__, **gpu, fp16=fp16, input_shape=tuple(input_shape), output_shapes=outputs,
        engine_sha256=sha256_file(out), onnx_sha256=sha256_file(onnx_path),
        built_utc=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    info.write(out)
    LOG.info("TensorRT %s engine -> %s (%s, fp16=%s)", trt.__version__, out, info.gpu, fp16)
    return info


class TensorRTBackend:
    """Runs a checked TensorRT engine; buffers are torch CUDA tensors, outputs are copied to host numpy."""

    name = "tensorrt"

    def __init__(
        self,
        engine: str | Path,
        *,
        onnx: str | Path | None = None,
        input_shape: tuple[int, int, int, int] | None = None,
        num_classes: int | None = None,
        rebuild: bool = False,
        rebuild_to: str | Path | None = None,
        fp16: bool = DEFAULT_FP16,
        workspace_mb: int = 4096,
        device_id: int = 0,
    ) -> None:
        trt = _tensorrt()
        import torch

        gpu = _gpu(device_id)
        self._device = torch.device("cuda", device_id)
        engine = Path(engine)
        onnx_sha = sha256_file(Path(onnx)) if onnx is not None and Path(onnx).is_file() else None
        system = {"tensorrt_version": trt.__version__, "input_shape": input_shape, "num_classes": num_classes,
                  "onnx_sha256": onnx_sha, **gpu}  # fmt: skip
        try:
            info = _checked(engine, system)
        except EngineMismatchError as err:
            if not (rebuild and onnx is not None and input_shape is not None):
                raise EngineMismatchError(f"{err}; {engine_remedy(onnx)}") from err
            engine = Path(rebuild_to) if rebuild_to is not None else engine
            build = functools.partial(build_engine, onnx, engine, input_shape=input_shape, fp16=fp16,
                                      workspace_mb=workspace_mb, device_id=device_id)  # fmt: skip
            info = _reuse_or_build(engine, system, str(err), build)
        self.info = info
        self._torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(engine.read_bytes())
        if self._engine is None:
            raise EngineMismatchError(f"{engine}: TensorRT {trt.__version__} cannot deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._device)  # type: ignore[no-untyped-call]
        self._input = ""
        self._outputs: dict[str, Any] = {}
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        for tensor in names:
            if self._engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                self._input = tensor
                shape = tuple(int(v) for v in self._engine.get_tensor_shape(tensor))
                if any(v < 0 for v in shape):  # dynamic dimensions: fix them to the bundle's input size
                    if input_shape is None:
                        raise EngineMismatchError(f"{engine}: the engine's input {shape} is dynamic and no input "
                                                  "size was given")  # fmt: skip
                    shape = tuple(input_shape)
                    self._context.set_input_shape(tensor, shape)
                self._input_shape = shape
        for tensor in names:
            if self._engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                continue
            shape = tuple(int(v) for v in self._context.get_tensor_shape(tensor))
            try:
                dtype = torch.from_numpy(np.empty(0, trt.nptype(self._engine.get_tensor_dtype(tensor)))).dtype
            except (TypeError, KeyError) as err:
                raise EngineMismatchError(f"{engine}: output {tensor!r} has an unsupported data type ({err})") from None
            self._outputs[tensor] = torch.empty(shape, dtype=dtype, device=self._device)
            self._context.set_tensor_address(tensor, self._outputs[tensor].data_ptr())
        self.description = f"TensorRT {trt.__version__} on {info.gpu} ({'fp16' if info.fp16 else 'fp32'})"

    @classmethod
    def from_bundle(cls, bundle: Bundle, **options: Any) -> TensorRTBackend:
        """Options: ``engine`` (default: the bundle's ``tensorrt`` file, else the cached one), ``rebuild``, ``fp16``
        (of engines built here), ``cache_dir`` (see the module docstring), ``device_id``, ``workspace_mb``.

        With ``rebuild=True`` a missing or mismatched engine is built from the bundle's ONNX graph into the engine
        cache (with the cache ``"off"``: into a temporary folder), never into the bundle (its files are checksummed).
        """
        check_options("tensorrt", options, ("engine", "rebuild", "fp16", "cache_dir", "device_id", "workspace_mb"))
        files = bundle.manifest["model"]["files"]
        onnx = bundle.file("onnx") if "onnx" in files else None
        folder = engine_cache_dir(options.pop("cache_dir", ""))
        fp16 = bool(options.setdefault("fp16", DEFAULT_FP16))
        engine = options.pop("engine", None) or (bundle.file("tensorrt") if "tensorrt" in files else None)
        height, width = bundle.input_size
        options.update(onnx=onnx, input_shape=(1, 3, height, width), num_classes=bundle.num_classes)
        if onnx is not None and folder is None and options.get("rebuild"):
            with tempfile.TemporaryDirectory(prefix="meta_ood_engine_") as tmp:  # no cache: build, load, forget
                target = Path(tmp) / "model.engine"
                return cls(engine or target, rebuild_to=target, **options)
        cache = engine_cache_path(onnx, folder, fp16=fp16) if onnx is not None and folder is not None else None
        if engine is None and cache is not None and (cache.is_file() or options.get("rebuild")):
            engine = cache
        if engine is None:
            raise ConfigError(missing_engine_message(onnx))
        return cls(engine, rebuild_to=cache, **options)

    def run(self, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """(N, 3, h, w) float32 of the engine's input shape → every engine output by name."""
        torch = self._torch
        if tuple(batch.shape) != self._input_shape:
            raise BackendError(f"tensorrt backend: input shape {batch.shape}, the engine takes {self._input_shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self._device, non_blocking=False)
        self._context.set_tensor_address(self._input, x.data_ptr())
        with torch.cuda.device(self._device), torch.cuda.stream(self._stream):  # the worker thread's device too
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise BackendError("tensorrt backend: engine execution failed")
        self._stream.synchronize()
        return {name: t.cpu().numpy() for name, t in self._outputs.items()}
