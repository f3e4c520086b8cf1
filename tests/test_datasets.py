from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from meta_ood_training.datasets import (
    CityscapesSegmentation,
    CocoOoD,
    DatasetError,
    FishyscapesStatic,
    LostAndFound,
    MixedSampler,
    build_coco_ood,
    informative_subset,
)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _rgb(h=4, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    image = _rgb()
    ids = np.array([[7, 8, 26, 0, 33, 24]] * 4)  # road, sidewalk, car, unlabeled, bicycle, person
    _png(tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", image)
    _png(tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", ids)
    ds = CityscapesSegmentation(tmp_path, "train")
    assert len(ds) == 1
    img, target = ds[0]
    np.testing.assert_array_equal(img, image)
    assert target[0].tolist() == [0, 1, 13, 255, 18, 11]


def test_cityscapes_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match=r"Cityscapes image folder not found: .*leftImg8bit/val"):
        CityscapesSegmentation(tmp_path, "val")
    _png(tmp_path / "leftImg8bit/val/bonn/bonn_1_2_leftImg8bit.png", _rgb())
    (tmp_path / "gtFine/val/bonn").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"label file.* missing, first: .*bonn_1_2_gtFine_labelIds\.png"):
        CityscapesSegmentation(tmp_path, "val")


def _coco_tree(root):
    images = []
    for i in (1, 2, 3, 4):
        name = f"{i:012d}.jpg"
        Image.fromarray(_rgb(20, 30, i)).save(
            (root / "train2017").mkdir(parents=True, exist_ok=True) or root / "train2017" / name
        )
        images.append({"id": i, "file_name": name, "height": 20, "width": 30})

    def ann(ann_id, image_id, category_id, x0, y0, size):
        polygon = [[x0, y0, x0 + size, y0, x0 + size, y0 + size, x0, y0 + size]]
        bbox = [x0, y0, size, size]
        return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": polygon,
                "area": size * size, "bbox": bbox, "iscrowd": 0}  # fmt: skip

    annotations = [ann(1, 1, 18, 0, 0, 10), ann(2, 2, 1, 0, 0, 10), ann(3, 2, 18, 10, 10, 5), ann(4, 4, 44, 0, 0, 19)]
    categories = [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}, {"id": 44, "name": "bottle"}]
    (root / "annotations").mkdir()
    (root / "annotations/instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def test_coco_ood_builder_masks_index_and_subsets(tmp_path):
    _coco_tree(tmp_path / "coco")
    index = build_coco_ood(tmp_path / "coco", tmp_path / "out", progress=False)
    assert [e["mask"] for e in index] == ["000000000001.png", "000000000004.png"]  # person image and empty image out
    ds = CocoOoD.from_folder(tmp_path / "out")
    image, mask = ds[0]
    assert image.shape == (20, 30, 3)
    assert set(np.unique(mask)) == {254, 255}
    assert index[0]["ood_fraction"] == pytest.approx((mask == 254).mean())
    assert 0.1 < index[0]["ood_fraction"] < 0.3 and index[1]["ood_fraction"] > 0.5
    assert [e["mask"] for e in informative_subset(index, max_fraction=0.1)] == []
    assert [e["mask"] for e in informative_subset(index, max_fraction=0.3)] == ["000000000001.png"]
    assert [e["mask"] for e in informative_subset(index, min_fraction=0.5)] == ["000000000004.png"]
    with pytest.raises(DatasetError, match=r"annotation file not found: .*instances_val2017\.json"):
        build_coco_ood(tmp_path / "coco", tmp_path / "out", "val2017")
    with pytest.raises(DatasetError, match="index not found"):
        CocoOoD.from_folder(tmp_path)


def test_coco_ood_skips_annotated_images_missing_on_disk(tmp_path, caplog):
    _coco_tree(tmp_path / "coco")
    (tmp_path / "coco/train2017/000000000004.jpg").unlink()  # a partial download
    with caplog.at_level(logging.WARNING):
        index = build_coco_ood(tmp_path / "coco", tmp_path / "out", progress=False)
    assert [e["mask"] for e in index] == ["000000000001.png"]
    warnings = [r.getMessage() for r in caplog.records if "missing" in r.getMessage()]
    assert len(warnings) == 1 and "skipped 1 of 4 annotated train2017 images" in warnings[0]
    assert "000000000004.jpg" in warnings[0] and "\n" not in warnings[0]
    (tmp_path / "coco/train2017/000000000001.jpg").unlink()
    with pytest.raises(DatasetError, match=r"no COCO-OoD image left: 2 of the 4 images .* missing") as err:
        build_coco_ood(tmp_path / "coco", tmp_path / "out", progress=False)
    assert "\n" not in str(err.value)


def test_lost_and_found_protocol(tmp_path):
    ids = np.array([[0, 1, 2, 31, 43, 39]] * 3)
    _png(tmp_path / "leftImg8bit/test/02_Hanns/02_Hanns_000000_000100_leftImg8bit.png", _rgb(3, 6))
    _png(tmp_path / "gtCoarse/test/02_Hanns/02_Hanns_000000_000100_gtCoarse_labelIds.png", ids)
    _, target = LostAndFound(tmp_path)[0]
    assert target[0].tolist() == [255, 0, 1, 255, 1, 255]
    for seq, frame in (("02_Hanns", 200), ("04_Maurener", 50)):
        stem = f"{seq}_000000_{frame:06d}"
        _png(tmp_path / f"leftImg8bit/test/{seq}/{stem}_leftImg8bit.png", _rgb(3, 6))
        _png(tmp_path / f"gtCoarse/test/{seq}/{stem}_gtCoarse_labelIds.png", ids)
    assert LostAndFound(tmp_path).sequences == [0, 0, 1]  # frames of one sequence share a group
    (tmp_path / "leftImg8bit/train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="LostAndFound label folder not found"):
        LostAndFound(tmp_path, "train")


def test_fishyscapes_static(tmp_path):
    folder = tmp_path / "Static"
    folder.mkdir()
    Image.fromarray(_rgb(2, 4)).save(folder / "0001.jpg")
    _png(folder / "0001.png", [[0, 1, 255, 7], [0, 0, 1, 1]])
    ds = FishyscapesStatic(tmp_path)
    assert len(ds) == 1
    assert ds[0][1].tolist() == [[0, 1, 255, 255], [0, 0, 1, 1]]
    (folder / "0002.png").write_bytes((folder / "0001.png").read_bytes())
    with pytest.raises(DatasetError, match=r"image.* missing, first: .*0002\.jpg"):
        FishyscapesStatic(tmp_path)


def test_fishyscapes_research_layout_in_subfolders_and_layouts_directly_at_the_root(tmp_path):
    labels = [[0, 1, 255, 7], [0, 0, 1, 1]]
    nested = tmp_path / "nested" / "Static" / "part1"
    nested.mkdir(parents=True)
    Image.fromarray(_rgb(2, 4)).save(nested / "0001.jpg")
    _png(nested / "0001.png", labels)
    ds = FishyscapesStatic(tmp_path / "nested")
    assert ds.layout == "research" and len(ds) == 1 and ds[0][1].tolist() == [[0, 1, 255, 255], [0, 0, 1, 1]]

    flat = tmp_path / "flat"  # no Static/: <name>.jpg + <name>.png directly at the root
    flat.mkdir()
    Image.fromarray(_rgb(2, 4)).save(flat / "0001.jpg")
    _png(flat / "0001.png", labels)
    ds = FishyscapesStatic(flat)
    assert ds.layout == "research" and len(ds) == 1 and ds.folder == flat

    folders = tmp_path / "folders"  # no Static/: labels/ + original/ directly at the root
    _png(folders / "labels" / "a.png", labels)
    _png(folders / "original" / "a.png", _rgb(2, 4))
    ds = FishyscapesStatic(folders)
    assert ds.layout == "folders" and len(ds) == 1 and ds[0][0].shape == (2, 4, 3)

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"Fishyscapes folder not found: .*Static .*labels/ \+ original/"):
        FishyscapesStatic(tmp_path / "empty")


def test_fishyscapes_overlays_find_the_cityscapes_root_beside_the_release(tmp_path, caplog):
    def release(folder, cityscapes):
        _png(cityscapes / "leftImg8bit/val/ulm/ulm_000000_000019_leftImg8bit.png", np.full((2, 4, 3), 100))
        _png(folder / "0000_ulm_000000_000019_labels.png", [[0, 1, 0, 1], [0, 0, 255, 1]])
        overlay = np.zeros((2, 4, 3), np.int16)
        overlay[0, 1] = (50, -200, 0)
        np.savez(folder / "0000_ulm_000000_000019_rgb.npz", rgb=overlay)

    for name, cityscapes, fishyscapes in (
        ("sibling", "data/cityscapes", "data/fs"),  # <root>/../cityscapes
        ("parent", "data2", "data2/fs"),  # the release inside the Cityscapes root
        ("self", "data3", "data3"),  # both in one folder
    ):
        release(tmp_path / fishyscapes, tmp_path / cityscapes)
        with caplog.at_level(logging.INFO):
            ds = FishyscapesStatic(tmp_path / fishyscapes)
        assert ds.cityscapes_root == (tmp_path / cityscapes).resolve(), name
        assert ds[0][0][0, 1].tolist() == [150, 0, 100] and ds[0][0][0, 0].tolist() == [100, 100, 100]
        assert "Cityscapes validation images of" in caplog.text
    release(tmp_path / "alone/fs", tmp_path / "elsewhere/cs")
    with pytest.raises(DatasetError, match=r"no leftImg8bit/val .*give the Cityscapes root \(--cityscapes-root\)"):
        FishyscapesStatic(tmp_path / "alone/fs")
    assert len(FishyscapesStatic(tmp_path / "alone/fs", cityscapes_root=tmp_path / "elsewhere/cs")) == 1
    (tmp_path / "alone/fs/0000_ulm_000000_000019_rgb.npz").write_bytes(b"not an npz")
    with pytest.raises(DatasetError, match="cannot read Fishyscapes overlay") as err:
        FishyscapesStatic(tmp_path / "alone/fs", cityscapes_root=tmp_path / "elsewhere/cs")[0]
    assert "\n" not in str(err.value)


def test_mixed_sampler_redraws_every_epoch():
    sampler = MixedSampler(20, 50, 5, seed=3)
    first = list(sampler)
    assert len(first) == len(sampler) == 25
    assert sorted(i for i in first if i < 20) == list(range(20))
    ood = [i for i in first if i >= 20]
    assert len(set(ood)) == 5 and all(20 <= i < 70 for i in ood)
    assert list(sampler) == first  # same epoch, same draw
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert len(MixedSampler(2975, 46751)) == 2975 + 298  # default: 10 % of the in-distribution images
    with pytest.raises(ValueError, match="n_ood_per_epoch must lie"):
        MixedSampler(10, 3, 5)


def test_cityscapes_class_names_are_the_train_ids_in_order(tmp_path):
    from cityscapesscripts.helpers.labels import labels

    from meta_ood_training.datasets import CITYSCAPES_CLASSES
    from meta_ood_training.synthetic import CLASS_NAMES

    by_train_id = {label.trainId: label.name for label in labels if 0 <= label.trainId < 255}
    assert CITYSCAPES_CLASSES == tuple(by_train_id[i] for i in range(19)) == CLASS_NAMES
    _png(tmp_path / "leftImg8bit/val/ulm/ulm_1_2_leftImg8bit.png", _rgb())
    _png(tmp_path / "gtFine/val/ulm/ulm_1_2_gtFine_labelIds.png", np.full((4, 6), 7))
    identity = CityscapesSegmentation(tmp_path, "val").identity()
    assert identity == {"dataset": "cityscapes", "root": str(tmp_path.resolve()), "split": "val", "frames": 1}


def test_coco_ood_index_error_points_at_the_cli_command(tmp_path, caplog):
    from meta_ood_perception.cli import main

    with pytest.raises(DatasetError, match="meta-ood build-coco-ood --coco-root"):
        CocoOoD.from_folder(tmp_path)
    _coco_tree(tmp_path / "coco")
    assert main(["build-coco-ood", "--coco-root", str(tmp_path / "coco"), "--out", str(tmp_path / "out")]) == 0
    assert len(CocoOoD.from_folder(tmp_path / "out")) == 2
    assert main(["build-coco-ood", "--coco-root", str(tmp_path / "coco"), "--split", "val2017", "--out", "x"]) == 2
    assert "annotation file not found" in caplog.text
