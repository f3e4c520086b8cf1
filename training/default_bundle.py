"""``meta-ood build-default-bundle``: the whole method on the synthetic world, end to end, on a CPU.

1. closed-set training of the light DeepLabv3+ on street scenes (cross-entropy, train ids);
2. entropy-maximization fine-tuning on street scenes with pasted OoD proxies (informative, ≤ 20 % OoD pixels);
3. component metrics on a set of frames with 0–3 road hazards each;
4. logistic and MLP meta classifiers (cross-validated by frame, then fitted on all components);
5. ONNX export, the bundle (``bundle.json``, ``model.safetensors``, ``model.onnx``, the MLP meta classifier), and
   its own evaluation on hazard frames of a held-out seed, recorded in ``bundle.json``.

Every step is seeded; the configuration, seeds, timings and code version go into the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from meta_ood_perception import __version__
from meta_ood_perception.bundle import DEFAULT_BUNDLE, Bundle, load_bundle, write_bundle
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model
from meta_ood_perception.reports import json_safe

from .datasets.base import OOD_LABEL, VOID_LABEL
from .evaluate_bundle import evaluate_bundle
from .export import export_onnx
from .losses import entropy_max_loss
from .meta_cv import CVConfig, cross_validate
from .meta_extract import extract, model_frames
from .meta_models import MLPConfig
from .meta_train import train_meta_classifier
from .synthetic import CLASS_NAMES, SyntheticWorld

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DefaultBundleConfig:
    """Sizes, steps and seeds of the default-bundle build (the defaults are the committed bundle's)."""

    height: int = 128
    width: int = 256
    model_width: int = 16
    closed_steps: int = 700
    ood_steps: int = 350
    batch: int = 8
    lr: float = 2e-3
    ood_lr: float = 5e-4
    lam: float = 0.9
    proxy_fraction: tuple[float, float] = (0.02, 0.2)
    metric_frames: int = 160
    eval_frames: int = 60
    mlp_epochs: int = 50
    seed: int = 2024
    eval_seed: int = 99_001
    #: oneDNN (mkldnn) convolutions in training. The tiny smoke model (width 4) intermittently deadlocks in oneDNN's
    #: 1x1-convolution weight backward (a GOMP barrier) on 2-core machines; the smoke build turns it off.
    onednn: bool = True


def _batches(config: DefaultBundleConfig, kind: str, seed: int) -> SyntheticWorld:
    options: dict[str, Any] = {"proxy_fraction": config.proxy_fraction} if kind == "proxy" else {}
    return SyntheticWorld(kind, seed, 10**9, config.height, config.width, **options)  # type: ignore[arg-type]


def _tensor_batch(world: SyntheticWorld, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, targets = zip(*(world[start + i] for i in range(size)), strict=True)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN_RGB).view(1, 3, 1, 1)
    std = torch.tensor(STD_RGB).view(1, 3, 1, 1)
    return (x - mean) / std, torch.from_numpy(np.stack(targets)).long()


def _train(
    model: torch.nn.Module, steps: int, lr: float, batch_fn: Any, loss_fn: Any, desc: str, onednn: bool = True
) -> list[float]:
    with torch.backends.mkldnn.flags(enabled=onednn):
        return _train_loop(model, steps, lr, batch_fn, loss_fn, desc)


def _train_loop(model: torch.nn.Module, steps: int, lr: float, batch_fn: Any, loss_fn: Any, desc: str) -> list[float]:
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
    return losses


def train_closed_set(config: DefaultBundleConfig) -> tuple[torch.nn.Module, list[float]]:
    """Step 1: the light DeepLabv3+ trained with cross-entropy on closed-set street scenes; (model, losses)."""
    torch.manual_seed(config.seed)
    model = build_model("deeplabv3plus_light", len(CLASS_NAMES), width=config.model_width)
    closed = _batches(config, "closed", config.seed)
    losses = _train(
        model, config.closed_steps, config.lr,
        lambda step: _tensor_batch(closed, step * config.batch, config.batch),
        lambda logits, y: torch.nn.functional.cross_entropy(logits, y, ignore_index=VOID_LABEL),
        "closed-set training", config.onednn,
    )  # fmt: skip
    model.eval()
    return model, losses


def entropy_max_fine_tune(
    model: torch.nn.Module, config: DefaultBundleConfig, proxy_fraction: tuple[float, float]
) -> list[float]:
    """Step 2, in place: entropy maximization on half closed-set, half proxy batches with OoD pixel fraction in
    ``proxy_fraction``; returns the losses. The model is left in eval mode."""
    torch.manual_seed(config.seed + 1)
    closed = _batches(config, "closed", config.seed)
    proxy = SyntheticWorld("proxy", config.seed + 1, 10**9, config.height, config.width, proxy_fraction=proxy_fraction)
    half = config.batch // 2

    def mixed(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        xa, ya = _tensor_batch(closed, 10**7 + step * half, half)
        xb, yb = _tensor_batch(proxy, step * (config.batch - half), config.batch - half)
        return torch.cat([xa, xb]), torch.cat([ya, yb])

    losses = _train(
        model, config.ood_steps, config.ood_lr, mixed,
        lambda logits, y: entropy_max_loss(logits, y, lam=config.lam, ood_label=OOD_LABEL, void_label=VOID_LABEL),
        "entropy maximization", config.onednn,
    )  # fmt: skip
    model.eval()
    return losses


def build_default_bundle(out_dir: str | Path = DEFAULT_BUNDLE, config: DefaultBundleConfig | None = None) -> Bundle:
    """Run the five steps of the module docstring and write the bundle to ``out_dir``."""
    config = config or DefaultBundleConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    model, closed_losses = train_closed_set(config)
    timings["closed_set_s"] = time.perf_counter() - start
    t0 = time.perf_counter()
    ood_losses = entropy_max_fine_tune(model, config, config.proxy_fraction)
    timings["entropy_maximization_s"] = time.perf_counter() - t0
    model.eval()

    t0 = time.perf_counter()
    # 0–3 hazards per frame: frames without hazards contribute false-positive components, as on a real road.
    hazards = SyntheticWorld(
        "hazard", config.seed + 2, config.metric_frames, config.height, config.width, n_hazards=(0, 3)
    )
    data = extract(model_frames(model, hazards))
    timings["metric_extraction_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mlp_config = MLPConfig(epochs=config.mlp_epochs, seed=config.seed)
    folds = min(5, len(np.unique(data.group))) if data.group is not None else 5
    cv = {
        clf: cross_validate(data, CVConfig(clf, "group-kfold", folds=folds, mlp=mlp_config)).report()
        for clf in ("lr", "mlp")
    }
    meta = train_meta_classifier(data, "mlp", mlp_config=mlp_config, metadata={"data": "synthetic hazard frames"})
    timings["meta_classifiers_s"] = time.perf_counter() - t0

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_file = out / "model.onnx"
    export_onnx(model, onnx_file, num_classes=len(CLASS_NAMES), height=config.height, width=config.width, dynamic=True)
    metadata: dict[str, Any] = {
        "built_by": "meta-ood build-default-bundle",
        "config": asdict(config),
        "code_version": __version__,
        "torch_version": torch.__version__,
        "training": {
            "closed_set_loss_first_last": [closed_losses[0], float(np.mean(closed_losses[-20:]))],
            "entropy_max_loss_first_last": [ood_losses[0], float(np.mean(ood_losses[-20:]))],
            "components": data.n,
            "false_positive_ratio": float(data.y.mean()) if data.n else None,
        },
        "meta_cv_group_kfold": {clf: {k: r[k] for k in ("auroc", "auprc", "accuracy", "n")} for clf, r in cv.items()},
    }
    bundle = write_bundle(
        out, model=model, architecture="deeplabv3plus_light", model_options={"width": config.model_width},
        class_names=list(CLASS_NAMES), input_size=(config.height, config.width), meta_classifier=meta,
        mean=MEAN_RGB, std=STD_RGB, extra_model_files={"onnx": onnx_file.name}, metadata=metadata,
    )  # fmt: skip
    t0 = time.perf_counter()
    world = SyntheticWorld("hazard", config.eval_seed, config.eval_frames, 256, 512)
    evaluation = evaluate_bundle(bundle, world, progress=True)
    timings["evaluation_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    metadata["evaluation"] = {"dataset": f"synthetic hazards, seed {config.eval_seed}, {config.eval_frames} frames "
                              "at 256x512", **evaluation}  # fmt: skip
    metadata["timings_s"] = timings
    bundle = write_bundle(
        out, model=model, architecture="deeplabv3plus_light", model_options={"width": config.model_width},
        class_names=list(CLASS_NAMES), input_size=(config.height, config.width), meta_classifier=meta,
        mean=MEAN_RGB, std=STD_RGB, extra_model_files={"onnx": onnx_file.name}, metadata=finite(metadata),
    )  # fmt: skip
    LOG.info("default bundle -> %s in %.0f s; pixel AUROC %.3f AUPRC %.3f", out, timings["total_s"],
             evaluation["pixel"]["auroc"], evaluation["pixel"]["auprc"])  # fmt: skip
    return load_bundle(out)


def finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively (JSON has no NaN)."""
    return json_safe(value)
