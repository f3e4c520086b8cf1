from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from meta_ood_perception.models import build_model
from meta_ood_training.losses import entropy_max_loss
from meta_ood_training.ood_training import OoDTrainConfig, TrainingView, train_ood


class Scenes:
    """Tiny synthetic scenes: class 0 on the left, class 1 on the right; the proxy set has OoD squares."""

    def __init__(self, n, ood=False, seed=0):
        self.items = []
        rng = np.random.default_rng(seed)
        for _ in range(n):
            image = np.zeros((40, 40, 3), np.uint8)
            image[:, :20] = (200, 40, 40)
            image[:, 20:] = (40, 200, 40)
            target = np.zeros((40, 40), np.uint8)
            target[:, 20:] = 1
            if ood:
                target[:] = 255
                y, x = rng.integers(0, 25, 2)
                image[y : y + 15, x : x + 15] = (30, 30, 220)
                target[y : y + 15, x : x + 15] = 254
            self.items.append((image, target))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _config(tmp_path, **kw):
    base = OoDTrainConfig(out_dir=str(tmp_path / "run"), crop=32, epochs=3, lr=3e-3, batch_size=4, workers=0,
                          ood_per_epoch=4, device="cpu")  # fmt: skip
    return replace(base, **kw)


def _fixed_batch_loss(model):
    """The loss on every scene, uncropped and unflipped (batch-statistics BatchNorm, no gradient)."""
    pairs = [TrainingView(src, 40, False, 0)[i] for src in (Scenes(8), Scenes(8, ood=True)) for i in range(8)]
    x, y = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    model.train()
    with torch.no_grad():
        return float(entropy_max_loss(model(x), y))


def test_loss_falls_and_training_resumes(tmp_path):
    torch.manual_seed(0)
    model = build_model("deeplabv3plus_light", 2, width=8)
    before = _fixed_batch_loss(model)
    result = train_ood(_config(tmp_path, epochs=5), Scenes(8), Scenes(8, ood=True), model=model, progress=False)
    assert len(result["epoch_loss"]) == 5
    assert _fixed_batch_loss(model) < 0.9 * before
    state = torch.load(result["checkpoint"], weights_only=True)
    assert state["epoch"] == 5 and state["config"]["crop"] == 32
    assert (tmp_path / "run" / "checkpoint_epoch1.pt").is_file()
    resumed = train_ood(
        _config(tmp_path, epochs=6, resume=result["checkpoint"]),
        Scenes(8), Scenes(8, ood=True), model=build_model("deeplabv3plus_light", 2, width=8), progress=False,
    )  # fmt: skip
    assert len(resumed["epoch_loss"]) == 1  # only epoch 6 was left


def test_training_view_crops_pads_and_normalizes():
    view = TrainingView(Scenes(1), crop=48, flip=True, seed=0)
    x, y = view[0]
    assert x.shape == (3, 48, 48) and y.shape == (48, 48)
    assert (y[40:] == 255).all()  # padding is void
    assert x.dtype == torch.float32 and abs(float(x[:, :40, :40].mean())) < 3


def test_yaml_config(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 2\nlr: 1.0e-4\ncrop: 64\n")
    cfg = OoDTrainConfig.from_yaml(path)
    assert cfg.epochs == 2 and cfg.lr == 1e-4 and cfg.lam == 0.9 and cfg.ood_per_epoch == 297
    path.write_text("epoch: 2\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['epoch'\]"):
        OoDTrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="config file not found"):
        OoDTrainConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="invalid training configuration"):
        OoDTrainConfig(lam=2.0)
    path.write_text("model: deeplabv3plus_light\nmodel_options: {width: 8}\n")
    assert OoDTrainConfig.from_yaml(path).model_options == {"width": 8}
    path.write_text("model_options: 8\n")
    with pytest.raises(ValueError, match="model_options must be a mapping"):
        OoDTrainConfig.from_yaml(path)


def test_cli_train_ood_on_fake_dataset_trees(tmp_path):
    import numpy as np
    from test_datasets import _coco_tree, _png, _rgb

    from meta_ood_perception.cli import main
    from meta_ood_training.datasets import build_coco_ood

    for i in range(3):
        _png(tmp_path / f"cs/leftImg8bit/train/ulm/ulm_{i}_0_leftImg8bit.png", _rgb(40, 60, i))
        _png(tmp_path / f"cs/gtFine/train/ulm/ulm_{i}_0_gtFine_labelIds.png", np.full((40, 60), 7))
    _coco_tree(tmp_path / "coco")
    build_coco_ood(tmp_path / "coco", tmp_path / "coco_ood", progress=False)
    config = tmp_path / "cfg.yaml"
    config.write_text(
        f"out_dir: {tmp_path / 'run'}\ncityscapes_root: {tmp_path / 'cs'}\ncoco_ood_root: {tmp_path / 'coco_ood'}\n"
        "model: deeplabv3plus_light\nnum_classes: 19\ncrop: 32\nepochs: 1\nbatch_size: 2\nworkers: 0\n"
        "ood_per_epoch: 2\ndevice: cpu\n"
    )
    assert main(["train-ood", "--config", str(config)]) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    config.write_text(f"cityscapes_root: {tmp_path / 'nowhere'}\ncoco_ood_root: {tmp_path / 'coco_ood'}\n")
    assert main(["train-ood", "--config", str(config)]) == 2


def test_two_processes_with_torchrun(tmp_path):
    """DistributedDataParallel over gloo on the loopback interface, two CPU processes."""
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "run.py"
    script.write_text(
        "import sys, os\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import torch\n"
        "from pathlib import Path\n"
        "from test_ood_training import Scenes, _config\n"
        "from meta_ood_perception.models import build_model\n"
        "from meta_ood_training.ood_training import train_ood\n"
        "torch.manual_seed(0)\n"
        "r = train_ood(_config(Path(sys.argv[1]), epochs=1), Scenes(8), Scenes(8, ood=True),\n"
        "              model=build_model('deeplabv3plus_light', 2, width=8), progress=False)\n"
        "print('rank', os.environ['RANK'], 'steps ok', len(r['epoch_loss']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "rank 0 steps ok 1" in result.stdout and "rank 1 steps ok 1" in result.stdout
    assert (tmp_path / "run" / "last.pt").is_file()  # written by rank 0 only
