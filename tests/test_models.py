from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from meta_ood_perception.models import CheckpointError, build_model, extract_state_dict, load_checkpoint

LAYOUT = json.loads((Path(__file__).parent / "data" / "deepwv3plus_state_dict.json").read_text())


@pytest.fixture(scope="module")
def wrn38():
    torch.manual_seed(0)
    return build_model("deeplabv3plus_wrn38", 19)


def test_wrn38_matches_the_published_layout_key_for_key(wrn38):
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in wrn38.state_dict().items()]
    published = [(e["key"], e["shape"], e["dtype"]) for e in LAYOUT["entries"]]
    assert ours == published
    assert sum(p.numel() for p in wrn38.parameters()) == LAYOUT["n_parameters"] == 137_103_936
    by_module = {}
    for name, p in wrn38.named_parameters():
        by_module[name.split(".")[0]] = by_module.get(name.split(".")[0], 0) + p.numel()
    assert by_module == LAYOUT["parameters_by_top_module"]
    assert torch.nn.Dropout is not torch.nn.Dropout2d  # the research code's monkey patch is not repeated


def test_wrn38_feature_shapes_scale_with_the_input(wrn38):
    shapes = {}
    for name in ("mod1", "pool2", "mod2", "pool3", "mod3", "mod4", "mod5", "mod6", "mod7", "aspp", "bot_aspp"):
        getattr(wrn38, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, list(o.shape)))
    wrn38.eval()
    with torch.no_grad():
        out = wrn38(torch.randn(1, 3, 64, 128))
    assert out.shape == (1, 19, 64, 128)
    for name, (b, c, h, w) in ((k, LAYOUT["feature_shapes_512x1024"][k]) for k in shapes):
        assert shapes[name] == [b, c, h // 8, w // 8], name


def test_published_checkpoint_format_loads_strictly(tmp_path, wrn38):
    light = build_model("deeplabv3plus_light", 19, width=8)
    published = {"state_dict": {f"module.{k}": v.clone() + 1 for k, v in light.state_dict().items()}, "epoch": 3}
    path = tmp_path / "ckpt.pth"
    torch.save(published, path)
    fresh = load_checkpoint(build_model("deeplabv3plus_light", 19, width=8), path)
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, published["state_dict"][f"module.{k}"])
    torch.save(light.state_dict(), tmp_path / "plain.pt")
    load_checkpoint(build_model("deeplabv3plus_light", 19, width=8), tmp_path / "plain.pt")
    # the WiderResNet state dict in the published format fits the model (checked in memory: 548 MB on disk)
    assert extract_state_dict({"state_dict": {f"module.{k}": v for k, v in wrn38.state_dict().items()}}).keys() == (
        wrn38.state_dict().keys()
    )


def _damage(sd, how):
    sd = dict(sd)
    if how == "missing":
        sd.pop("final.2.weight")
    elif how == "unexpected":
        sd["head.extra.weight"] = torch.zeros(1)
    elif how == "shape":
        sd["final.2.weight"] = torch.zeros(20, *sd["final.2.weight"].shape[1:])
    return {"state_dict": {f"module.{k}": v for k, v in sd.items()}}


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("missing", r"1 missing key\(s\): final.2.weight"),
        ("unexpected", r"1 unexpected key\(s\): head.extra.weight"),
        ("shape", r"mis-shaped key\(s\): final.2.weight: checkpoint \(20, 32, 1, 1\) vs model \(19, 32, 1, 1\)"),
    ],
)
def test_damaged_checkpoints_name_the_keys(tmp_path, how, match):
    model = build_model("deeplabv3plus_light", 19, width=8)
    torch.save(_damage(model.state_dict(), how), tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(model, tmp_path / "bad.pth")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_unreadable_and_unsafe_files(tmp_path):
    model = build_model("deeplabv3plus_light", 19, width=8)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(model, tmp_path / "junk.pth")

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    (tmp_path / "evil.pth").write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(model, tmp_path / "evil.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict"):
        load_checkpoint(model, tmp_path / "nostate.pth")


def test_light_models():
    model = build_model("deeplabv3plus_light", 19)
    assert 3e6 < sum(p.numel() for p in model.parameters()) < 6e6
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 128))
    assert out.shape == (2, 19, 64, 128)
    assert torch.isfinite(out).all()
    resnet18 = build_model("deeplabv3plus_resnet18", 7)
    assert sum(p.numel() for p in resnet18.parameters()) > 3 * sum(p.numel() for p in model.parameters())
    with pytest.raises(ValueError, match="unknown model 'unet'"):
        build_model("unet")
    with pytest.raises(ValueError, match="takes only 'width'"):
        build_model("deeplabv3plus_light", depth=3)
    with pytest.raises(ValueError, match="num_classes must be at least 2"):
        build_model("deeplabv3plus_light", 1)


def test_published_snapshot_with_numpy_metadata_loads(tmp_path):
    import numpy as np

    model = build_model("deeplabv3plus_light", 19, width=8)
    snapshot = {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "epoch": 3, "mean_iu": np.float64(0.81), "command": "train.py --arch deepv3"}  # fmt: skip
    torch.save(snapshot, tmp_path / "snapshot.pth")
    load_checkpoint(build_model("deeplabv3plus_light", 19, width=8), tmp_path / "snapshot.pth")
