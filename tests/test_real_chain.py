"""The real-data path by CLI alone, on tiny fake trees in the official layouts.

Cityscapes (leftImg8bit / gtFine label ids), COCO (annotations/instances_train2017.json + train2017/*.jpg),
LostAndFound (leftImg8bit / gtCoarse, one folder per sequence) and Fishyscapes Static (the authors' release:
``*_labels.png`` with ``*_rgb.npz`` overlays on Cityscapes val images) → build-coco-ood → train-ood (light model,
one tiny epoch) → make-bundle (keep-all) → extract-metrics → meta-cv / meta-train → make-bundle --meta →
evaluate (in-sample warning) → replay of a bag → build-engine (skipped without TensorRT). Also: a randomly
initialized DeepWV3Plus in the published ``{'state_dict': {'module.…'}}`` format becomes a bundle.

The keep-all and final bundles use threshold t = 0 so that every labelled pixel is an OoD candidate: the
components are then exactly the connected parts of each frame's labelled region (one with a hazard, one or two
without), whatever one tiny epoch of training made of the network — a deterministic mix of true detections and
false positives for the meta classifier.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from meta_ood_perception.bundle import load_bundle
from meta_ood_perception.cli import main
from meta_ood_perception.meta_classifier import load_meta_classifier
from meta_ood_training.datasets import CITYSCAPES_CLASSES, FishyscapesStatic, LostAndFound
from meta_ood_training.meta_data import load_features

H, W = 64, 128
SIZE = [str(H), str(W)]


def _png(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _street(rng: np.random.Generator) -> np.ndarray:
    """A 64×128 street-like RGB frame: sky, buildings, road."""
    image = np.empty((H, W, 3), np.uint8)
    image[:20] = (110, 150, 200)
    image[20:34] = (90, 80, 75)
    image[34:] = (70, 70, 72)
    return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def cityscapes_tree(root: Path, split: str, n: int, seed: int) -> None:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png + gtFine/<split>/<city>/*_gtFine_labelIds.png."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((H, W), np.uint8)
    ids[:20], ids[20:34], ids[34:] = 23, 11, 7  # sky, building, road (label ids)
    ids[34:40, :10] = 8  # sidewalk
    for i in range(n):
        city = ("aachen", "bonn")[i % 2]
        stem = f"{city}_{i:06d}_000019"
        _png(root / f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png", _street(rng))
        _png(root / f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png", ids)


def coco_tree(root: Path) -> None:
    """annotations/instances_train2017.json + train2017/*.jpg; image 3 shows a person (excluded)."""
    rng = np.random.default_rng(7)
    (root / "train2017").mkdir(parents=True)
    images, annotations = [], []
    for i, (category, box) in enumerate(((18, (4, 4, 20)), (44, (10, 8, 14)), (1, (0, 0, 10)), (18, (20, 5, 12))), 1):
        name = f"{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "train2017" / name)
        images.append({"id": i, "file_name": name, "height": 40, "width": 60})
        x, y, s = box
        polygon = [[x, y, x + s, y, x + s, y + s, x, y + s]]
        annotations.append({"id": i, "image_id": i, "category_id": category, "iscrowd": 0, "area": s * s,
                            "bbox": [x, y, s, s], "segmentation": polygon})  # fmt: skip
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 44, "name": "bottle"}]
    (root / "annotations").mkdir()
    (root / "annotations/instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def _laf_labels(frame: int) -> np.ndarray:
    """Label ids: free road (1) in two or three disconnected parts, a hazard (id 5) inside the first one."""
    ids = np.zeros((H, W), np.uint8)  # 0 = unlabeled: void
    ids[30:62, 4:60] = 1
    ids[40:50, 20 + frame : 32 + frame] = 5
    ids[34:60, 72 : 84 + 4 * frame] = 1
    if frame % 2:
        ids[50:60, 110:124] = 1
    return ids


def lostandfound_tree(root: Path) -> None:
    """leftImg8bit/test/<sequence>/*_leftImg8bit.png + gtCoarse/test/<sequence>/*_gtCoarse_labelIds.png."""
    rng = np.random.default_rng(11)
    for s, sequence in enumerate(("01_Hanns_Klemm_Str_45", "04_Maurener_Weg_8", "13_Elly_Beinhorn_Str")):
        for f in range(2):
            frame = 2 * s + f
            stem = f"{sequence}_000000_{30 * (f + 1):06d}"
            image = _street(rng)
            ids = _laf_labels(frame)
            image[ids == 5] = (200, 120, 40)
            _png(root / f"leftImg8bit/test/{sequence}/{stem}_leftImg8bit.png", image)
            _png(root / f"gtCoarse/test/{sequence}/{stem}_gtCoarse_labelIds.png", ids)


def fishyscapes_release_tree(root: Path, cityscapes: Path) -> None:
    """The authors' Fishyscapes Static release: <NNNN>_<cityscapes id>_labels.png + _rgb.npz overlays on the
    Cityscapes val images (written here too)."""
    cityscapes_tree(cityscapes, "val", 2, seed=5)
    root.mkdir(parents=True)
    for i, base in enumerate(sorted((cityscapes / "leftImg8bit/val").glob("*/*_leftImg8bit.png"))):
        cityscapes_id = base.name.removesuffix("_leftImg8bit.png")
        labels = np.zeros((H, W), np.uint8)
        labels[:30] = 255
        labels[40:52, 50:70] = 1
        overlay = np.zeros((H, W, 3), np.int16)
        overlay[40:52, 50:70] = (120, -40, 60)
        _png(root / f"{i:04d}_{cityscapes_id}_labels.png", labels)
        np.savez(root / f"{i:04d}_{cityscapes_id}_rgb.npz", rgb=overlay)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


