"""MS-COCO 2014 / 2017 as an 80-label multi-label dataset, from the official layout:

    <root>/annotations/instances_train2014.json    (or instances_train2017.json, ..._val...)
    <root>/train2014/<file_name>                   images named by the json's ``file_name``
    <root>/val2014/<file_name>

Label j is 1 when the image has at least one instance annotation of the j-th category (categories sorted by
id, the usual 80-label order). The test split is the official val split (as in the multi-label literature).
Images without any annotation are dropped by default (``drop_empty``; about 1% of them): an all-zero
ground truth cannot be attacked towards the all-zero target and carries no label.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import COCOConfig  # noqa: F401
from advlab.data.image_files import IMAGENET_MEAN, IMAGENET_STD, ImageFileDataset
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

SOURCE = "https://cocodataset.org/#download (train/val images and 'annotations_trainval<year>.zip')"


@functools.lru_cache(maxsize=4)
def load_coco_index(root: str, split: str, year: int, drop_empty: bool):
    base = Path(root)
    ann_file = base / "annotations" / f"instances_{split}{year}.json"
    try:
        ann = json.loads(ann_file.read_text())
        categories = sorted(ann["categories"], key=lambda c: c["id"])
        images = sorted(ann["images"], key=lambda im: im["id"])
        annotations = ann["annotations"]
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetNotFoundError(
            f"dataset.root: cannot read COCO annotations '{ann_file}' ({exc})"
        ) from None
    cat_index = {c["id"]: j for j, c in enumerate(categories)}
    img_index = {im["id"]: i for i, im in enumerate(images)}
    labels = torch.zeros(len(images), len(categories))
    for a in annotations:
        if a["image_id"] in img_index and a["category_id"] in cat_index:
            labels[img_index[a["image_id"]], cat_index[a["category_id"]]] = 1
    paths = [base / f"{split}{year}" / im["file_name"] for im in images]
    if drop_empty:
        keep = labels.sum(1) > 0
        paths = [p for p, k in zip(paths, keep.tolist()) if k]
        labels = labels[keep]
    return paths, labels, [c["name"] for c in categories]


@DATASETS.register("coco")
class COCO(DataModule):
    Config = COCOConfig

    @functools.cached_property
    def root(self) -> Path:
        y = self.params.year
        layout = [
            f"annotations/instances_train{y}.json",
            f"annotations/instances_val{y}.json",
            f"train{y}",
            f"val{y}",
        ]
        return require_root(self.params.root, "coco", layout, SOURCE)

    def _index(self, split: str):
        p = self.params
        return load_coco_index(str(self.root), "train" if split == "train" else "val", p.year, p.drop_empty)

    @functools.cached_property
    def info(self) -> DataInfo:
        names = self._index("train")[2]
        s = self.params.size
        return DataInfo(len(names), (3, s, s), names, IMAGENET_MEAN, IMAGENET_STD)

    def dataset(self, split: str) -> ImageFileDataset:
        self.check_split(split)
        paths, labels, _ = self._index(split)
        return ImageFileDataset(paths, labels, self.params.size)
