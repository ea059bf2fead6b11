"""JMA issue: every dataset loader on a tiny fixture written in the dataset's published on-disk format."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data.base import DATASETS
from advlab.errors import DatasetNotFoundError


def build(name: str, **params):
    return DATASETS.create(name, 0, **params)


def write_image(path: Path, color: tuple[int, int, int], size=(20, 14), fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


# ---- VOC 2012 -----------------------------------------------------------------------------------------
VOC_XML = """<annotation><folder>VOC2012</folder><filename>{id}.jpg</filename>
<size><width>20</width><height>14</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJ = (
    "<object><name>{name}</name><pose>Left</pose><truncated>0</truncated><difficult>{d}</difficult>"
    "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
)


def make_voc(root: Path) -> dict[str, list[tuple[str, int]]]:
    objects = {
        "2008_000001": [("cat", 0), ("person", 0)],
        "2008_000002": [("dog", 0), ("cat", 1)],
        "2008_000003": [("tvmonitor", 0)],
        "2008_000004": [("aeroplane", 0), ("aeroplane", 0), ("bird", 0)],
        "2008_000005": [("car", 1)],
    }
    for image_id, objs in objects.items():
        body = "".join(VOC_OBJ.format(name=n, d=d) for n, d in objs)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "Annotations" / f"{image_id}.xml").write_text(VOC_XML.format(id=image_id, objects=body))
        write_image(root / "JPEGImages" / f"{image_id}.jpg", (10 * len(objs), 100, 200))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    ids = list(objects)
    (main / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (main / "val.txt").write_text("\n".join(ids[3:]) + "\n")
    (main / "trainval.txt").write_text("\n".join(ids) + "\n")
    return objects


def test_voc_loader(tmp_path):
    from advlab.data.voc import VOC_CLASSES

    objects = make_voc(tmp_path)
    data = build("voc2012", root=str(tmp_path), size=16)
    assert data.info.num_classes == 20 and data.default_task == "multilabel"
    train = data.dataset("train")
    assert len(train) == 3
    x, y = train[0]
    assert x.shape == (3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert x[2].mean() == pytest.approx(200 / 255, abs=0.02)  # RGB order kept
    assert [VOC_CLASSES[j] for j in y.nonzero().flatten()] == ["cat", "person"]
    assert train.labels[1, VOC_CLASSES.index("cat")] == 1  # difficult objects count by default
    strict = build("voc2012", root=str(tmp_path), size=16, include_difficult=False)
    assert strict.dataset("train").labels[1, VOC_CLASSES.index("cat")] == 0
    test = data.dataset("test")
    assert test.labels[0].nonzero().flatten().tolist() == [
        VOC_CLASSES.index(c) for c in ("aeroplane", "bird")
    ]
    assert test.labels[1].sum() == 1  # the car, difficult
    paper = build("voc2012", root=str(tmp_path), size=16, split_mode="paper")
    sizes = [len(paper.dataset(s)) for s in ("train", "val", "test")]
    assert sum(sizes) == len(objects) and sizes[0] == 3


def test_voc_missing_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ImageSets/Main/train.txt"):
        build("voc2012", root=str(tmp_path)).dataset("train")


# ---- COCO ---------------------------------------------------------------------------------------------
def test_coco_loader(tmp_path):
    cats = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    for split, ids in (("train", [5, 2, 9]), ("val", [7, 8])):
        images = [
            {"id": i, "file_name": f"COCO_{split}2014_{i:012d}.jpg", "width": 20, "height": 14} for i in ids
        ]
        for im in images:
            write_image(tmp_path / f"{split}2014" / im["file_name"], (im["id"], 0, 0))
        anns = {
            "train": [(5, 1), (5, 90), (2, 3), (2, 3)],  # image 9 has no annotation
            "val": [(7, 90), (8, 1), (8, 3)],
        }[split]
        payload = {
            "images": images,
            "categories": cats,
            "annotations": [
                {"id": k, "image_id": a, "category_id": c, "bbox": [0, 0, 1, 1]}
                for k, (a, c) in enumerate(anns)
            ],
        }
        (tmp_path / "annotations").mkdir(exist_ok=True)
        (tmp_path / "annotations" / f"instances_{split}2014.json").write_text(json.dumps(payload))
    data = build("coco", root=str(tmp_path), size=8)
    assert data.info.class_names == ["person", "car", "toothbrush"]
    train = data.dataset("train")
    # sorted by image id: 2 (car), 5 (person, toothbrush); 9 dropped (no labels)
    assert train.labels.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert train[0][0].shape == (3, 8, 8)
    assert build("coco", root=str(tmp_path), drop_empty=False).dataset("train").labels.shape == (3, 3)
    assert data.dataset("test").labels.tolist() == [[0, 0, 1], [1, 1, 0]]
    with pytest.raises(DatasetNotFoundError, match="instances_train2017.json"):
        _ = build("coco", root=str(tmp_path), year=2017).info


# ---- NUS-WIDE -----------------------------------------------------------------------------------------
def test_nuswide_loader(tmp_path):
    concepts = ["animal", "sky", "water"]
    (tmp_path / "Concepts81.txt").write_text("\n".join(concepts) + "\n")
    lists = {
        "Train": ["actor\\0001_1.jpg", "sky\\0002_2.jpg", "sky\\0003_3.jpg"],
        "Test": ["lake\\0004_4.jpg"],
    }
    labels = {"Train": [[1, 0, 0], [0, 1, 1], [0, 0, 0]], "Test": [[0, 1, 1]]}
    (tmp_path / "ImageList").mkdir()
    (tmp_path / "TrainTestLabels").mkdir()
    for tag, names in lists.items():
        (tmp_path / "ImageList" / f"{tag}Imagelist.txt").write_text("\r\n".join(names) + "\r\n")
        for j, c in enumerate(concepts):
            (tmp_path / "TrainTestLabels" / f"Labels_{c}_{tag}.txt").write_text(
                "\n".join(str(row[j]) for row in labels[tag]) + "\n"
            )
        for name in names:
            write_image(tmp_path / "Flickr" / Path(*name.split("\\")), (0, 50, 0))
    data = build("nuswide", root=str(tmp_path), size=8)
    assert data.info.class_names == concepts
    train = data.dataset("train")
    assert train.labels.tolist() == [[1, 0, 0], [0, 1, 1]]  # the unlabelled image is dropped
    assert train.paths[1] == tmp_path / "Flickr" / "sky" / "0002_2.jpg"
    assert train[1][0].shape == (3, 8, 8)
    assert data.dataset("test").labels.tolist() == [[0, 1, 1]]
    (tmp_path / "Flickr" / "lake" / "0004_4.jpg").unlink()
    from advlab.data.nuswide import load_nuswide_index

    load_nuswide_index.cache_clear()  # the index is cached per process
    with pytest.raises(DatasetNotFoundError, match="skip_missing"):
        build("nuswide", root=str(tmp_path), size=8).dataset("test")
    assert len(build("nuswide", root=str(tmp_path), size=8, skip_missing=True).dataset("test")) == 0


# ---- MNIST --------------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_loader(tmp_path, compress):
    rng = np.random.default_rng(0)
    sets = {"train": 6, "t10k": 4}
    raw = {}
    for prefix, n in sets.items():
        images = rng.integers(0, 256, (n, 28, 28))
        labels = rng.integers(0, 10, n)
        raw[prefix] = (images, labels)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", labels, compress)
    data = build("mnist", root=str(tmp_path))
    x, y = data.dataset("test").tensors
    assert x.shape == (4, 1, 28, 28)
    assert torch.equal(y, torch.from_numpy(raw["t10k"][1]).long())
    assert torch.allclose(x[:, 0] * 255, torch.from_numpy(raw["t10k"][0]).float(), atol=1e-3)
    assert build("mnist", root=str(tmp_path), size=32).dataset("train").tensors[0].shape == (6, 1, 32, 32)


def test_mnist_bad_magic(tmp_path):
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / name).write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DatasetNotFoundError, match="bad magic"):
        build("mnist", root=str(tmp_path)).dataset("train")


