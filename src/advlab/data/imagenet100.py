"""ImageNet-100 (Laidlaw et al. 2021): 100 ImageNet classes in the ImageFolder layout::

    <root>/train/<wnid>/*.JPEG
    <root>/val/<wnid>/*.JPEG

The classes are the sorted class folders of ``root`` (a prepared ImageNet-100 copy), or, when ``root`` holds
all 1000 ImageNet classes, every ``class_stride``-th one of the sorted wnids (``class_stride: 10``: the
paper's ImageNet-100), or the wnids listed in ``classes_file`` (one per line). Images are decoded lazily;
the test transform is resize 256 + centre crop 224 (``dataset.size``), the training transform a random
resized crop + horizontal flip. ImageNet-C-style corruptions of the validation split are generated on the fly
by the robustness suite (``pipeline.corruption.source=generate``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch.utils.data import Dataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import ImageNet100Config  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

SOURCE = "https://image-net.org (ILSVRC2012 train/val, val sorted into class folders)"
EXTENSIONS = (".jpeg", ".jpg", ".png")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class _Folder(Dataset):
    def __init__(self, items: list[tuple[Path, int]], transform):
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as img:
            return self.transform(img.convert("RGB")), label


@DATASETS.register("imagenet100")
class ImageNet100(DataModule):
    Config = ImageNet100Config
    splits = ("train", "test")

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "imagenet100", ["train/*/*", "val/*/*"], SOURCE)

    @functools.cached_property
    def classes(self) -> list[str]:
        p = self.params
        if p.classes_file:
            path = Path(os.path.expanduser(p.classes_file))
            if not path.is_file():
                raise DatasetNotFoundError(f"dataset.classes_file: '{path}' does not exist")
            wnids = [w.strip() for w in path.read_text().splitlines() if w.strip()]
        else:
            wnids = sorted(d.name for d in (self.root / "train").iterdir() if d.is_dir())[:: p.class_stride]
        missing = [
            w for w in wnids if not (self.root / "train" / w).is_dir() or not (self.root / "val" / w).is_dir()
        ]
        if missing or not wnids:
            raise DatasetNotFoundError(
                f"dataset.root '{self.root}': class folders missing in train/ or val/: {missing[:5]} "
                f"({len(missing)} of {len(wnids)})"
            )
        return wnids

    @functools.cached_property
    def info(self) -> DataInfo:
        s = self.params.size
        return DataInfo(len(self.classes), (3, s, s), list(self.classes), MEAN, STD)

    def _items(self, folder: str) -> list[tuple[Path, int]]:
        items = []
        for label, wnid in enumerate(self.classes):
            files = sorted(f for f in (self.root / folder / wnid).iterdir() if f.suffix.lower() in EXTENSIONS)
            items += [(f, label) for f in files]
        return items

    def dataset(self, split: str) -> Dataset:
        self.check_split(split)
        from torchvision import transforms as T

        p = self.params
        if split == "train" and p.augment:
            tf = [T.RandomResizedCrop(p.size), *([T.RandomHorizontalFlip()] if p.hflip else [])]
        else:
            tf = [T.Resize(p.resize), T.CenterCrop(p.size)]
        return _Folder(self._items("train" if split == "train" else "val"), T.Compose([*tf, T.ToTensor()]))

    def train_transform(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x  # augmentation happens per image while decoding