def run(*args: str) -> None:
    status = main([str(a) for a in args])
    assert status == 0, f"meta-ood {args[0]} exited with {status}"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Every step up to the final bundle; the log lines of all of them; wall time per step."""
    d = tmp_path_factory.mktemp("chain")
    records = _Records()
    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.INFO)
    root_logger.addHandler(records)
    times: dict[str, float] = {}
    t0 = time.perf_counter()

    def step(name: str, *args: str) -> None:
        t = time.perf_counter()
        run(*args)
        times[name] = time.perf_counter() - t

    try:
        cityscapes_tree(d / "cityscapes", "train", 4, seed=1)
        coco_tree(d / "coco")
        lostandfound_tree(d / "laf")
        fishyscapes_release_tree(d / "fs", d / "cityscapes")
        step("build-coco-ood", "build-coco-ood", "--coco-root", d / "coco", "--out", d / "coco_ood")
        config = d / "train.yaml"
        config.write_text(
            f"out_dir: {d / 'run'}\ncityscapes_root: {d / 'cityscapes'}\ncoco_ood_root: {d / 'coco_ood'}\n"
            "model: deeplabv3plus_light\nmodel_options: {width: 8}\nnum_classes: 19\ncrop: 64\nepochs: 1\n"
            "batch_size: 2\nworkers: 0\nood_per_epoch: 2\nlr: 1.0e-3\ndevice: cpu\n"
        )
        step("train-ood", "train-ood", "--config", config)
        checkpoint = d / "run" / "last.pt"
        common = ["--checkpoint", checkpoint, "--architecture", "deeplabv3plus_light", "--input-size", *SIZE,
                  "--threshold", "0"]  # fmt: skip
        step("make-bundle", "make-bundle", *common, "--out", d / "keep_all")
        features = d / "laf.npz"
        step("extract-metrics", "extract-metrics", "--bundle", d / "keep_all", "--dataset", "lostandfound",
             "--root", d / "laf", "--out", features)  # fmt: skip
        # no --folds: 3 LostAndFound sequences, so group-kfold falls back from 5 folds to 3 (warned)
        step("meta-cv", "meta-cv", "--features", features, "--classifier", "mlp", "--epochs", "5",
             "--report", d / "cv.json")  # fmt: skip
        step("meta-train", "meta-train", "--features", features, "--classifier", "mlp", "--epochs", "200",
             "--out", d / "meta" / "mlp.json")  # fmt: skip
        step("make-bundle --meta", "make-bundle", *common, "--meta", d / "meta" / "mlp.json", "--out", d / "final",
             "--max-p-false-positive", "0.6")  # fmt: skip
    finally:
        root_logger.removeHandler(records)
        root_logger.setLevel(level)
    times["total"] = time.perf_counter() - t0
    return SimpleNamespace(dir=d, features=features, checkpoint=checkpoint, keep_all=d / "keep_all",
                           final=d / "final", lines=records.lines, times=times)  # fmt: skip


def test_each_step_writes_what_the_next_reads(chain):
    d = chain.dir
    index = json.loads((d / "coco_ood" / "index.json").read_text())
    assert len(index) == 3  # the person image is dropped
    assert any("no init_checkpoint" in line and line.startswith("WARNING") for line in chain.lines)
    assert any("keeps every component" in line for line in chain.lines)
    no_calibration = [line for line in chain.lines if "no domain calibration" in line and "make-bundle" in line]
    assert no_calibration and all(line.startswith("WARNING") for line in no_calibration)  # auto: val has 2 images
    assert "has 2 images" in no_calibration[0] and "--calibration cityscapes:ROOT[:SPLIT]" in no_calibration[0]
    assert (d / "run" / "last.pt").is_file()

    keep_all = load_bundle(chain.keep_all)
    assert keep_all.meta_classifier is None and keep_all.class_names == list(CITYSCAPES_CLASSES)
    assert keep_all.input_size == (H, W) and keep_all.metric_size == (H, W) and keep_all.threshold == 0.0
    assert set(keep_all.manifest["model"]["files"]) == {"torch", "onnx"}
    assert keep_all.manifest["model"]["options"] == {"width": 8}  # from the train-ood checkpoint's config
    assert keep_all.manifest["metadata"]["network"]["format"] == "meta-ood train-ood checkpoint"

    data = load_features(chain.features)
    assert data.n == 15 and set(data.y.tolist()) == {0, 1}  # 6 frames: 6 with the hazard, 9 without
    assert sorted(set(data.group.tolist())) == [0, 1, 2]  # LostAndFound sequences
    laf = LostAndFound(d / "laf")
    assert data.metadata["data"] == laf.identity() and data.metadata["group"] == "sequence"
    assert data.metadata["extraction"]["input_size"] == [H, W] and data.metadata["extraction"]["region"] == "labelled"
    cv = json.loads((d / "cv.json").read_text())
    assert cv["n"] == 15 and cv["config"]["folds"] == 3
    assert any(line.startswith("WARNING") and "3 groups for 5 folds: using 3 folds" in line for line in chain.lines)

    meta = load_meta_classifier(d / "meta" / "mlp.json")
    assert meta.metadata["data"] == laf.identity()
    final = load_bundle(chain.final)
    assert final.meta_classifier is not None and final.max_p_false_positive == 0.6
    regime = final.meta_training
    assert regime["data"] == laf.identity() and regime["metric_size"] == [H, W] and regime["threshold"] == 0.0
    assert regime["components"] == 15 and regime["region"] == "labelled"
    assert not any("outside their regime" in line or "another network" in line for line in chain.lines)


def test_evaluate_warns_in_sample_and_replay_runs_the_bundle(chain, tmp_path, caplog):
    from meta_ood_training.drive_bag import write_drive_bag

    d = chain.dir
    t = time.perf_counter()
    run("evaluate", "--bundle", chain.final, "--dataset", "lostandfound", "--root", d / "laf",
        "--report", tmp_path / "laf.json")  # fmt: skip
    chain.times["evaluate"] = time.perf_counter() - t
    assert "in-sample" in caplog.text
    report = json.loads((tmp_path / "laf.json").read_text())
    assert report["meta"]["in_sample"] and report["frames"] == 6
    components = report["components"]
    assert components["components"] == 15 and report["pixel"]["auroc"] is not None
    assert components["false_positives_before"] == 9 and components["false_positives_after"] < 9  # it learned

    caplog.clear()
    run("evaluate", "--bundle", chain.final, "--dataset", "fishyscapes", "--root", d / "fs",
        "--cityscapes-root", d / "cityscapes", "--report", tmp_path / "fs.json")  # fmt: skip
    assert "in-sample" not in caplog.text
    assert json.loads((tmp_path / "fs.json").read_text())["frames"] == 2

    bag = write_drive_bag(tmp_path / "drive", seed=3, frames=4, height=H, width=W)
    t = time.perf_counter()
    run("replay", bag.path, "--out", tmp_path / "out", "--bundle", chain.final, "--backend", "onnxruntime",
        "--label-topic", bag.label_topic, "--summary", tmp_path / "summary.json")  # fmt: skip
    chain.times["replay"] = time.perf_counter() - t
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_processed"] == 4 and summary["frames_rejected"] == 0
    logging.getLogger(__name__).info("chain step times (s): %s", {k: round(v, 1) for k, v in chain.times.items()})


def test_export_onnx_into_the_bundle_registers_the_graph(chain, tmp_path, caplog):
    import shutil

    bundle_dir = tmp_path / "b"
    shutil.copytree(chain.keep_all, bundle_dir)
    out = bundle_dir / "model_heatmaps.onnx"
    run("export-onnx", "--bundle", bundle_dir, "--out", out, "--dynamic", "--heatmaps")
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["model"]["files"]["onnx"] == "model_heatmaps.onnx"
    assert "model.onnx" not in bundle.manifest["checksums"]
    run("extract-metrics", "--bundle", bundle_dir, "--dataset", "lostandfound", "--root", chain.dir / "laf",
        "--out", tmp_path / "f.npz", "--group", "frame")  # fmt: skip
    data = load_features(tmp_path / "f.npz")
    assert data.n == 15 and data.metadata["group"] == "frame" and sorted(set(data.group.tolist())) == list(range(6))
    assert main(["export-onnx", "--bundle", str(bundle_dir), "--out", str(bundle_dir / "x.onnx"), "--input-size",
                 "32", "64"]) == 2  # fmt: skip
    run("export-onnx", "--bundle", bundle_dir, "--out", tmp_path / "outside.onnx", "--input-size", "32", "64")
    assert load_bundle(bundle_dir).manifest["model"]["files"]["onnx"] == "model_heatmaps.onnx"

    from meta_ood_perception.bundle import BundleError
    from meta_ood_training.packaging import register_model_file

    # without --out: <bundle>/model.onnx again, registered; a registered engine of the old graph is dropped
    (bundle_dir / "model.engine").write_bytes(b"engine of the heat-map graph")
    register_model_file(bundle_dir, "tensorrt", bundle_dir / "model.engine")
    run("export-onnx", "--bundle", bundle_dir)
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest["model"]["files"] == {"torch": "model.safetensors", "onnx": "model.onnx"}
    assert not {"model.engine", "model_heatmaps.onnx"} & set(bundle.manifest["checksums"])
    assert not list(bundle_dir.glob(".*.tmp"))
    assert "dropped the TensorRT engine model.engine" in caplog.text
    assert main(["export-onnx", "--checkpoint", str(chain.checkpoint), "--input-size", *SIZE]) == 2
    assert "--checkpoint needs --out" in caplog.text

    with pytest.raises(BundleError, match="not a file inside the bundle directory"):
        register_model_file(bundle_dir, "onnx", tmp_path / "outside.onnx")
    with pytest.raises(BundleError, match="torch weights"):
        register_model_file(bundle_dir, "torch", out)
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    manifest["extra_field"] = {"kept": True}  # e.g. a domain calibration: registration keeps other fields
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))
    bundle = register_model_file(bundle_dir, "onnx", bundle_dir / "model.onnx")
    assert (
        bundle.manifest["extra_field"] == {"kept": True} and "model_heatmaps.onnx" not in bundle.manifest["checksums"]
    )


def test_an_interrupted_export_leaves_the_bundle_valid(chain, tmp_path, monkeypatch):
    import shutil

    import meta_ood_training.packaging as packaging

    bundle_dir = tmp_path / "b"
    shutil.copytree(chain.keep_all, bundle_dir)
    before = (bundle_dir / "bundle.json").read_text()

    def interrupted(model, path, **kwargs):
        Path(path).write_bytes(b"half a graph")
        raise KeyboardInterrupt

    monkeypatch.setattr(packaging, "export_onnx", interrupted)
    assert main(["export-onnx", "--bundle", str(bundle_dir), "--dynamic", "--heatmaps"]) == 130
    assert (bundle_dir / "bundle.json").read_text() == before and not list(bundle_dir.glob(".*.tmp"))
    load_bundle(bundle_dir)  # checksums still hold


def test_export_onnx_from_a_train_ood_checkpoint_infers_the_network(chain, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "m.onnx"
    run("export-onnx", "--checkpoint", chain.checkpoint, "--input-size", *SIZE, "--out", out)  # no --architecture
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": np.zeros((1, 3, H, W), np.float32)})
    assert logits.shape == (1, 19, H, W)


def test_build_engine_of_the_chain_bundle(chain, tmp_path):
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("TensorRT is not installed: build-engine --build-only needs it and an NVIDIA GPU")
    onnx = load_bundle(chain.final).file("onnx")
    run("build-engine", "--onnx", onnx, "--out", tmp_path / "m.engine", "--input-size", *SIZE, "--build-only")
    assert (tmp_path / "m.engine").is_file()


def test_published_wrn38_checkpoint_becomes_a_running_bundle(tmp_path, caplog):
    import torch

    caplog.set_level(logging.INFO)
    from meta_ood_perception.models import DeepWV3Plus
    from meta_ood_perception.pipeline import AnomalyPipeline

    torch.manual_seed(0)
    model = DeepWV3Plus(19)
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3,
                "mean_iu": np.float64(0.5)}, tmp_path / "wrn38.pth")  # fmt: skip
    del model
    run("make-bundle", "--checkpoint", tmp_path / "wrn38.pth", "--architecture", "deeplabv3plus_wrn38",
        "--input-size", "64", "64", "--out", tmp_path / "b")  # fmt: skip
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest["model"]["architecture"] == "deeplabv3plus_wrn38"
    assert bundle.manifest["metadata"]["network"]["format"].startswith("published")
    assert "validated" in caplog.text
    result = AnomalyPipeline.from_bundle(bundle, "onnxruntime").process(np.full((48, 96, 3), 90, np.uint8))
    assert result.score.shape == (48, 96) and np.isfinite(result.score).all()
    for big in (tmp_path / "wrn38.pth", *(tmp_path / "b").glob("model.*")):  # 3 × 550 MB: not kept by pytest
        big.unlink()


def test_make_bundle_errors_are_one_line(chain, tmp_path, caplog):
    args = ["make-bundle", "--checkpoint", str(chain.checkpoint), "--out", str(tmp_path / "x")]
    assert main([*args, "--architecture", "deeplabv3plus_wrn38"]) == 2
    assert "contradicts" in caplog.text
    assert main([*args, "--num-classes", "5"]) == 2
    assert main([*args, "--model-width", "16"]) == 2
    assert "--model-width 16 contradicts" in caplog.text and "trained with width 8" in caplog.text
    assert main([*args, "--calibration", "cityscapes:" + str(tmp_path / "nowhere")]) == 2
    assert "Cityscapes image folder not found" in caplog.text
    assert main([*args, "--calibration", "imagenet"]) == 2
    assert "--calibration must be" in caplog.text
    wrong = tmp_path / "m.json"
    from meta_ood_perception.meta_classifier import logistic

    logistic([f"f{i}" for i in range(3)], np.zeros(3), np.ones(3), np.ones(3), 0.0).save(wrong)
    assert main([*args, "--meta", str(wrong)]) == 2
    assert "--meta" in caplog.text and "component metrics of 19 classes" in caplog.text
    assert main([*args, "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in caplog.text
    for line in caplog.text.splitlines():
        assert line.count("meta-ood make-bundle:") <= 1


def test_fishyscapes_layouts_read_the_same_frames(tmp_path):
    fishyscapes_release_tree(tmp_path / "release", tmp_path / "cityscapes")
    release = FishyscapesStatic(tmp_path / "release", cityscapes_root=tmp_path / "cityscapes")
    assert release.layout == "release" and len(release) == 2
    image, target = release[0]
    assert image.shape == (H, W, 3) and set(np.unique(target)) == {0, 1, 255}
    base = np.asarray(Image.open(sorted((tmp_path / "cityscapes/leftImg8bit/val").glob("*/*.png"))[0]))
    np.testing.assert_array_equal(image[45, 55], np.clip(base[45, 55].astype(int) + np.array([120, -40, 60]), 0, 255))
    research = tmp_path / "research" / "Static"
    research.mkdir(parents=True)
    for i in range(len(release)):
        image, target = release[i]
        Image.fromarray(image).save(research / f"{i:04d}.jpg", quality=100)
        _png(research / f"{i:04d}.png", target)
    other = FishyscapesStatic(tmp_path / "research")
    assert other.layout == "research" and len(other) == 2
    np.testing.assert_array_equal(other[0][1], release[0][1])
    blended = tmp_path / "blended"
    blended.mkdir()
    for i in range(len(release)):
        image, target = release[i]
        _png(blended / f"{i:04d}_x_{i}_labels.png", target)
        _png(blended / f"{i:04d}_x_{i}_rgb.png", image)
    np.testing.assert_array_equal(FishyscapesStatic(blended)[1][0], release[1][0])
    folders = tmp_path / "folders" / "Static"
    for i in range(len(release)):
        image, target = release[i]
        _png(folders / "labels" / f"frame{i}.png", target)
        _png(folders / "original" / f"frame{i}.png", image)
    copy = FishyscapesStatic(tmp_path / "folders")
    assert copy.layout == "folders" and len(copy) == 2
    np.testing.assert_array_equal(copy[1][0], release[1][0])
    np.testing.assert_array_equal(copy[1][1], release[1][1])
    from meta_ood_training.datasets import DatasetError

    found = FishyscapesStatic(tmp_path / "release")  # <root>/../cityscapes
    assert found.cityscapes_root == (tmp_path / "cityscapes").resolve()
    np.testing.assert_array_equal(found[1][0], release[1][0])
    (tmp_path / "cityscapes").rename(tmp_path / "cs")
    with pytest.raises(DatasetError, match="give the Cityscapes root"):
        FishyscapesStatic(tmp_path / "release")


def test_in_sample_rules(tmp_path, caplog):
    from meta_ood_perception.bundle import DEFAULT_BUNDLE
    from meta_ood_training.evaluate_bundle import in_sample

    laf = {"dataset": "lostandfound", "root": "/d/laf", "split": "test", "frames": 100}
    assert in_sample({"data": laf}, laf | {"frames": 10})
    assert in_sample({"data": laf}, laf | {"split": "train"}) is None
    assert in_sample({"data": laf}, laf | {"root": "/d/other"}) is None
    assert in_sample({"data": laf}, {"dataset": "fishyscapes", "root": "/d/laf", "split": "test", "frames": 3}) is None
    assert in_sample(None, laf) is None and in_sample({"threshold": 0.7}, laf) is None
    world = {"dataset": "synthetic hazard", "seed": 2026, "frames": 2500, "size": [256, 512], "n_hazards": [0, 3]}
    assert "cut chosen" in in_sample({"selection_data": world}, {"dataset": "synthetic hazard", "seed": 2026,
                                                                 "frames": 5, "size": [128, 256]})  # fmt: skip
    assert in_sample({"data": world}, {"dataset": "synthetic hazard", "seed": 7, "frames": 5}) is None
    if not DEFAULT_BUNDLE.exists():
        return
    seed = load_bundle("default").meta_training["data"]["seed"]
    args = ["evaluate", "--bundle", "default", "--dataset", "synthetic", "--frames", "2", "--size", "128", "256"]
    run(*args, "--seed", seed, "--report", tmp_path / "r.json")
    assert "in-sample" in caplog.text
    caplog.clear()
    run(*args, "--seed", seed + 1000, "--report", tmp_path / "r.json")
    assert "in-sample" not in caplog.text


def test_a_bundle_at_another_resolution_than_its_meta_classifier_warns(chain, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    run("make-bundle", "--checkpoint", chain.checkpoint, "--input-size", "32", "64", "--metric-size", "48", "96",
        "--threshold", "0", "--meta", chain.dir / "meta" / "mlp.json", "--out", tmp_path / "b")  # fmt: skip
    assert "extracted at input size 64×128, this bundle uses 32×64" in caplog.text
    assert "extracted at metric size 64×128, this bundle uses 48×96" in caplog.text
    caplog.clear()
    run("evaluate", "--bundle", tmp_path / "b", "--dataset", "lostandfound", "--root", chain.dir / "laf",
        "--report", tmp_path / "r.json")  # fmt: skip
    assert "runs its network at 32×64 but its meta classifier was trained on components of a network run at 64×128" in (
        caplog.text
    )
    assert "computes metrics at 48×96 but its meta classifier was trained at 64×128" in caplog.text  # the pipeline's


def test_make_bundle_calibrates_the_domain_monitor(chain, tmp_path, caplog):
    from meta_ood_training.make_bundle import parse_calibration

    assert parse_calibration("cityscapes:/data/cs:train").split == "train"
    assert parse_calibration("cityscapes:/data/cs").root == Path("/data/cs")
    assert parse_calibration("synthetic:4").seed == 4 and parse_calibration("none").kind == "none"
    assert parse_calibration("auto").kind == "auto"
    args = ["make-bundle", "--checkpoint", str(chain.checkpoint), "--input-size", *SIZE, "--out", str(tmp_path / "b")]
    cityscapes = f"cityscapes:{chain.dir / 'cityscapes'}:train"
    assert main([*args, "--calibration", cityscapes]) == 2  # 4 images
    assert "needs at least 20" in caplog.text
    cityscapes_tree(tmp_path / "cityscapes", "val", 20, seed=9)
    run(*args, "--calibration", f"cityscapes:{tmp_path / 'cityscapes'}", "--calibration-frames", "20")
    domain = load_bundle(tmp_path / "b").manifest["domain"]
    assert domain["data"]["dataset"] == "cityscapes" and domain["data"]["split"] == "val"
    run(*args, "--calibration", "synthetic:3", "--calibration-frames", "20")
    assert load_bundle(tmp_path / "b").manifest["domain"]["data"]["seed"] == 3


def test_make_bundle_calibrates_on_the_checkpoints_cityscapes_val_by_default(chain, tmp_path, caplog):
    import torch

    caplog.set_level(logging.INFO)
    checkpoint = torch.load(chain.checkpoint, weights_only=True)
    checkpoint["config"]["cityscapes_root"] = str(tmp_path / "cityscapes")
    torch.save(checkpoint, tmp_path / "last.pt")
    cityscapes_tree(tmp_path / "cityscapes", "val", 20, seed=9)
    run("make-bundle", "--checkpoint", tmp_path / "last.pt", "--input-size", *SIZE, "--calibration-frames", "20",
        "--out", tmp_path / "b")  # fmt: skip
    domain = load_bundle(tmp_path / "b").manifest["domain"]
    assert domain["data"]["root"] == str((tmp_path / "cityscapes").resolve()) and domain["data"]["split"] == "val"
    assert "--calibration auto" in caplog.text and "make-bundle: no domain calibration" not in caplog.text


def test_cityscapes_calibration_frames_are_spread_over_the_split(tmp_path, monkeypatch):
    import meta_ood_training.make_bundle as make_bundle

    cityscapes_tree(tmp_path / "cs", "val", 40, seed=2)  # sorted by name: 20 aachen frames, then 20 bonn frames
    read: list[Path] = []
    monkeypatch.setattr(make_bundle, "read_rgb", lambda path: read.append(path) or np.zeros((H, W, 3), np.uint8))
    frames, identity = make_bundle.calibration_frames(make_bundle.parse_calibration(f"cityscapes:{tmp_path / 'cs'}"),
                                                      (H, W), 20)  # fmt: skip
    assert len(list(frames)) == 20 and len(set(read)) == 20
    assert {p.parent.name for p in read} == {"aachen", "bonn"}
    assert read[0].name.startswith("aachen_000000") and read[-1].name.startswith("bonn_000039")
    assert identity["frames"] == 20 and identity["selection"] == "evenly spaced" and identity["split_images"] == 40


def test_cli_defaults_are_the_named_constants():
    from meta_ood_perception.bundle import DEFAULT_MAX_P_FALSE_POSITIVE
    from meta_ood_perception.cli import build_parser
    from meta_ood_perception.scores import DEFAULT_THRESHOLD
    from meta_ood_training.make_bundle import DEFAULT_CALIBRATION_FRAMES, MIN_CALIBRATION_FRAMES

    parser = build_parser()
    args = parser.parse_args(["make-bundle", "--checkpoint", "w.pt", "--out", "b"])
    assert args.threshold == DEFAULT_THRESHOLD and args.max_p_false_positive == DEFAULT_MAX_P_FALSE_POSITIVE
    assert args.calibration == "auto" and args.calibration_frames is None  # resolved to DEFAULT_CALIBRATION_FRAMES
    sub = next(a for a in parser._actions if a.dest == "command").choices["make-bundle"]
    text = " ".join(sub.format_help().split())
    assert f"at least {MIN_CALIBRATION_FRAMES} (default: {DEFAULT_CALIBRATION_FRAMES})" in text