# ---- GTSRB --------------------------------------------------------------------------------------------
def make_gtsrb(root: Path, per_class: dict[int, int], test: bool) -> None:
    for c, n in per_class.items():
        folder = root / "Final_Training" / "Images" / f"{c:05d}"
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for k in range(n):
            name = f"{k // 2:05d}_{k % 2:05d}.ppm"  # track k//2, frame k%2
            write_image(folder / name, (c * 5, 255, 0), size=(12, 10), fmt="PPM")
            rows.append(f"{name};12;10;1;1;10;8;{c}")
        (folder / f"GT-{c:05d}.csv").write_text("\n".join(rows) + "\n")
    if test:
        folder = root / "Final_Test" / "Images"
        rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for k, c in enumerate(per_class):
            write_image(folder / f"{k:05d}.ppm", (c * 5, 0, 255), size=(12, 10), fmt="PPM")
            rows.append(f"{k:05d}.ppm;12;10;0;0;11;9;{c}")
        (folder / "GT-final_test.csv").write_text("\n".join(rows) + "\n")


def test_gtsrb_loader_with_final_test(tmp_path):
    make_gtsrb(tmp_path, {0: 2, 1: 6, 2: 4}, test=True)
    data = build("gtsrb", root=str(tmp_path), size=8)
    x, y = data.dataset("train").tensors
    assert x.shape == (12, 3, 8, 8) and sorted(y.tolist()) == [0] * 2 + [1] * 6 + [2] * 4
    xt, yt = data.dataset("test").tensors
    assert yt.tolist() == [0, 1, 2] and xt[:, 2].mean() == pytest.approx(1.0, abs=0.02)
    top = build("gtsrb", root=str(tmp_path), size=8, top_classes=2)
    assert top.info.num_classes == 2 and top.info.class_names == ["class01", "class02"]
    _, yt2 = top.dataset("test").tensors
    assert yt2.tolist() == [0, 1]  # class 1 (most images) -> 0, class 2 -> 1, class 0 dropped


