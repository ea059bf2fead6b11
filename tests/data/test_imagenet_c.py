"""The released ImageNet-C layout (``<corruption>/<severity>/<wnid>/*.JPEG``) read for the ImageNet-100 classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data.base import DATASETS
from advlab.data.imagenet_c import ImageNetCFolders
from advlab.errors import DatasetNotFoundError

WNIDS = ["n01440764", "n01443537", "n01484850"]  # the dataset's classes; n01491361 is ImageNet-C-only


def _jpeg(path, value: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((40, 48, 3), value, dtype=np.uint8)
    arr[:, :24, 0] = 255 - value
    Image.fromarray(arr).save(path, quality=95)


@pytest.fixture
def roots(tmp_path):
    inet, inc = tmp_path / "imagenet100", tmp_path / "ImageNet-C"
    for k, w in enumerate(WNIDS):
        _jpeg(inet / "train" / w / "t.JPEG", 10)
        for j in range(2):
            name = f"ILSVRC2012_val_{k * 2 + j:08d}.JPEG"
            _jpeg(inet / "val" / w / name, 20 + k)
            for c in ("fog", "contrast"):
                for s in (1, 5):
                    _jpeg(inc / c / str(s) / w / name, 10 * s + 40 * k + (j + 1) * (c == "fog"))
    _jpeg(inc / "fog" / "1" / "n01491361" / "ILSVRC2012_val_00000099.JPEG", 0)
    data = DATASETS.build(
        DATASETS.parse({"name": "imagenet100", "root": str(inet), "size": 32, "resize": 36}), 0
    )
    return data, inc


def test_imagenet_c_is_read_for_the_dataset_classes_with_their_labels(roots):
    data, inc = roots
    src = ImageNetCFolders(inc, ["fog", "contrast"], [1, 5], data.classes, data.test_transform())
    x, y = src.get("fog", 5)
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [0, 0, 1, 1, 2, 2]  # the extra wnid is not read
    with Image.open(inc / "fog" / "5" / WNIDS[1] / "ILSVRC2012_val_00000003.JPEG") as img:
        expected = data.test_transform()(img.convert("RGB"))
    assert torch.equal(x[3], expected)
    clean_x, clean_y = src.clean(data.root / "val")
    assert torch.equal(clean_y, y)
    with Image.open(data.root / "val" / WNIDS[2] / "ILSVRC2012_val_00000004.JPEG") as img:
        assert torch.equal(clean_x[4], data.test_transform()(img.convert("RGB")))
    val_x, val_y = zip(*[data.dataset("test")[i] for i in range(6)])
    assert torch.equal(torch.stack(val_x), clean_x) and list(val_y) == clean_y.tolist()
    sub = ImageNetCFolders(inc, ["fog"], [1], data.classes, data.test_transform(), limit=3)
    assert sub.get("fog", 1)[1].tolist() == [0, 1, 2]  # evenly spaced over the classes


def test_missing_imagenet_c_folders_are_named(roots):
    data, inc = roots
    with pytest.raises(DatasetNotFoundError, match="snow/1/n01440764"):
        ImageNetCFolders(inc, ["snow"], [1], data.classes, data.test_transform())


def test_the_robustness_suite_reads_imagenet_c_for_source_imagenet_c(roots):
    from advlab.pipelines.base import PIPELINES

    data, inc = roots
    suite = PIPELINES.create(
        "robustness_suite",
        models={"m": {}},
        corruption={
            "source": "imagenet_c",
            "root": str(inc),
            "names": ["fog", "contrast"],
            "severities": [1, 5],
        },
    )
    src = suite._corruption_source(None, None, data)
    assert isinstance(src, ImageNetCFolders)
    x, y = src.get("contrast", 1)
    clean_x, clean_y = suite._clean_for(src, data)
    assert x.shape == clean_x.shape == (6, 3, 32, 32) and torch.equal(y, clean_y)
    assert not torch.equal(x, clean_x)  # corrupted vs validation images of the same names
