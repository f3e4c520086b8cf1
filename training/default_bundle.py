"""``meta-ood build-default-bundle``: the whole method on the synthetic world, end to end, on a CPU.

(With ``network_from`` steps 1–2 are skipped and the network of an earlier default bundle is reused.)

1. closed-set training of the light DeepLabv3+ on street scenes (cross-entropy, train ids);
2. entropy-maximization fine-tuning on half street scenes, half COCO-style proxy frames (informative, ≤ 20 % OoD
   pixels; proxy frames' background is void);
3. the network packaged as a keep-all bundle at the bundle's threshold t; component metrics of hazard frames (0–3
   hazards, traffic, look-alikes) extracted through that bundle's deployed pipeline (ONNX Runtime, metric grid);
4. logistic and MLP meta classifiers cross-validated by frame, an ensemble of MLPs fitted on every component
   (one runtime MLP, :func:`~.meta_train.average_mlps`), and its cut on P(false positive) chosen on held-out
   frames (the lowest cut that loses at most ``max_lost`` of the true detections there);
5. the bundle (``bundle.json``, ``model.safetensors``, ``model.onnx``, the MLP) and its own evaluation through
   the final pipeline on hazard frames of held-out seeds (every shape; only animals and bags), recorded in
   ``bundle.json``;
6. the domain monitor calibrated through the final pipeline on synthetic frames of their own seeds (closed-set and
   hazard frames and drives at 256×512 and 512×1024, :class:`~.domain_calibration.SyntheticCalibration`), stored
   as ``bundle.json`` ``domain`` with the seeds, counts, sizes and lighting of those frames.

Training frames are rendered at the camera size of the evaluation (256×512) and brought to the network's input
size by the deployed pre-processing (:func:`meta_ood_perception.preprocessing.to_network_input`). Every step is
seeded; the configuration, seeds, timings and code version go into the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tqdm.auto import tqdm

from meta_ood_perception import __version__
from meta_ood_perception.bundle import DEFAULT_BUNDLE, Bundle, load_bundle
from meta_ood_perception.errors import BundleError
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.preprocessing import resize_image, to_network_input
from meta_ood_perception.reports import json_safe
from meta_ood_perception.resolution import FrameMapping

from .datasets.base import OOD_LABEL, VOID_LABEL
from .domain_calibration import SyntheticCalibration, calibrate_bundle
from .evaluate_bundle import evaluate_bundle
from .losses import entropy_max_loss
from .meta_cv import CVConfig, cross_validate
from .meta_data import MetaDataset
from .meta_extract import extract
from .meta_models import MLPConfig
from .meta_train import train_meta_classifier
from .packaging import DeployedPipeline, NetworkSpec, package
from .synthetic import ALL_HAZARDS, CLASS_NAMES, HELD_OUT_HAZARDS, Kind, SyntheticWorld, render

LOG = logging.getLogger(__name__)
ARCHITECTURE = "deeplabv3plus_light"
#: The default bundle's anomaly threshold t. The paper's 0.7 (:data:`~meta_ood_perception.scores.DEFAULT_THRESHOLD`,
#: kept for bundles of real networks and for ``meta-ood results``) suits its WideResNet38; the light network's
#: entropy is flatter: at 0.7 only half of the independent road objects reach any component, at 0.2 nine in ten do,
#: and the meta classifier removes the many extra false positives (measured on held-out frames, README).
DEFAULT_BUNDLE_THRESHOLD = 0.2
#: Names of the self-evaluations in ``bundle.json`` ``metadata.evaluation``: hazard frames of a held-out seed with
#: every hazard shape, and with only the animals and bags (the family ``meta-ood results`` holds out).
ALL_SHAPES_EVALUATION, ANIMALS_AND_BAGS_EVALUATION = "all hazard shapes", "animals and bags"


@dataclass(frozen=True)
class DefaultBundleConfig:
    """Sizes, steps and seeds of the default-bundle build (the defaults are the committed bundle's).

    Attributes:
        height, width: network input size; render_height, render_width: the size frames are rendered at (the
            evaluation camera); metric_height, metric_width: the bundle's metric grid.
        closed_pool, proxy_pool: frames rendered once for training (reused with horizontal flips).
        metric_frames: hazard frames whose components train the meta classifier; select_frames: held-out frames
            its cut is chosen on; eval_frames: frames of the self-evaluation.
        max_lost: largest fraction of true detections the cut may remove on the selection frames.
        threshold: the bundle's anomaly threshold t (components are ``score >= t``); the meta classifier is
            trained on the components at this t.
        meta_hazard_shapes: the hazard shapes of the meta classifier's training and selection frames (the
            network never sees a hazard; the held-out family is held out from the experiments of ``meta-ood
            results``, not from the shipped meta classifier).
        mlp_epochs, mlp_ensemble: the paper's MLP trained ``mlp_epochs`` epochs, ``mlp_ensemble`` of them from
            different initializations averaged into one (logit mean, :func:`~.meta_train.average_mlps`).
        domain_seed, domain_frames, domain_drives, domain_drive_frames, domain_sizes: the domain monitor's
            calibration frames (:class:`~.domain_calibration.SyntheticCalibration`).
    """

    height: int = 192
    width: int = 384
    render_height: int = 256
    render_width: int = 512
    metric_height: int = 256
    metric_width: int = 512
    model_width: int = 16
    output_stride: int = 16
    closed_steps: int = 1000
    ood_steps: int = 2400
    batch: int = 8
    lr: float = 2e-3
    ood_lr: float = 1e-3
    lam: float = 0.9
    proxy_fraction: tuple[float, float] = (0.02, 0.2)
    closed_pool: int = 2400
    proxy_pool: int = 1600
    metric_frames: int = 8000
    select_frames: int = 1500
    eval_frames: int = 60
    max_lost: float = 0.02
    threshold: float = DEFAULT_BUNDLE_THRESHOLD
    meta_hazard_shapes: tuple[str, ...] = ALL_HAZARDS
    mlp_epochs: int = 100
    mlp_ensemble: int = 5
    seed: int = 2024
    eval_seed: int = 99_001
    domain_seed: int = 31_000
    domain_frames: int = 300
    domain_drives: int = 12
    domain_drive_frames: int = 25
    domain_sizes: tuple[tuple[int, int], ...] = ((256, 512), (512, 1024))
    #: oneDNN (mkldnn) convolutions in training. The tiny smoke model (width 4) intermittently deadlocks in oneDNN's
    #: 1x1-convolution weight backward (a GOMP barrier) on 2-core machines; the smoke build turns it off.
    onednn: bool = True

    def spec(self) -> NetworkSpec:
        """The bundle's network description."""
        return NetworkSpec(ARCHITECTURE, self.model_options(), CLASS_NAMES, (self.height, self.width),
                           (self.metric_height, self.metric_width), self.threshold)  # fmt: skip

    def model_options(self) -> dict[str, int]:
        """``build_model`` options of the light DeepLabv3+."""
        return {"width": self.model_width, "output_stride": self.output_stride}

    def domain_frames_spec(self) -> SyntheticCalibration:
        """The domain monitor's calibration frames."""
        return SyntheticCalibration(self.domain_seed, self.domain_frames, self.domain_drives, self.domain_drive_frames,
                                    self.domain_sizes)  # fmt: skip


