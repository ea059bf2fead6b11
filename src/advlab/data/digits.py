"""Embedded dataset: scikit-learn's bundled 8x8 handwritten digits (1797 real images, 10 classes), upscaled.

No download: the data ships with scikit-learn. The train/test split is stratified and seeded
(``dataset.split_seed``), so every run and every victim sees the same test set.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import DigitsConfig  # noqa: F401
from advlab.data.info import DataInfo


@functools.lru_cache(maxsize=8)
def load_digits_tensors(size: int, channels: int, test_fraction: float, split_seed: int):
    """Return ``{split: (images [N,C,size,size] in [0,1], labels [N])}``; cached per process."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # [N,1,8,8], 0..16 -> [0,1]
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    images = images.expand(-1, channels, -1, -1).contiguous()
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=split_seed, stratify=bunch.target
    )
    return {
        "train": (images[train_idx], labels[train_idx]),
        "test": (images[test_idx], labels[test_idx]),
    }


@DATASETS.register("digits")
class Digits(DataModule):
    Config = DigitsConfig

    def _tensors(self):
        p = self.params
        return load_digits_tensors(p.size, p.channels, p.test_fraction, p.split_seed)

    @functools.cached_property
    def info(self) -> DataInfo:
        x, _ = self._tensors()["train"]
        mean = tuple(x.mean(dim=(0, 2, 3)).tolist())
        std = tuple(x.std(dim=(0, 2, 3)).tolist())
        p = self.params
        return DataInfo(
            num_classes=10,
            image_shape=(p.channels, p.size, p.size),
            class_names=[str(i) for i in range(10)],
            mean=mean,
            std=std,
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(*self._tensors()[split])
