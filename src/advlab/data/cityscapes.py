"""Cityscapes (fine annotations), read from its published layout::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

SemanticAdv's instance-targeted attack also reads ``<...>_gtFine_instanceIds.png`` next to the labels
(:meth:`Cityscapes.load_instances`, only when asked): ``labelId * 1000 + k`` on the pixels of the k-th
instance of a "thing" class (person, rider, car, ...), the plain ``labelId`` elsewhere (stuff, crowd regions).

``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` from https://www.cityscapes-dataset.com,
extracted into one folder. The 34 ``labelIds`` map to the 19 evaluated ``trainIds`` (everything else, incl.
the license plate -1, becomes 255 = ignore), as in the official cityscapesScripts ``labels.py``. advlab's
``train`` split is Cityscapes ``train``; its ``test`` split is ``dataset.test_split`` (``val``: the test
labels are not public). ``dataset.size=[H, W]`` resizes (images bilinear, labels nearest); null keeps the
native 1024x2048.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import CityscapesConfig  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

SOURCE = "https://www.cityscapes-dataset.com (leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip)"
CLASS_NAMES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
#: labelId -> trainId for the 19 evaluated classes (cityscapesScripts labels.py); all other ids -> 255
LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
NATIVE_SIZE = (1024, 2048)


def label_lut() -> np.ndarray:
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN.items():
        lut[label_id] = train_id
    return lut


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds array (uint8) to trainIds (uint8, 255 = ignore)."""
    return label_lut()[label_ids]


class CityscapesSplit(Dataset):
    def __init__(self, root: Path, split: str, size: tuple[int, int] | None):
        self.size = size
        images = sorted((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png"))
        if not images:
            raise DatasetNotFoundError(
                f"dataset.root '{root}': no images in leftImg8bit/{split}/<city>/*_leftImg8bit.png. "
                f"Download from {SOURCE}."
            )
        self.images, self.labels, missing = [], [], []
        for img in images:
            stem = img.name[: -len("_leftImg8bit.png")]
            label = root / "gtFine" / split / img.parent.name / f"{stem}_gtFine_labelIds.png"
            (self.labels if label.is_file() else missing).append(label)
            self.images.append(img)
        if missing:
            raise DatasetNotFoundError(
                f"dataset.root '{root}': {len(missing)} of {len(images)} {split} images have no label file, "
                f"e.g. '{missing[0]}'. Extract gtFine_trainvaltest.zip into the same root."
            )

    def __len__(self) -> int:
        return len(self.images)

    def instance_ids(self, i: int) -> Tensor:
        """The ``*_gtFine_instanceIds.png`` of image ``i`` ``[H, W]`` int64, resized like the labels (nearest)."""
        from PIL import Image

        path = self.labels[i].with_name(
            self.labels[i].name.replace("_gtFine_labelIds.png", "_gtFine_instanceIds.png")
        )
        if not path.is_file():
            raise DatasetNotFoundError(
                f"dataset.root: '{path}' does not exist; the instance-targeted attack reads the instance ids of "
                "gtFine_trainvaltest.zip (extract the whole archive, *_gtFine_instanceIds.png included)"
            )
        with Image.open(path) as im:
            ids = torch.from_numpy(np.asarray(im, dtype=np.int32).astype(np.int64))
        if self.size is not None and tuple(ids.shape) != tuple(self.size):
            ids = F.interpolate(ids[None, None].double(), size=self.size, mode="nearest")[0, 0].long()
        return ids

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        with Image.open(self.images[i]) as im:
            image = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy())
        with Image.open(self.labels[i]) as im:
            label = torch.from_numpy(to_train_ids(np.asarray(im, dtype=np.uint8)).astype(np.int64))
        x = image.permute(2, 0, 1).float() / 255.0
        if self.size is not None and tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
            label = F.interpolate(label[None, None].float(), size=self.size, mode="nearest")[0, 0].long()
        return x, label


@DATASETS.register("cityscapes")
class Cityscapes(DataModule):
    Config = CityscapesConfig

    @functools.cached_property
    def root(self) -> Path:
        splits = ("train", self.params.test_split)
        layout = [f"{kind}/{s}/*/*_{suffix}.png" for s in splits for kind, suffix in
                  (("leftImg8bit", "leftImg8bit"), ("gtFine", "gtFine_labelIds"))]  # fmt: skip
        return require_root(self.params.root, "cityscapes", layout, SOURCE)

    @functools.cached_property
    def info(self) -> DataInfo:
        h, w = self.params.size or NATIVE_SIZE
        return DataInfo(
            num_classes=19,
            image_shape=(3, h, w),
            class_names=list(CLASS_NAMES),
            mean=(0.485, 0.456, 0.406),  # ImageNet statistics (mmseg victims use their own config's)
            std=(0.229, 0.224, 0.225),
        )

    @functools.lru_cache(maxsize=2)  # noqa: B019 - one module per run
    def dataset(self, split: str) -> CityscapesSplit:
        self.check_split(split)
        actual = "train" if split == "train" else self.params.test_split
        return CityscapesSplit(self.root, actual, tuple(self.params.size) if self.params.size else None)

    def loader(
        self, split: str, batch_size: int, shuffle: bool = False, limit: int | None = None, seed: int = 0
    ) -> DataLoader:
        ds = self.dataset(split)
        if limit is not None and limit < len(ds):
            ds = torch.utils.data.Subset(ds, range(limit))
        gen = torch.Generator().manual_seed(seed)
        return self.dataloader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen)

    def train_transform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x  # label maps must follow any geometry; the EOT patch does its own paired transforms

    def load_instances(self, split: str, index: Tensor) -> Tensor:
        """Instance-id maps ``[n, H, W]`` (``labelId * 1000 + k`` on instance pixels) of the images ``index``."""
        ds = self.dataset(split)
        return torch.stack([ds.instance_ids(int(i)) for i in index])

    def instance_classes(self, ids: Tensor) -> Tensor:
        """The train id of every instance id (``labelId = id // 1000``); -1 where the id is not an instance."""
        lut = torch.from_numpy(label_lut().astype(np.int64)).to(ids.device)
        train = lut[(ids // 1000).clamp(0, 255)]
        return torch.where((ids >= 1000) & (train != 255), train, torch.full_like(ids, -1))
