"""PASCAL VOC 2012 as a 20-label multi-label dataset, from the official devkit layout:

    <root>/Annotations/<id>.xml            object annotations (``<object><name>cat</name>...``)
    <root>/ImageSets/Main/train.txt        image ids per split (also val.txt, trainval.txt)
    <root>/JPEGImages/<id>.jpg

(``<root>`` is ``VOCdevkit/VOC2012`` of ``VOCtrainval_11-May-2012.tar``.) Label j is 1 when at least one
object of class j is annotated (``include_difficult`` decides whether objects marked difficult count).

Splits: ``split_mode=official`` uses ``train.txt`` for training and ``val.txt`` as the test split;
``split_mode=paper`` pools ``trainval.txt`` (11,540 images) and splits it 6:2:2 (train / val / test) with
``split_seed``, as the JMA paper does.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import VOCConfig  # noqa: F401
from advlab.data.image_files import IMAGENET_MEAN, IMAGENET_STD, ImageFileDataset, seeded_split
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
LAYOUT = ["Annotations", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt", "JPEGImages"]
SOURCE = (
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar; root = VOCdevkit/VOC2012)"
)


def parse_voc_annotation(path: Path, include_difficult: bool) -> set[str]:
    """Class names annotated in one VOC xml file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise DatasetNotFoundError(f"dataset.root: cannot parse VOC annotation '{path}' ({exc})") from None
    names = set()
    for obj in root.iter("object"):
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        if difficult and not include_difficult:
            continue
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_CLASSES:
            raise DatasetNotFoundError(f"dataset.root: unknown VOC class '{name}' in '{path}'")
        names.add(name)
    return names


@functools.lru_cache(maxsize=8)
def load_voc_index(root: str, split_file: str, include_difficult: bool) -> tuple[list[Path], torch.Tensor]:
    base = Path(root)
    ids_file = base / "ImageSets" / "Main" / split_file
    if not ids_file.is_file():
        raise DatasetNotFoundError(f"dataset.root: missing '{ids_file}'")
    ids = [line.split()[0] for line in ids_file.read_text().splitlines() if line.strip()]
    labels = torch.zeros(len(ids), len(VOC_CLASSES))
    for i, image_id in enumerate(ids):
        for name in parse_voc_annotation(base / "Annotations" / f"{image_id}.xml", include_difficult):
            labels[i, VOC_CLASSES.index(name)] = 1
    return [base / "JPEGImages" / f"{i}.jpg" for i in ids], labels


@DATASETS.register("voc2012")
class VOC2012(DataModule):
    Config = VOCConfig
    splits = ("train", "val", "test")

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "voc2012", LAYOUT, SOURCE)

    @functools.cached_property
    def info(self) -> DataInfo:
        s = self.params.size
        return DataInfo(len(VOC_CLASSES), (3, s, s), list(VOC_CLASSES), IMAGENET_MEAN, IMAGENET_STD)

    def _split(self, split: str) -> tuple[list[Path], torch.Tensor]:
        p = self.params
        if p.split_mode == "official":
            return load_voc_index(
                str(self.root), "train.txt" if split == "train" else "val.txt", p.include_difficult
            )
        paths, labels = load_voc_index(str(self.root), "trainval.txt", p.include_difficult)
        idx = seeded_split(len(paths), (0.6, 0.2, 0.2), p.split_seed)[self.splits.index(split)]
        return [paths[i] for i in idx], labels[torch.as_tensor(idx)]

    def dataset(self, split: str) -> ImageFileDataset:
        self.check_split(split)
        paths, labels = self._split(split)
        return ImageFileDataset(paths, labels, self.params.size)