def smoke_config() -> DefaultBundleConfig:
    """A seconds-long build at tiny scale: checks the pipeline, not the quality (tests, ``--smoke``)."""
    return DefaultBundleConfig(
        height=64, width=128, render_height=64, render_width=128, metric_height=64, metric_width=128, model_width=4,
        closed_steps=4, ood_steps=3, batch=4, closed_pool=8, proxy_pool=8, metric_frames=12, select_frames=6,
        eval_frames=3, mlp_epochs=2, mlp_ensemble=2, onednn=False, domain_frames=6, domain_drives=1,
        domain_drive_frames=4, domain_sizes=((64, 128), (96, 192)),
    )  # fmt: skip


@dataclass(frozen=True)
class TrainingPool:
    """Frames rendered once for training: (N, h, w, 3) uint8 network-size images and (N, h, w) uint8 targets."""

    images: npt.NDArray[np.uint8]
    targets: npt.NDArray[np.uint8]

    def batch(
        self, rng: np.random.Generator, size: int, proxies: TrainingPool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` random frames, each flipped left-right with probability ½, as normalized NCHW float32 and
        (N, h, w) int64 targets. With ``proxies`` (a pool of proxy frames, OoD pixels ``OOD_LABEL``, the rest void)
        each frame gets the OoD objects of a random proxy frame pasted in (copy-paste: the frame keeps its labels
        everywhere else)."""
        images, targets = self._draw(rng, size)
        if proxies is not None:
            p_images, p_targets = proxies._draw(rng, size)
            for i in range(size):
                ood = p_targets[i] == OOD_LABEL
                images[i] = np.where(ood[..., None], p_images[i], images[i])
                targets[i] = np.where(ood, OOD_LABEL, targets[i])
        x = np.concatenate([to_network_input(im, im.shape[:2], MEAN_RGB, STD_RGB) for im in images])
        return torch.from_numpy(x), torch.from_numpy(np.stack(targets).astype(np.int64))

    def _draw(
        self, rng: np.random.Generator, size: int
    ) -> tuple[list[npt.NDArray[np.uint8]], list[npt.NDArray[np.uint8]]]:
        idx = rng.integers(0, len(self.images), size)
        flip = rng.random(size) < 0.5
        images = [
            np.ascontiguousarray(self.images[i][:, ::-1] if f else self.images[i])
            for i, f in zip(idx, flip, strict=True)
        ]
        targets = [
            np.ascontiguousarray(self.targets[i][:, ::-1] if f else self.targets[i])
            for i, f in zip(idx, flip, strict=True)
        ]
        return images, targets


def render_pool(kind: Kind, seed: int, n: int, config: DefaultBundleConfig, desc: str, **options: Any) -> TrainingPool:
    """Render ``n`` frames at the render size and bring them to the network size with the deployed
    pre-processing (images: area resize; targets: nearest neighbour)."""
    size = (config.height, config.width)
    mapping = FrameMapping.create((config.render_height, config.render_width), size)
    images = np.empty((n, *size, 3), np.uint8)
    targets = np.empty((n, *size), np.uint8)
    for i in tqdm(range(n), desc=desc):
        image, target = render(kind, seed, i, config.render_height, config.render_width, **options)
        images[i] = resize_image(image, size)
        targets[i] = mapping.to_metric(target)
    return TrainingPool(images, targets)


def _train(model: torch.nn.Module, steps: int, lr: float, batch_fn: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
           loss_fn: Callable[[torch.Tensor, torch.Tensor], Any], desc: str, onednn: bool = True
           ) -> list[float]:  # fmt: skip
    with torch.backends.mkldnn.flags(enabled=onednn):
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
        model.train()
        losses = []
        for step in tqdm(range(steps), desc=desc):
            x, y = batch_fn(step)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
    model.eval()
    return losses


def train_closed_set(config: DefaultBundleConfig, pool: TrainingPool | None = None
                     ) -> tuple[torch.nn.Module, list[float]]:  # fmt: skip
    """Step 1: the light DeepLabv3+ trained with cross-entropy on closed-set street scenes; (model, losses)."""
    torch.manual_seed(config.seed)
    pool = pool or render_pool("closed", config.seed, config.closed_pool, config, "render closed-set frames")
    model = build_model(ARCHITECTURE, len(CLASS_NAMES), **config.model_options())
    rng = np.random.default_rng([config.seed, 1])
    losses = _train(
        model, config.closed_steps, config.lr, lambda step: pool.batch(rng, config.batch),
        lambda logits, y: torch.nn.functional.cross_entropy(logits, y, ignore_index=VOID_LABEL),
        "closed-set training", config.onednn,
    )  # fmt: skip
    return model, losses


def entropy_max_fine_tune(
    model: torch.nn.Module,
    config: DefaultBundleConfig,
    proxy_fraction: tuple[float, float],
    closed: TrainingPool | None = None,
    proxy: TrainingPool | None = None,
) -> list[float]:
    """Step 2, in place: entropy maximization on batches of half closed-set frames, half closed-set frames with the
    OoD objects of proxy frames (OoD pixel fraction in ``proxy_fraction``) pasted in; returns the losses. The model
    is left in eval mode.

    The proxy frames are labelled like COCO-OoD (background void). Trained on as they are, a void background lets
    the network answer "uniform" for every pixel of a frame that holds a proxy (measured: the whole frame scores
    ≈ 1 and hazards in street scenes are not found), so their objects are pasted into labelled street frames,
    where a uniform background is penalized and the network has to localize.
    """
    torch.manual_seed(config.seed + 1)
    closed = closed or render_pool("closed", config.seed, config.closed_pool, config, "render closed-set frames")
    proxy = proxy or render_pool("proxy", config.seed + 1, config.proxy_pool, config, "render proxy frames",
                                 proxy_fraction=proxy_fraction)  # fmt: skip
    rng = np.random.default_rng([config.seed, 2])
    half = config.batch // 2

    def mixed(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        xa, ya = closed.batch(rng, half)
        xb, yb = closed.batch(rng, config.batch - half, proxies=proxy)
        return torch.cat([xa, xb]), torch.cat([ya, yb])

    return _train(
        model, config.ood_steps, config.ood_lr, mixed,
        lambda logits, y: entropy_max_loss(logits, y, lam=config.lam, ood_label=OOD_LABEL, void_label=VOID_LABEL),
        "entropy maximization", config.onednn,
    )  # fmt: skip


def choose_cut(y: npt.NDArray[np.int64], proba: npt.NDArray[np.float64], max_lost: float) -> dict[str, Any]:
    """The lowest cut on P(false positive) that removes at most ``max_lost`` of the true detections (y = 0).

    Returns ``{"max_p_false_positive", "false_positives", "false_positives_removed", "true_detections",
    "true_detections_lost"}`` on these components; with no true detection the cut is 0.5.
    """
    true_p = np.sort(proba[y == 0])[::-1]
    allowed = int(np.floor(max_lost * len(true_p)))
    if len(true_p) == 0:
        cut = 0.5
    else:  # components with P >= cut are removed: put the cut just above the (allowed + 1)-th highest true P
        cut = float(min(np.nextafter(true_p[allowed], 2.0), 1.0)) if allowed < len(true_p) else 1e-6
    removed = proba >= cut
    return {
        "max_p_false_positive": cut, "false_positives": int(y.sum()),
        "false_positives_removed": int((removed & (y == 1)).sum()), "true_detections": int((y == 0).sum()),
        "true_detections_lost": int((removed & (y == 0)).sum()),
    }  # fmt: skip


def train_network(config: DefaultBundleConfig) -> tuple[torch.nn.Module, dict[str, Any], dict[str, float]]:
    """Steps 1 and 2: the closed-set network fine-tuned by entropy maximization; (model in eval mode, training
    record for the manifest, timings in seconds)."""
    start = time.perf_counter()
    closed_pool = render_pool("closed", config.seed, config.closed_pool, config, "render closed-set frames")
    model, closed_losses = train_closed_set(config, closed_pool)
    timings = {"closed_set_s": time.perf_counter() - start}
    t0 = time.perf_counter()
    ood_losses = entropy_max_fine_tune(model, config, config.proxy_fraction, closed_pool)
    timings["entropy_maximization_s"] = time.perf_counter() - t0
    training = {
        "closed_set_loss_first_last": [closed_losses[0], float(np.mean(closed_losses[-20:]))],
        "entropy_max_loss_first_last": [ood_losses[0], float(np.mean(ood_losses[-20:]))],
    }
    return model, training, timings


def reuse_network(source: str | Path, config: DefaultBundleConfig) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of an earlier default bundle (``source``: a bundle folder or ``"default"``) instead of steps 1
    and 2; (model in eval mode, training record: the source's own, with ``network_from``, ``network_config`` and
    ``network_sha256``: the bundle that trained the network, as given, the configuration it was trained with and
    the SHA-256 of its weights).

    Raises:
        BundleError: ``source`` is not a bundle, or its network is not the light DeepLabv3+ of ``config``
            (architecture, options, classes, input size).
    """
    bundle = load_bundle(source)
    spec = config.spec()
    model_info = bundle.manifest["model"]
    found = (model_info.get("architecture"), model_info.get("options", {}), tuple(bundle.class_names),
             tuple(bundle.input_size))  # fmt: skip
    wanted = (spec.architecture, spec.options, spec.class_names, spec.input_size)
    if found != wanted:
        raise BundleError(f"{bundle.root}: its network ({found[0]} {found[1]}, {len(found[2])} classes, input "
                          f"{found[3]}) is not the one this build trains ({wanted[0]} {wanted[1]}, "
                          f"{len(wanted[2])} classes, input {wanted[3]})")  # fmt: skip
    previous = bundle.manifest.get("metadata", {})
    training = dict(previous.get("training", {}))
    if "network_from" not in training:  # the source trained this network itself (else keep the original source)
        training |= {
            "network_from": str(source),
            "network_config": previous.get("config"),
            "network_sha256": bundle.manifest["checksums"].get(bundle.manifest["model"]["files"]["torch"]),
        }
    return bundle.build_torch_model(), training


def build_default_bundle(
    out_dir: str | Path = DEFAULT_BUNDLE,
    config: DefaultBundleConfig | None = None,
    network_from: str | Path | None = None,
) -> Bundle:
    """Run the steps of the module docstring and write the bundle to ``out_dir``. With ``network_from`` (an earlier
    default bundle) its network is reused and steps 1–2 are skipped (:func:`reuse_network`)."""
    config = config or DefaultBundleConfig()
    start = time.perf_counter()
    if network_from is None:
        model, training, timings = train_network(config)
    else:
        model, training = reuse_network(network_from, config)
        timings = {}

    t0 = time.perf_counter()
    render_size = (config.render_height, config.render_width)
    spec = config.spec()
    train_world = SyntheticWorld("hazard", config.seed + 2, config.metric_frames, *render_size, n_hazards=(0, 3),
                                 hazard_shapes=config.meta_hazard_shapes)  # fmt: skip
    select_world = SyntheticWorld("hazard", config.seed + 3, config.select_frames, *render_size, n_hazards=(0, 3),
                                  hazard_shapes=config.meta_hazard_shapes)  # fmt: skip
    with DeployedPipeline(model, spec) as keep_all:
        data = extract(keep_all, train_world).dataset()
        selection = extract(keep_all, select_world, desc="selection frames").dataset()
    timings["metric_extraction_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mlp_config = MLPConfig(epochs=config.mlp_epochs, seed=config.seed)
    cv = _cross_validate(data, mlp_config)
    meta = train_meta_classifier(data, "mlp", mlp_config=mlp_config, ensemble=config.mlp_ensemble,
                                 metadata={"data": train_world.identity()})  # fmt: skip
    cut = choose_cut(selection.y, meta.predict_proba(selection.X, selection.names), config.max_lost)
    timings["meta_classifiers_s"] = time.perf_counter() - t0

    meta_training = {
        "threshold": spec.threshold, "metric_size": [config.metric_height, config.metric_width],
        "input_size": [config.height, config.width], "aspect_ratio": config.render_width / config.render_height,
        "region": "labelled", "data": train_world.identity(), "selection_data": select_world.identity(),
        "components": data.n, "false_positives": int(data.y.sum()), "cut_selection": cut,
    }  # fmt: skip
    metadata: dict[str, Any] = {
        "built_by": "meta-ood build-default-bundle", "config": asdict(config), "code_version": __version__,
        "torch_version": torch.__version__, "training": training, "meta_cv_group_kfold": cv,
    }  # fmt: skip
    bundle = package(model, out_dir, spec, meta_classifier=meta, max_p_false_positive=cut["max_p_false_positive"],
                     meta_training=meta_training, metadata=metadata)  # fmt: skip
    t0 = time.perf_counter()
    pipeline = AnomalyPipeline.from_bundle(bundle, backend="onnxruntime")
    evaluation = {}
    for name, shapes, seed in ((ALL_SHAPES_EVALUATION, None, config.eval_seed),
                               (ANIMALS_AND_BAGS_EVALUATION, HELD_OUT_HAZARDS, config.eval_seed + 1)):  # fmt: skip
        options: dict[str, Any] = {} if shapes is None else {"hazard_shapes": shapes}
        world = SyntheticWorld("hazard", seed, config.eval_frames, *render_size, **options)
        evaluation[name] = {"data": world.identity(), **evaluate_bundle(pipeline, world, progress=True)}
    timings["evaluation_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    metadata["evaluation"] = evaluation
    metadata["timings_s"] = timings
    package(model, out_dir, spec, meta_classifier=meta, max_p_false_positive=cut["max_p_false_positive"],
            meta_training=meta_training, metadata=json_safe(metadata))  # fmt: skip
    calibration_frames = config.domain_frames_spec()
    calibrate_bundle(out_dir, calibration_frames, data=calibration_frames.identity(), total=len(calibration_frames))
    first = evaluation[ALL_SHAPES_EVALUATION]
    LOG.info("default bundle -> %s in %.0f s; pixel AUROC %.3f AUPRC %.3f; false positives %d -> %d, true detections"
             " lost %d", out_dir, timings["total_s"], first["pixel"]["auroc"], first["pixel"]["auprc"],
             first["components"]["false_positives_before"], first["components"]["false_positives_after"],
             first["components"]["true_detections_lost"])  # fmt: skip
    return load_bundle(out_dir)


def _cross_validate(data: MetaDataset, mlp_config: MLPConfig) -> dict[str, Any]:
    folds = min(5, len(np.unique(data.group))) if data.group is not None else 5
    out = {}
    for clf in ("lr", "mlp"):
        report = cross_validate(data, CVConfig(clf, "group-kfold", folds=folds, mlp=mlp_config)).report()
        out[clf] = {k: report[k] for k in ("auroc", "auprc", "accuracy", "n")}
    return out
