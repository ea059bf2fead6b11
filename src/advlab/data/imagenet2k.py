"""ImageNet2K (JMA paper, Table II): 2000 of the most populated ImageNet-21K classes, ImageNet-21K-P folders.

The paper selects 2000 classes "from the most populated categories" of ImageNet-21K and fine-tunes a ViT-B/16
pretrained on ImageNet-21K on a training subset. It publishes no class list (neither does its repository), so
the classes are either

- the WordNet ids of ``classes_file`` (one per line, in class-index order; blank lines and ``#`` comments
  skipped), or
- when ``classes_file`` is null: the ``num_classes`` class folders of ``train_dir`` holding the most images
  (ties broken by wnid), in sorted wnid order -- the paper's definition, applied to the copy on disk.

On-disk layout: ImageNet-21K-P (Ridnik et al., "ImageNet-21K pretraining for the masses", the paper's [32]),
whose processing keeps the classes with more than 500 images, moves the first 50 images of each class to a
validation folder and squishes every image to 224x224::

    <root>/imagenet21k_train/<wnid>/*.JPEG
    <root>/imagenet21k_val/<wnid>/*.JPEG

(any ImageFolder copy works with ``train_dir`` / ``test_dir``, e.g. ``train`` and ``val``). The test split is
``test_dir``; ``train_per_class: K`` fine-tunes on the first K sorted images of each class (the paper's
"training subset"). Images are decoded lazily and resized (squished) to ``size`` x ``size``; the
normalisation is ``mean`` / ``std`` (0.5 for timm's in21k ViT-B/16; MIIL's in21k weights use mean 0, std 1).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch
from torch import Tensor

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import ImageNet2KConfig
from advlab.data.image_files import ImageFileDataset
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

SOURCE = (
    "https://image-net.org/download.php (ImageNet-21K-P, winter21 processed by image-net.org, or fall11_whole.tar "
    "processed with github.com/Alibaba-MIIL/ImageNet21K dataset_preprocessing/processing_script.sh)"
)
EXTENSIONS = (".jpeg", ".jpg", ".png")


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder, sorted by name."""
    return sorted(
        Path(e.path) for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(EXTENSIONS)
    )


def count_images(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(EXTENSIONS))


def most_populated(train: Path, k: int) -> list[str]:
    """The ``k`` class folders of ``train`` with the most images (ties: smaller wnid first), sorted by wnid."""
    counts = {e.name: count_images(Path(e.path)) for e in os.scandir(train) if e.is_dir()}
    if len(counts) < k:
        raise DatasetNotFoundError(
            f"dataset.num_classes: {k} classes asked but '{train}' has only {len(counts)} class folders; use "
            f"dataset.num_classes<={len(counts)} or a complete ImageNet-21K copy"
        )
    ranked = sorted(counts, key=lambda w: (-counts[w], w))
    return sorted(ranked[:k])


def read_classes_file(path: Path, k: int) -> list[str]:
    if not path.is_file():
        raise DatasetNotFoundError(
            f"dataset.classes_file: '{path}' does not exist. Write the ImageNet2K class list there (one WordNet "
            f"id such as n01440764 per line, {k} lines, in class-index order; the list the victim was "
            "fine-tuned with), or set dataset.classes_file=null to take the dataset.num_classes most populated "
            "class folders of the training split"
        )
    lines = [s.strip() for s in path.read_text().splitlines()]
    wnids = [s for s in lines if s and not s.startswith("#")]
    repeated = sorted({w for w in wnids if wnids.count(w) > 1})
    if repeated:
        raise DatasetNotFoundError(f"dataset.classes_file: '{path}' repeats {repeated[:5]}")
    if len(wnids) != k:
        raise DatasetNotFoundError(
            f"dataset.classes_file: '{path}' lists {len(wnids)} classes but dataset.num_classes={k}; set "
            f"dataset.num_classes={len(wnids)} or use the full class list"
        )
    return wnids


@DATASETS.register("imagenet2k")
class ImageNet2K(DataModule):
    Config = ImageNet2KConfig
    splits = ("train", "test")

    @functools.cached_property
    def root(self) -> Path:
        p = self.params
        return require_root(p.root, "imagenet2k", [f"{p.train_dir}/*/*", f"{p.test_dir}/*/*"], SOURCE)

    @functools.cached_property
    def classes(self) -> list[str]:
        p = self.params
        train, test = self.root / p.train_dir, self.root / p.test_dir
        if p.classes_file:
            wnids = read_classes_file(Path(os.path.expanduser(p.classes_file)), p.num_classes)
        else:
            wnids = most_populated(train, p.num_classes)
        missing = [w for w in wnids if not (train / w).is_dir() or not (test / w).is_dir()]
        if missing:
            raise DatasetNotFoundError(
                f"dataset.root '{self.root}': {len(missing)} of the {len(wnids)} ImageNet2K classes have no folder "
                f"in {p.train_dir}/ or {p.test_dir}/ (first: {missing[:5]}); the copy on disk must hold every "
                f"class of the list (ImageNet-21K-P from {SOURCE})"
            )
        return wnids

    @functools.cached_property
    def info(self) -> DataInfo:
        p = self.params
        return DataInfo(
            len(self.classes), (3, p.size, p.size), list(self.classes), tuple(p.mean), tuple(p.std)
        )

    def _items(self, folder: str, per_class: int | None) -> tuple[list[Path], Tensor]:
        paths: list[Path] = []
        labels: list[int] = []
        for label, wnid in enumerate(self.classes):
            files = image_files(self.root / folder / wnid)[:per_class]
            paths += files
            labels += [label] * len(files)
        return paths, torch.tensor(labels, dtype=torch.int64)

    @functools.cached_property
    def _listed(self) -> dict[str, tuple[list[Path], Tensor]]:
        return {}  # split -> (paths, labels): a listing of ~100k files is done once per run

    def dataset(self, split: str) -> ImageFileDataset:
        self.check_split(split)
        p = self.params
        if split not in self._listed:
            folder, per_class = (p.train_dir, p.train_per_class) if split == "train" else (p.test_dir, None)
            self._listed[split] = self._items(folder, per_class)
        paths, labels = self._listed[split]
        return ImageFileDataset(paths, labels, p.size)


def main(argv: list[str] | None = None) -> int:
    """``python -m advlab.data.imagenet2k <root> <classes.txt> [--num-classes N] [--train-dir D]``: write the
    N most populated class folders of ``<root>/<train-dir>`` (the list ``classes_file=null`` would take), one
    wnid per line, so that every later run (and a sweep's every job) reads the same list without the scan."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root")
    parser.add_argument("output")
    parser.add_argument("--num-classes", type=int, default=ImageNet2KConfig.num_classes)
    parser.add_argument("--train-dir", default=ImageNet2KConfig.train_dir)
    args = parser.parse_args(argv)
    train = Path(os.path.expanduser(args.root)) / args.train_dir
    if not train.is_dir():
        raise SystemExit(f"'{train}' is not a folder: the ImageNet-21K-P training split ({SOURCE})")
    wnids = most_populated(train, args.num_classes)
    Path(args.output).write_text("".join(f"{w}\n" for w in wnids))
    print(f"wrote {len(wnids)} classes to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
