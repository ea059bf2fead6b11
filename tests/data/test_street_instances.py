"""Instance ids for SemanticAdv's street-view attack: Cityscapes ``*_gtFine_instanceIds.png`` read from a tiny
fixture in the published layout (``labelId * 1000 + k`` on instances, the labelId elsewhere, a 16-bit PNG
as in gtFine_trainvaltest.zip), and the embedded ``digits_street`` scenes, whose
instance maps must agree with their label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from advlab.data.base import DATASETS
from advlab.errors import DatasetNotFoundError


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)  # uint8 -> L / RGB, uint16 -> a 16-bit grey PNG


@pytest.fixture
def root(tmp_path):
    label = np.full((8, 16), 7, np.uint8)  # road
    inst = np.full((8, 16), 7, np.int32)  # written as a 16-bit PNG, as published
    label[1:5, 2:4] = 24  # person #0 -> 24000
    inst[1:5, 2:4] = 24000
    label[1:5, 6:8] = 24  # person #1 -> 24001
    inst[1:5, 6:8] = 24001
    label[4:7, 10:15] = 26  # car #0 -> 26000
    inst[4:7, 10:15] = 26000
    label[0, 12:16] = 25  # a rider crowd region: plain labelId, no instance
    inst[0, 12:16] = 25
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        stem = f"{city}_000000_000019"
        _png(
            tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
            np.zeros((8, 16, 3), np.uint8),
        )
        _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
        _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_instanceIds.png", inst.astype(np.uint16))
    return tmp_path


def test_cityscapes_instance_ids_and_their_train_classes(root):
    data = DATASETS.build(DATASETS.parse({"name": "cityscapes", "root": str(root), "num_workers": 0}), 0)
    ids = data.load_instances("test", torch.tensor([0]))[0]
    assert ids.shape == (8, 16) and ids.dtype == torch.int64
    assert sorted(ids.unique().tolist()) == [7, 25, 24000, 24001, 26000]
    assert int((ids == 24001).sum()) == 8 and int((ids == 26000).sum()) == 15
    cls = data.instance_classes(ids)
    # person labelId 24 -> trainId 11, car 26 -> 13; road and the crowd region are no instances
    assert cls[2, 3] == 11 and cls[2, 7] == 11 and cls[5, 12] == 13
    assert cls[7, 0] == -1 and cls[0, 13] == -1
    _, y = data.dataset("test")[0]
    assert (y[cls >= 0] == cls[cls >= 0]).all()  # the instance classes agree with the label map
    half = DATASETS.build(
        DATASETS.parse({"name": "cityscapes", "root": str(root), "size": [8, 8], "num_workers": 0}), 0
    )
    half_ids = half.load_instances("train", torch.tensor([0]))[0]
    assert half_ids.shape == (8, 8) and half_ids[2, 1] == 24000  # nearest: column 1 of 8 is column 2 of 16


def test_missing_instance_file_names_the_file(root):
    next((root / "gtFine" / "val").rglob("*_instanceIds.png")).unlink()
    data = DATASETS.build(DATASETS.parse({"name": "cityscapes", "root": str(root), "num_workers": 0}), 0)
    with pytest.raises(DatasetNotFoundError, match="instanceIds"):
        data.load_instances("test", torch.tensor([0]))


def test_digits_street_instances_agree_with_the_label_maps():
    data = DATASETS.build(DATASETS.parse({"name": "digits_street", "num_train": 4, "num_test": 20}), 0)
    _, y = data.dataset("test")[:]
    ids = data.load_instances("test", torch.arange(20))
    thing = ids >= 1000
    assert thing.any()
    assert (y[thing] == ids[thing] // 1000).all() and (y[~thing] == ids[~thing]).all()
    assert set(y[thing].unique().tolist()) <= {2, 3, 4} and set(y[~thing].unique().tolist()) <= {0, 1}
    assert (data.instance_classes(ids)[~thing] == -1).all()
    for i in range(20):  # instance numbers are unique per scene: one class per id
        for v in ids[i][ids[i] >= 1000].unique():
            assert y[i][ids[i] == v].unique().numel() == 1
