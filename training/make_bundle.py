"""``meta-ood make-bundle``: a trained segmentation network (and optionally a meta classifier) as a checked bundle.

Accepted checkpoints (:func:`load_network`):

* what ``meta-ood train-ood`` writes (``last.pt``, ``checkpoint_epoch<N>.pt``: ``{"model": state dict, "optimizer":
  …, "epoch": N, "config": {...}}``); architecture, class count and model options default to the run's config;
* the published DeepWV3Plus format ``{"state_dict": {"module.<key>": tensor}}`` (NVIDIA's semantic-segmentation
  snapshots, the research code's ``.pth``), and plain state dicts, with or without the ``module.`` prefix;
* ``.safetensors`` state dicts.

Everything is read with ``weights_only=True``. :func:`make_bundle` packages the network (safetensors + ONNX, via
:func:`~meta_ood_training.packaging.package`), adds the meta classifier and its training regime
(:func:`meta_training_regime`, from the metadata ``meta-ood extract-metrics`` → ``meta-ood meta-train`` carried
along), calibrates the domain monitor on in-domain frames (``--calibration``, default ``auto``:
:func:`resolve_calibration`), and validates the result by loading it and running one frame through its
:class:`~meta_ood_perception.pipeline.AnomalyPipeline` on ONNX Runtime.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from meta_ood_perception import __version__
from meta_ood_perception.bundle import DEFAULT_MAX_P_FALSE_POSITIVE, Bundle, load_bundle
from meta_ood_perception.errors import ConfigError, InputError, MetaOodError
from meta_ood_perception.meta_classifier import MetaClassifier, MetaClassifierError, load_meta_classifier
from meta_ood_perception.metrics import feature_names
from meta_ood_perception.models import (
    CheckpointError,
    build_model,
    check_state_dict,
    extract_state_dict,
    read_checkpoint,
)
from meta_ood_perception.pipeline import AnomalyPipeline, PipelineConfig
from meta_ood_perception.reports import first_line
from meta_ood_perception.scores import DEFAULT_THRESHOLD

from .datasets.base import DatasetError, read_rgb
from .datasets.cityscapes import CITYSCAPES_CLASSES, CityscapesSegmentation
from .domain_calibration import calibrate_bundle
from .packaging import NetworkSpec, package

LOG = logging.getLogger(__name__)

#: Network input of a bundle made from a Cityscapes-scale network (half the 1024×2048 camera resolution).
DEFAULT_INPUT_SIZE = (512, 1024)
#: The domain monitor's calibration needs at least this many in-domain frames (``domain.fit_calibration``).
MIN_CALIBRATION_FRAMES = 20
#: In-domain frames the domain monitor is calibrated on unless ``--calibration-frames`` says otherwise.
DEFAULT_CALIBRATION_FRAMES = 100
#: The command-line flag of each model option (for messages).
OPTION_FLAGS = {"width": "--model-width"}


class MakeBundleError(InputError):
    """A network, meta classifier or setting ``make-bundle`` cannot use, with the reason in one line."""


@dataclass(frozen=True)
class LoadedNetwork:
    """A network read from a checkpoint.

    Attributes:
        model: the torch module (eval mode, weights loaded strictly).
        architecture: its ``build_model`` name. options: its options. num_classes: its output classes.
        source: where it came from (file, format, SHA-256, training epoch / config when known).
    """

    model: nn.Module
    architecture: str
    options: dict[str, Any]
    num_classes: int
    source: dict[str, Any]


def load_network(
    checkpoint: str | Path,
    architecture: str | None = None,
    num_classes: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> LoadedNetwork:
    """Read ``checkpoint`` (see the module docstring) into its network.

    ``architecture``, ``num_classes`` and ``options`` default to what a ``train-ood`` checkpoint records (else 19
    classes and no options); given options are merged into the recorded ones; given values that contradict the
    record are an error.

    Raises:
        CheckpointError: a missing or unreadable file, or weights that do not fit the network (keys named).
        MakeBundleError: no architecture, or arguments that contradict the checkpoint's training config.
    """
    from meta_ood_perception.meta_classifier import sha256_file

    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    config: dict[str, Any] = {}
    source: dict[str, Any] = {"checkpoint": str(path.resolve()), "sha256": sha256_file(path)}
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"cannot load checkpoint {path}: {type(err).__name__}: {first_line(err)}") from err
        source["format"] = "safetensors state dict"
    else:
        raw = read_checkpoint(path)
        if isinstance(raw, Mapping) and isinstance(raw.get("config"), Mapping) and "model" in raw:
            config = dict(raw["config"])
            source["format"] = "meta-ood train-ood checkpoint"
            source["epoch"] = int(raw.get("epoch", 0))
            source["training_config"] = config
        elif isinstance(raw, Mapping) and "state_dict" in raw:
            source["format"] = "published {'state_dict': …}"
        else:
            source["format"] = "state dict"
        state = extract_state_dict(raw)
    recorded_arch = config.get("model")
    arch = architecture or recorded_arch
    if not arch:
        raise MakeBundleError(f"{path}: give --architecture (the checkpoint does not record its network)")
    if architecture and recorded_arch and architecture != recorded_arch:
        raise MakeBundleError(f"--architecture {architecture} contradicts {path}, trained as {recorded_arch}")
    recorded_classes = config.get("num_classes")
    if num_classes is not None and recorded_classes is not None and num_classes != recorded_classes:
        raise MakeBundleError(f"--num-classes {num_classes} contradicts {path}, trained with {recorded_classes}")
    classes = int(num_classes or recorded_classes or len(CITYSCAPES_CLASSES))
    opts = dict(config.get("model_options") or {})
    for key, value in (options or {}).items():
        if key in opts and opts[key] != value:
            flag = OPTION_FLAGS.get(key, f"model option {key}")
            raise MakeBundleError(f"{flag} {value} contradicts {path}, trained with {key} {opts[key]}")
        opts[key] = value
    try:
        model = build_model(str(arch), classes, **opts)
    except ConfigError as err:  # an architecture or option build_model does not know
        raise MakeBundleError(str(err)) from None
    check_state_dict(model, state)
    model.load_state_dict(state, strict=True)
    return LoadedNetwork(model.eval(), str(arch), opts, classes, source)


def class_names_for(num_classes: int, given: list[str] | None) -> tuple[str, ...]:
    """The bundle's class names: ``given`` (one per class), or Cityscapes' 19 train-id names for 19 classes.

    Raises:
        MakeBundleError: names of another count, duplicates, or no names for a class count other than 19.
    """
    if given is None:
        if num_classes != len(CITYSCAPES_CLASSES):
            raise MakeBundleError(f"a {num_classes}-class network needs --class-names (one per output class); "
                                  "only 19 classes default to Cityscapes' train ids")  # fmt: skip
        return CITYSCAPES_CLASSES
    names = tuple(n.strip() for n in given)
    if len(names) != num_classes or len(set(names)) != len(names) or not all(names):
        raise MakeBundleError(f"--class-names must give {num_classes} distinct non-empty names, got {len(names)}")
    return names


def load_meta(path: str | Path, num_classes: int) -> MetaClassifier:
    """The meta classifier at ``path`` (``meta-ood meta-train``'s JSON + npz), checked against the component
    metrics of a ``num_classes`` network.

    Raises:
        MakeBundleError: an unreadable artifact or feature names other than the bundle's (named).
    """
    try:
        return load_meta_classifier(path, expected_names=feature_names(num_classes))
    except MetaClassifierError as err:
        raise MakeBundleError(f"--meta {path}: {err} (the bundle's {len(feature_names(num_classes))} component "
                              f"metrics of {num_classes} classes)") from None  # fmt: skip


def meta_training_regime(meta: MetaClassifier, spec: NetworkSpec) -> tuple[dict[str, Any], list[str]]:
    """The bundle's ``meta_training`` for ``meta`` and the warnings (one line each) it gives for ``spec``.

    The regime comes from the metadata ``meta-ood extract-metrics`` wrote into the features file and
    ``meta-ood meta-train`` copied into the classifier: threshold, metric grid, network input size, region, frame
    aspect ratio, the identity of the training frames (``data``) and the network they went through. Without that
    metadata only the component counts are known, and a warning says the regime cannot be checked.
    """
    info = meta.metadata
    extraction = info.get("extraction") if isinstance(info.get("extraction"), dict) else None
    regime: dict[str, Any] = {"classifier": meta.kind}
    if isinstance(info.get("n_train"), int):
        regime["components"] = info["n_train"]
        if _is_number(info.get("positive_ratio")):
            regime["false_positives"] = round(info["n_train"] * float(info["positive_ratio"]))
    if isinstance(info.get("data"), dict):
        regime["data"] = info["data"]
    if isinstance(info.get("features_file"), str):
        regime["features_file"] = info["features_file"]
    warnings: list[str] = []
    if extraction is None:
        warnings.append("the meta classifier does not record how its components were extracted (a features file "
                        "from an older meta-ood?): its regime cannot be checked against this bundle")  # fmt: skip
        return regime, warnings
    metric_size = spec.metric_size or spec.input_size
    for key, built in (("input_size", spec.input_size), ("metric_size", metric_size)):
        value = extraction.get(key)
        if _is_size(value):
            regime[key] = [int(value[0]), int(value[1])]
            if tuple(regime[key]) != tuple(built):
                warnings.append(f"the meta classifier was trained on components extracted at {key.replace('_', ' ')} "
                                f"{value[0]}×{value[1]}, this bundle uses {built[0]}×{built[1]}: its decisions are "
                                "outside their regime")  # fmt: skip
    threshold = extraction.get("threshold")
    if _is_number(threshold):
        regime["threshold"] = float(threshold)
        if abs(float(threshold) - spec.threshold) > 1e-9:
            warnings.append(f"the meta classifier was trained at threshold {float(threshold):g}, this bundle uses "
                            f"{spec.threshold:g}")  # fmt: skip
    aspect = extraction.get("aspect_ratio")
    if _is_number(aspect) and float(aspect) > 0:
        regime["aspect_ratio"] = float(aspect)
    if extraction.get("region") in ("labelled", "frame", "road"):
        regime["region"] = extraction["region"]
    if isinstance(extraction.get("network_sha256"), str):
        regime["network_sha256"] = extraction["network_sha256"]
    return regime, warnings


@dataclass(frozen=True)
class CalibrationSource:
    """In-domain frames for the domain monitor's calibration (``--calibration``).

    Attributes:
        kind: ``"none"``, ``"auto"`` (Cityscapes ``val`` of the ``train-ood`` checkpoint's ``cityscapes_root`` when
            it has enough images, else none: :func:`resolve_calibration`), ``"synthetic"`` (closed-set street
            scenes of the synthetic world, seed ``seed``) or ``"cityscapes"`` (the images of ``root``'s ``split``,
            official layout).
    """

    kind: str
    root: Path | None = None
    split: str = "val"
    seed: int = 0


def parse_calibration(value: str) -> CalibrationSource:
    """``auto``, ``none``, ``synthetic[:SEED]`` or ``cityscapes:ROOT[:SPLIT]`` (split ``train``, ``val`` or
    ``test``; default ``val``: frames the network was not trained on).

    Raises:
        MakeBundleError: anything else (the accepted forms named).
    """
    kind, _, rest = value.partition(":")
    if kind in ("none", "auto") and not rest:
        return CalibrationSource(kind)
    if kind == "synthetic":
        if rest and not rest.isdigit():
            raise MakeBundleError(f"--calibration synthetic:SEED needs an integer seed, got {value!r}")
        return CalibrationSource("synthetic", seed=int(rest or 0))
    if kind == "cityscapes" and rest:
        root, _, split = rest.rpartition(":")
        if not root or split not in ("train", "val", "test"):
            root, split = rest, "val"
        return CalibrationSource("cityscapes", Path(root), split)
    raise MakeBundleError(
        f"--calibration must be auto, none, synthetic[:SEED] or cityscapes:ROOT[:SPLIT], got {value!r}"
    )


def resolve_calibration(source: CalibrationSource, network: LoadedNetwork) -> CalibrationSource:
    """``source``, or for ``auto``: the Cityscapes ``val`` split of the ``cityscapes_root`` the ``train-ood``
    checkpoint records when it has at least :data:`MIN_CALIBRATION_FRAMES` images, else ``none`` with a one-line
    warning that says how to calibrate."""
    if source.kind != "auto":
        return source
    config = network.source.get("training_config") or {}
    root = config.get("cityscapes_root") if isinstance(config, Mapping) else None
    if not root:
        reason = "the checkpoint records no Cityscapes root (not a train-ood checkpoint)"
    else:
        try:
            count = len(CityscapesSegmentation(root, "val"))
        except DatasetError as err:
            count, reason = 0, f"no Cityscapes val split at the checkpoint's cityscapes_root ({first_line(err)})"
        else:
            reason = f"Cityscapes val of the checkpoint's cityscapes_root {root} has {count} images"
        if count >= MIN_CALIBRATION_FRAMES:
            LOG.info("make-bundle: --calibration auto: the domain monitor is calibrated on Cityscapes val of %s (the "
                     "train-ood checkpoint's cityscapes_root)", root)  # fmt: skip
            return CalibrationSource("cityscapes", Path(root), "val")
        reason += f", fewer than the {MIN_CALIBRATION_FRAMES} the domain monitor needs" if count else ""
    LOG.warning("make-bundle: no domain calibration, the bundle's domain monitor is off: %s; calibrate it on in-domain "
                "frames with --calibration cityscapes:ROOT[:SPLIT] (at least %d images, e.g. Cityscapes val)", reason,
                MIN_CALIBRATION_FRAMES)  # fmt: skip
    return CalibrationSource("none")


def check_calibration(source: CalibrationSource, frames: int) -> int:
    """How many frames of ``source`` the calibration uses (``frames``, or fewer in a smaller Cityscapes split),
    checked without reading any.

    Raises:
        DatasetError: a Cityscapes root without the split's images and labels.
        MakeBundleError: ``source.kind`` is ``"none"`` or ``"auto"`` (resolve it first), ``frames`` or the split's
            images fewer than :data:`MIN_CALIBRATION_FRAMES`.
    """
    if frames < MIN_CALIBRATION_FRAMES:
        raise MakeBundleError(f"--calibration-frames must be at least {MIN_CALIBRATION_FRAMES}, got {frames}")
    if source.kind == "cityscapes":
        assert source.root is not None
        count = min(frames, len(CityscapesSegmentation(source.root, source.split)))
        if count < MIN_CALIBRATION_FRAMES:
            raise MakeBundleError(f"--calibration {source.kind}: {source.root} split {source.split} has {count} "
                                  f"images, the domain monitor needs at least {MIN_CALIBRATION_FRAMES}")  # fmt: skip
        return count
    if source.kind == "synthetic":
        return frames
    raise MakeBundleError(f"no calibration frames for --calibration {source.kind}")


def calibration_frames(
    source: CalibrationSource, size: tuple[int, int], frames: int
) -> tuple[Iterator[npt.NDArray[np.uint8]], dict[str, Any]]:
    """``frames`` in-domain RGB frames of ``source`` and their identity: Cityscapes images at evenly spaced indices
    of the split sorted by name (so every city contributes, not only the first), synthetic ones rendered at
    ``size``.

    Raises:
        DatasetError, MakeBundleError: see :func:`check_calibration`.
    """
    count = check_calibration(source, frames)
    if source.kind == "cityscapes":
        assert source.root is not None
        cityscapes = CityscapesSegmentation(source.root, source.split)
        picked = np.linspace(0, len(cityscapes) - 1, count).round().astype(int).tolist()
        identity = cityscapes.identity(count) | {"selection": "evenly spaced", "split_images": len(cityscapes)}
        return (read_rgb(cityscapes.images[i]) for i in picked), identity
    from .synthetic import SyntheticWorld

    world = SyntheticWorld("closed", source.seed, count, size[0], size[1])
    return (world[i][0] for i in range(count)), world.identity() | {"frames": count}


def calibrate(bundle_dir: str | Path, source: CalibrationSource, frames: int, *, progress: bool = True) -> None:
    """Write the domain monitor's in-domain statistics of ``frames`` frames of ``source`` into the bundle.

    Raises:
        MakeBundleError: a bad ``source`` / ``frames``.
        DatasetError: missing Cityscapes folders.
    """
    size = load_bundle(bundle_dir).metric_size
    images, identity = calibration_frames(source, size, frames)
    t0 = time.perf_counter()
    calibrate_bundle(Path(bundle_dir), images, backend="onnxruntime", progress=progress, data=identity,
                     total=int(identity["frames"]))  # fmt: skip
    LOG.info("make-bundle: domain monitor calibrated on %d %s frames in %.1f s", identity.get("frames", frames),
             identity.get("dataset"), time.perf_counter() - t0)  # fmt: skip


def make_bundle(
    network: LoadedNetwork,
    out_dir: str | Path,
    *,
    class_names: tuple[str, ...],
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    metric_size: tuple[int, int] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    meta: MetaClassifier | None = None,
    max_p_false_positive: float = DEFAULT_MAX_P_FALSE_POSITIVE,
    metadata: dict[str, Any] | None = None,
    calibration: CalibrationSource | None = None,
    calibration_frame_count: int = DEFAULT_CALIBRATION_FRAMES,
    progress: bool = True,
) -> Bundle:
    """Package ``network`` (and ``meta``, or keep every component) into ``out_dir``, calibrate the domain monitor
    on ``calibration`` frames (unless None / ``none``; ``auto``: :func:`resolve_calibration`), and validate the
    result (:func:`validate_bundle`).

    Raises:
        MakeBundleError: bad sizes, threshold, cut or calibration frames, or a bundle that does not load or run (the
            reason named).
        DatasetError: calibration frames from a Cityscapes root without the split.
    """
    calibration = resolve_calibration(calibration or CalibrationSource("none"), network)
    if calibration.kind != "none":  # a missing folder or too few frames fail now, not after the export
        check_calibration(calibration, calibration_frame_count)
    for name, size in (("input size", input_size), ("metric size", metric_size or input_size)):
        if not _is_size(size) or min(size) < 16:
            raise MakeBundleError(f"{name} must be two integers of at least 16 (H W), got {size}")
    if not 0.0 <= threshold <= 1.0:
        raise MakeBundleError(f"--threshold must lie in [0, 1], got {threshold}")
    if not 0.0 < max_p_false_positive <= 1.0:
        raise MakeBundleError(f"--max-p-false-positive must lie in (0, 1], got {max_p_false_positive}")
    if len(class_names) != network.num_classes:
        raise MakeBundleError(f"{len(class_names)} class names for a {network.num_classes}-class network")
    spec = NetworkSpec(network.architecture, network.options, class_names, input_size, metric_size, threshold)
    regime = None
    if meta is not None:
        regime, warnings = meta_training_regime(meta, spec)
        for line in warnings:
            LOG.warning("make-bundle: %s", line)
    else:
        LOG.info("make-bundle: no --meta: the bundle keeps every component (what `meta-ood extract-metrics` needs "
                 "to collect components for a first meta classifier)")  # fmt: skip
    info = {"built_by": "meta-ood make-bundle", "code_version": __version__, "torch_version": torch.__version__,
            "network": network.source} | dict(metadata or {})  # fmt: skip
    t0 = time.perf_counter()
    bundle = package(network.model, out_dir, spec, meta_classifier=meta, max_p_false_positive=max_p_false_positive,
                     meta_training=regime, metadata=info)  # fmt: skip
    LOG.info("make-bundle: packaged %s (%d classes, input %d×%d, metric grid %d×%d, t = %g) in %.1f s -> %s",
             network.architecture, network.num_classes, *bundle.input_size, *bundle.metric_size, bundle.threshold,
             time.perf_counter() - t0, out_dir)  # fmt: skip
    trained_on = (regime or {}).get("network_sha256")
    this = bundle.manifest["checksums"].get(bundle.manifest["model"]["files"]["torch"])
    if trained_on and trained_on != this:
        LOG.warning("make-bundle: the meta classifier was trained on components of another network (SHA-256 %s…, "
                    "this bundle's %s…): extract them again through a keep-all bundle of this network",
                    trained_on[:12], str(this)[:12])  # fmt: skip
    if calibration.kind != "none":
        calibrate(out_dir, calibration, calibration_frame_count, progress=progress)
    validate_bundle(out_dir)
    return load_bundle(out_dir)


def validate_bundle(path: str | Path, backend: str = "onnxruntime") -> float:
    """Load the bundle at ``path`` and run one frame (the input size, a smooth colour ramp) through its
    pipeline; returns the frame's milliseconds.

    Raises:
        MakeBundleError: the bundle does not load, or the frame fails or gives a non-finite score.
    """
    try:
        bundle = load_bundle(path)
        config = PipelineConfig(region="road" if "road" in bundle.class_names else "frame")
        pipeline = AnomalyPipeline.from_bundle(bundle, backend=backend, config=config)
        h, w = bundle.input_size
        ramp = np.linspace(0, 255, h * w * 3, dtype=np.float64).reshape(h, w, 3).astype(np.uint8)
        result = pipeline.process(ramp)
    except MetaOodError as err:  # BundleError, ConfigError / BackendError of the backend, bad network output
        raise MakeBundleError(f"the bundle written to {path} does not run: {err}") from err
    if result.score.shape != (h, w) or not np.isfinite(result.score).all():
        raise MakeBundleError(f"the bundle written to {path} gives a non-finite or mis-shaped anomaly score")
    LOG.info("make-bundle: validated %s: load_bundle and one %d×%d frame through its %s pipeline (%.0f ms, %d "
             "component(s))", path, h, w, backend, result.timings_ms["total"], len(result.components))  # fmt: skip
    return float(result.timings_ms["total"])


def _is_size(value: Any) -> bool:
    return (
        isinstance(value, list | tuple) and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
