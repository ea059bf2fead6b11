"""JMA issue, Table II: the ImageNet2K data module on a tiny ImageNet-21K-P-layout fixture
(``<root>/imagenet21k_train/<wnid>/*.JPEG``, ``<root>/imagenet21k_val/<wnid>/*.JPEG``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from advlab.data.base import DATASETS
from advlab.errors import DatasetNotFoundError

#: wnid -> (training images, validation images); a distinct grey level per class
CLASSES = {
    "n00000005": (3, 1),
    "n00000002": (5, 2),
    "n00000003": (1, 1),
    "n00000004": (4, 1),
    "n00000001": (4, 2),
}


def grey(wnid: str) -> int:
    return 40 * int(wnid[-1])


def make_imagenet21k_p(root: Path, classes=CLASSES) -> Path:
    for wnid, (n_train, n_val) in classes.items():
        for split, n in (("imagenet21k_train", n_train), ("imagenet21k_val", n_val)):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (30, 20), (grey(wnid),) * 3).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")
        (root / "imagenet21k_train" / wnid / "notes.txt").write_text("not an image")
    return root


def build(**params):
    return DATASETS.create("imagenet2k", 0, **params)


def info_of(**params):
    return build(**params).info


def test_most_populated_classes_in_wnid_order(tmp_path):
    root = make_imagenet21k_p(tmp_path)
    # counts 5, 4, 4, 3, 1: the three most populated are n..2 (5), n..1 and n..4 (4 each), listed by wnid
    assert build(root=str(root), num_classes=3, size=16).classes == ["n00000001", "n00000002", "n00000004"]
    # a tie at the cut (n..1 and n..4 have 4): the smaller wnid is kept
    assert build(root=str(root), num_classes=2, size=16).classes == ["n00000001", "n00000002"]


def test_images_labels_and_splits(tmp_path):
    root = make_imagenet21k_p(tmp_path)
    data = build(root=str(root), num_classes=3, size=16)
    info = data.info
    assert (info.num_classes, info.image_shape, info.mean, info.std) == (
        3,
        (3, 16, 16),
        (0.5,) * 3,
        (0.5,) * 3,
    )
    train, test = data.dataset("train"), data.dataset("test")
    assert len(train) == 4 + 5 + 4 and len(test) == 2 + 2 + 1  # notes.txt is not an image
    assert train.labels.tolist() == [0] * 4 + [1] * 5 + [2] * 4
    for ds in (train, test):
        for i in range(len(ds)):
            x, y = ds[i]
            assert x.shape == (3, 16, 16) and x.min() >= 0 and x.max() <= 1
            level = grey(info.class_names[int(y)]) / 255  # each image shows its own class's grey level
            assert torch.allclose(x, torch.full_like(x, level), atol=3 / 255)
    subset = build(root=str(root), num_classes=3, size=16, train_per_class=2).dataset("train")
    assert subset.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [p.name for p in subset.paths[:2]] == [
        "n00000001_0.JPEG",
        "n00000001_1.JPEG",
    ]  # first sorted images


def test_classes_file_sets_the_classes_and_their_order(tmp_path):
    root = make_imagenet21k_p(tmp_path / "data")
    listing = tmp_path / "imagenet2k_classes.txt"
    listing.write_text("# ImageNet2K\nn00000003\n\nn00000005\n")
    data = build(root=str(root), classes_file=str(listing), num_classes=2, size=16)
    assert data.classes == ["n00000003", "n00000005"]  # the file's order, even a sparse class
    assert data.dataset("test").labels.tolist() == [0, 1]
    assert torch.allclose(data.dataset("test")[1][0], torch.full((3, 16, 16), 200 / 255), atol=3 / 255)


def test_clear_errors(tmp_path):
    root = make_imagenet21k_p(tmp_path / "data")
    with pytest.raises(DatasetNotFoundError, match="(?s)not set.*imagenet21k_train/\\*/\\*.*image-net.org"):
        info_of(num_classes=2)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        info_of(root=str(tmp_path / "nowhere"), num_classes=2)
    missing = tmp_path / "classes.txt"
    with pytest.raises(DatasetNotFoundError, match="(?s)classes.txt. does not exist.*one WordNet id"):
        info_of(root=str(root), classes_file=str(missing), num_classes=2)
    missing.write_text("n00000001\nn00000009\n")
    with pytest.raises(DatasetNotFoundError, match="1 of the 2 ImageNet2K classes have no folder.*n00000009"):
        info_of(root=str(root), classes_file=str(missing), num_classes=2)
    with pytest.raises(DatasetNotFoundError, match="lists 2 classes but dataset.num_classes=2000"):
        info_of(root=str(root), classes_file=str(missing))
    missing.write_text("n00000001\nn00000001\n")
    with pytest.raises(DatasetNotFoundError, match="repeats"):
        info_of(root=str(root), classes_file=str(missing), num_classes=2)
    with pytest.raises(DatasetNotFoundError, match="2000 classes asked but .* only 5 class folders"):
        info_of(root=str(root))


def test_config_checks():
    from advlab.data.configs import ImageNet2KConfig
    from advlab.errors import ConfigError

    for bad in ({"num_classes": 1}, {"train_per_class": 0}, {"std": [0.5, 0.0, 0.5]}, {"mean": [0.5]}):
        with pytest.raises(ConfigError):
            ImageNet2KConfig(name="imagenet2k", **bad).validate("dataset")


def test_class_list_writer_freezes_the_most_populated_classes(tmp_path):
    from advlab.data.imagenet2k import main

    root = make_imagenet21k_p(tmp_path / "data")
    out = tmp_path / "imagenet2k_classes.txt"
    assert main([str(root), str(out), "--num-classes", "3"]) == 0
    assert out.read_text() == "n00000001\nn00000002\nn00000004\n"
    frozen = build(root=str(root), classes_file=str(out), num_classes=3, size=16)
    assert frozen.classes == build(root=str(root), num_classes=3, size=16).classes


def test_loader_decodes_in_worker_processes(tmp_path):
    root = make_imagenet21k_p(tmp_path)
    data = build(root=str(root), num_classes=3, size=16, num_workers=2)
    loader = data.loader("train", batch_size=4, shuffle=True, seed=0, limit=6)
    assert loader.num_workers == 2
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == sorted(data.dataset("train").labels[:6].tolist())
