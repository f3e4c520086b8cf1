"""Entropy-maximization fine-tuning on Cityscapes + COCO-OoD (paper §3.1), resumable, single- or multi-process.

``meta-ood train-ood --config cfg.yaml`` reads an :class:`OoDTrainConfig` from YAML. The defaults are the paper's:
random 480-pixel crops and horizontal flips, Adam with lr 1e-5, 4 epochs, λ = 0.9, all Cityscapes train images plus
297 random COCO-OoD images per epoch. One optimizer lives for the whole run (the research code rebuilds it every
epoch, which resets Adam's moments). A checkpoint (model, optimizer, epoch, config) is written after every epoch
and ``resume`` continues from it. Under ``torchrun`` (WORLD_SIZE > 1) every process trains on its share of each
epoch's images with DistributedDataParallel.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from meta_ood_perception.errors import ConfigError
from meta_ood_perception.models import MEAN_RGB, STD_RGB, build_model, load_checkpoint

from .datasets.base import OOD_LABEL, VOID_LABEL
from .losses import entropy_max_loss

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class OoDTrainConfig:
    """Configuration of entropy-maximization training (all keys of the YAML file).

    Attributes:
        out_dir: where checkpoints (``checkpoint_epoch<N>.pt``, ``last.pt``) go.
        cityscapes_root: Cityscapes root (``leftImg8bit/``, ``gtFine/``).
        coco_ood_root: folder written by ``build_coco_ood`` (``index.json``, ``masks/``).
        model: model name for ``build_model``; num_classes: its classes; model_options: its options (e.g.
            ``{"width": 16}`` for ``deeplabv3plus_light``), recorded in every checkpoint for ``make-bundle``.
        init_checkpoint: weights to start from (published format or plain state dict); None = random init (warned:
            the paper fine-tunes the published Cityscapes DeepWV3Plus).
        resume: a checkpoint of this trainer to continue from.
        max_ood_fraction / min_ood_fraction: restrict COCO-OoD to informative (≤) / non-informative (≥) images.
        ood_per_epoch: COCO-OoD images per epoch (paper: 297).
        crop: random crop size in pixels (paper: 480); flip: random horizontal flips.
        epochs, lr, lam, batch_size, workers, seed: as named (paper: 4, 1e-5, 0.9).
        device: "auto" (CUDA if available), "cpu", "cuda", "cuda:1", ...
    """

    out_dir: str = "runs/ood"
    cityscapes_root: str = ""
    coco_ood_root: str = ""
    model: str = "deeplabv3plus_wrn38"
    num_classes: int = 19
    model_options: dict[str, Any] = field(default_factory=dict)
    init_checkpoint: str | None = None
    resume: str | None = None
    max_ood_fraction: float | None = None
    min_ood_fraction: float | None = None
    ood_per_epoch: int = 297
    crop: int = 480
    flip: bool = True
    epochs: int = 4
    lr: float = 1e-5
    lam: float = 0.9
    batch_size: int = 8
    workers: int = 4
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.crop < 16 or self.lr <= 0 or not 0 <= self.lam <= 1:
            raise ConfigError(f"invalid training configuration: {self}")
        if not isinstance(self.model_options, dict):
            raise ConfigError(f"model_options must be a mapping (e.g. {{width: 16}}), got {self.model_options!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> OoDTrainConfig:
        """Parse a YAML file; unknown keys and wrong types are errors naming the key."""
        import yaml

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}".replace("\n", " ")) from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of keys to values")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**raw)


class SegmentationSource(Protocol):
    """``len()`` and ``[i] -> (H×W×3 uint8 RGB, H×W uint8 labels)``: every dataset of ``meta_ood_training``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]: ...