def test_gtsrb_loader_track_split(tmp_path):
    make_gtsrb(tmp_path, {0: 8, 5: 8}, test=False)
    data = build("gtsrb", root=str(tmp_path), size=8, test_fraction=0.25)
    _, y = data.dataset("train").tensors
    _, yt = data.dataset("test").tensors
    assert len(y) + len(yt) == 16 and len(yt) == 4  # 2 of 8 tracks, 2 frames each
    with pytest.raises(DatasetNotFoundError, match="GT-"):
        _ = build("gtsrb", root=str(tmp_path / "nope")).info


def test_digits_multilabel_dataset():
    data = build("digits_multilabel", num_train=64, num_test=32)
    x, y = data.dataset("train").tensors
    assert x.shape == (64, 1, 32, 32) and y.shape == (64, 10)
    assert (y.sum(1) >= 1).all() and (y.sum(1) <= 4).all()
    assert data.default_task == "multilabel"
    x2, y2 = build("digits_multilabel", num_train=64, num_test=32).dataset("train").tensors
    assert torch.equal(x, x2) and torch.equal(y, y2)  # seeded


def test_mnist_zero_padding(tmp_path):
    """dataset.pad: the 28x28 digits centred in a zero 32x32 canvas, as the JMA authors' np.pad (2, 2)."""
    rng = np.random.default_rng(1)
    images = rng.integers(1, 256, (3, 28, 28))
    for prefix in ("train", "t10k"):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", images, False)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(3), False)
    x, _ = build("mnist", root=str(tmp_path), size=32, pad=True, channels=3).dataset("test").tensors
    expected = np.pad(images, ((0, 0), (2, 2), (2, 2))) / 255
    assert x.shape == (3, 3, 32, 32)
    assert np.allclose(x[:, 1].numpy(), expected, atol=1e-6) and torch.equal(x[:, 0], x[:, 2])
    from advlab.data.configs import MNISTConfig
    from advlab.errors import ConfigError

    with pytest.raises(ConfigError, match="dataset.pad"):
        MNISTConfig(name="mnist", size=31, pad=True).validate("dataset")


def test_gtsrb_classes_file(tmp_path):
    """dataset.classes_file: the authors' ClassId list (.npy) sets which classes are kept and their order."""
    make_gtsrb(tmp_path, {0: 2, 1: 6, 2: 4}, test=True)
    np.save(tmp_path / "gtsrb_top32category_label.npy", np.array([2, 0]))
    data = build(
        "gtsrb", root=str(tmp_path), size=8, classes_file=str(tmp_path / "gtsrb_top32category_label.npy")
    )
    assert data.info.num_classes == 2 and data.info.class_names == ["class02", "class00"]
    _, yt = data.dataset("test").tensors
    assert yt.tolist() == [1, 0]  # test images of classes 0 and 2 (class 1 dropped): 0 -> 1, 2 -> 0
    (tmp_path / "ids.txt").write_text("1\n99\n")
    with pytest.raises(DatasetNotFoundError, match="distinct GTSRB ClassIds"):
        _ = build("gtsrb", root=str(tmp_path), size=8, classes_file=str(tmp_path / "ids.txt")).info
    with pytest.raises(DatasetNotFoundError, match="gtsrb_top32category_label.npy"):
        _ = build("gtsrb", root=str(tmp_path), size=8, classes_file=str(tmp_path / "none.npy")).info
