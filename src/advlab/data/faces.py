"""Face datasets with identities and binary attributes (CelebA, the embedded ``synthfaces``).

A face data module has three splits (``train``, ``dev``, ``test``: CelebA's ``list_eval_partition.txt``
0/1/2). ``dataset(split)`` yields ``(image, identity)`` (what an identity-embedding victim is trained on),
``attribute_dataset(split)`` yields ``(image, attributes)`` (float multi-hot over ``attribute_names``, what an
attribute-conditional generator is trained on), and :meth:`identities` / :meth:`attributes` give the labels of
a whole split without reading images (used to build verification pairs).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from advlab.data.base import DataModule


class FaceAttributeData(DataModule):
    splits = ("train", "dev", "test")
    default_task = "verification"

    @property
    def attribute_names(self) -> list[str]:
        raise NotImplementedError

    def images(self, split: str) -> Dataset:
        """Dataset of images only (items: image tensor)."""
        raise NotImplementedError

    def identities(self, split: str) -> Tensor:
        """int64 identity label per image of ``split``."""
        raise NotImplementedError

    def attributes(self, split: str) -> Tensor:
        """float {0,1} attributes [N, A] of ``split``."""
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        self.check_split(split)
        return _Labelled(self.images(split), self.identities(split))

    def attribute_dataset(self, split: str) -> Dataset:
        self.check_split(split)
        return _Labelled(self.images(split), self.attributes(split))

    def attribute_loader(
        self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
    ) -> torch.utils.data.DataLoader:
        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            self.attribute_dataset(split), batch_size, shuffle=shuffle, generator=gen, drop_last=drop_last
        )

    def load_images(self, split: str, index: Tensor) -> Tensor:
        """The images at ``index`` of ``split`` as one batch [len(index), C, H, W]."""
        ds = self.images(split)
        if isinstance(ds, torch.utils.data.TensorDataset):
            return ds.tensors[0][index]
        return torch.stack([ds[int(i)] for i in index])


class _Labelled(Dataset):
    def __init__(self, images: Dataset, labels: Tensor):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = self.images[i]
        if isinstance(img, tuple):
            img = img[0]
        return img, self.labels[i]