class TrainingView(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Random crop (padding with void when the image is smaller), random flip, ToTensor + ImageNet normalization."""

    def __init__(self, source: SegmentationSource, crop: int, flip: bool, seed: int) -> None:
        self.source, self.crop, self.flip, self.seed = source, crop, flip, seed
        self.epoch = 0
        self.mean = torch.tensor(MEAN_RGB).view(3, 1, 1)
        self.std = torch.tensor(STD_RGB).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self.source[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h, w = target.shape
        ph, pw = max(self.crop - h, 0), max(self.crop - w, 0)
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
            target = np.pad(target, ((0, ph), (0, pw)), constant_values=VOID_LABEL)
        y0 = int(rng.integers(0, target.shape[0] - self.crop + 1))
        x0 = int(rng.integers(0, target.shape[1] - self.crop + 1))
        image = image[y0 : y0 + self.crop, x0 : x0 + self.crop]
        target = target[y0 : y0 + self.crop, x0 : x0 + self.crop]
        if self.flip and rng.random() < 0.5:
            image, target = image[:, ::-1], target[:, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
        return (x - self.mean) / self.std, torch.from_numpy(np.ascontiguousarray(target)).long()


class _Concat:
    def __init__(self, parts: Sequence[SegmentationSource]) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, index: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        part = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.parts[part][index - int(self.offsets[part])]


def pick_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_ood(
    config: OoDTrainConfig,
    in_distribution: SegmentationSource,
    ood_proxy: SegmentationSource,
    *,
    model: torch.nn.Module | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune ``model`` (or the configured one) with the entropy-maximization loss.

    Returns ``{"epoch_loss": [...], "checkpoint": path of last.pt}``. Targets of ``ood_proxy`` mark OoD pixels with
    254 and the rest 255 (COCO-OoD); ``in_distribution`` targets are train ids with 255 void.
    """
    from .datasets.sampling import MixedSampler

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1
    device = pick_device(config.device)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.manual_seed(config.seed)
    if model is None:
        model = build_model(config.model, config.num_classes, **config.model_options)
        if config.init_checkpoint:
            load_checkpoint(model, config.init_checkpoint)
        elif not config.resume and rank == 0:
            LOG.warning("no init_checkpoint: %s starts from random weights (the paper fine-tunes the published "
                        "Cityscapes DeepWV3Plus; set init_checkpoint)", config.model)  # fmt: skip
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start_epoch = 0
    out = Path(config.out_dir)
    if config.resume:
        state = torch.load(config.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch = int(state["epoch"])
        LOG.info("resumed from %s after epoch %d", config.resume, start_epoch)
    net: torch.nn.Module = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.index else None)
    view = TrainingView(_Concat([in_distribution, ood_proxy]), config.crop, config.flip, config.seed)
    sampler = MixedSampler(len(in_distribution), len(ood_proxy), min(config.ood_per_epoch, len(ood_proxy)),
                           seed=config.seed)  # fmt: skip
    history: list[float] = []
    last = out / "last.pt"
    for epoch in range(start_epoch, config.epochs):
        sampler.set_epoch(epoch)
        view.epoch = epoch
        indices = list(sampler)[rank::world]
        # A trailing batch of one image would break BatchNorm in the image-pooling branch: drop it.
        loader = DataLoader(
            view, batch_size=config.batch_size, sampler=indices, num_workers=config.workers,
            drop_last=len(indices) > config.batch_size,
        )  # fmt: skip
        net.train()
        total, steps = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress or rank != 0)
        for images, targets in bar:
            images, targets = images.to(device), targets.to(device)
            loss = entropy_max_loss(net(images), targets, lam=config.lam, ood_label=OOD_LABEL, void_label=VOID_LABEL)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach())
            steps += 1
            bar.set_postfix(loss=f"{total / (steps):.4f}")
        history.append(total / max(steps, 1))
        LOG.info("epoch %d: mean loss %.5f over %d steps", epoch + 1, history[-1], steps)
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                     "config": asdict(config)}  # fmt: skip
            torch.save(state, out / f"checkpoint_epoch{epoch + 1}.pt")
            torch.save(state, last)
    return {"epoch_loss": history, "checkpoint": str(last)}
