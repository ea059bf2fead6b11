"""NUS-WIDE as an 81-concept multi-label dataset, from the published lists (NUS-WIDE "Groundtruth" and
"ImageList" archives, plus the Flickr images):

    <root>/Concepts81.txt                              the 81 concept names, one per line
    <root>/ImageList/TrainImagelist.txt                image paths (``actor\\0001_2124494179.jpg``), one per line
    <root>/ImageList/TestImagelist.txt
    <root>/TrainTestLabels/Labels_<concept>_Train.txt  one 0/1 per line, aligned with the image list
    <root>/TrainTestLabels/Labels_<concept>_Test.txt
    <root>/Flickr/<subfolder>/<file>.jpg               the images (backslashes in the lists are folders)

Images whose label vector is all zero are dropped by default (``drop_empty``), as usual for this dataset;
images listed but missing on disk are an error unless ``skip_missing`` (many Flickr URLs are dead, so
redistributed copies are often incomplete).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import NUSWideConfig  # noqa: F401
from advlab.data.image_files import IMAGENET_MEAN, IMAGENET_STD, ImageFileDataset
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

LAYOUT = [
    "Concepts81.txt",
    "ImageList/TrainImagelist.txt",
    "ImageList/TestImagelist.txt",
    "TrainTestLabels",
    "Flickr",
]
SOURCE = "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetNotFoundError(f"dataset.root: missing '{path}'")
    return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]


@functools.lru_cache(maxsize=4)
def load_nuswide_index(root: str, split: str, drop_empty: bool, skip_missing: bool):
    base = Path(root)
    concepts = _lines(base / "Concepts81.txt")
    tag = "Train" if split == "train" else "Test"
    images = _lines(base / "ImageList" / f"{tag}Imagelist.txt")
    labels = torch.zeros(len(images), len(concepts))
    for j, concept in enumerate(concepts):
        values = _lines(base / "TrainTestLabels" / f"Labels_{concept}_{tag}.txt")
        if len(values) != len(images):
            raise DatasetNotFoundError(
                f"dataset.root: Labels_{concept}_{tag}.txt has {len(values)} lines but the image list has "
                f"{len(images)}"
            )
        labels[:, j] = torch.tensor([float(v) for v in values])
    paths = [base / "Flickr" / Path(*name.replace("\\", "/").split("/")) for name in images]
    keep = torch.ones(len(paths), dtype=torch.bool)
    if drop_empty:
        keep &= labels.sum(1) > 0
    exists = torch.tensor([p.is_file() for p in paths])
    if not skip_missing and not bool(exists[keep].all()):
        missing = [str(p) for p, k, e in zip(paths, keep.tolist(), exists.tolist()) if k and not e]
        raise DatasetNotFoundError(
            f"dataset.root: {len(missing)} listed NUS-WIDE images are missing (first: {missing[0]}); "
            "set dataset.skip_missing=true to use the images present"
        )
    keep &= exists
    return [p for p, k in zip(paths, keep.tolist()) if k], labels[keep], concepts


@DATASETS.register("nuswide")
class NUSWide(DataModule):
    Config = NUSWideConfig

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "nuswide", LAYOUT, SOURCE)

    def _index(self, split: str):
        p = self.params
        return load_nuswide_index(str(self.root), split, p.drop_empty, p.skip_missing)

    @functools.cached_property
    def info(self) -> DataInfo:
        concepts = _lines(self.root / "Concepts81.txt")
        s = self.params.size
        return DataInfo(len(concepts), (3, s, s), concepts, IMAGENET_MEAN, IMAGENET_STD)

    def dataset(self, split: str) -> ImageFileDataset:
        self.check_split(split)
        paths, labels, _ = self._index(split)
        return ImageFileDataset(paths, labels, self.params.size)
