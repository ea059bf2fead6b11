"""Face datasets with identities and binary attributes (CelebA, the embedded ``synthfaces``).

A face data module has three splits (``train``, ``dev``, ``test``: CelebA's ``list_eval_partition.txt``
0/1/2). ``dataset(split)`` yields ``(image, identity)`` (what an identity-embedding victim is trained on),
``attribute_dataset(split)`` yields ``(image, attributes)`` (float multi-hot over ``attribute_names``, what an
attribute-conditional generator is trained on), and :meth:`identities` / :meth:`attributes` give the labels of
a whole split without reading images (used to build verification pairs).

Training batches of the identity-embedding victim are identity-grouped (``dataset.images_per_identity_batch``
images of each identity side by side, FaceNet's P x K batches): with plain shuffling a batch of 128 from 200
identities x 10 images holds about one other image of an anchor's identity on average and the contrastive loss
sees almost no positive pairs. Every image still appears exactly once per epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from advlab.data.base import DataModule
from advlab.data.configs import FaceDatasetConfig  # noqa: F401


def identity_grouped_order(identities: Tensor, group: int, generator: torch.Generator) -> Tensor:
    """A permutation of ``range(len(identities))`` made of shuffled groups of up to ``group`` images of one
    identity: each identity's images are shuffled and cut into groups, then the groups are shuffled."""
    ids = identities.cpu()
    perm = torch.randperm(len(ids), generator=generator)
    order = perm[torch.argsort(ids[perm], stable=True)]  # by identity, shuffled within
    sorted_ids = ids[order]
    start_of_id = torch.ones(len(ids), dtype=torch.bool)
    start_of_id[1:] = sorted_ids[1:] != sorted_ids[:-1]
    first = torch.cummax(torch.where(start_of_id, torch.arange(len(ids)), 0), 0).values
    rank_in_id = torch.arange(len(ids)) - first
    group_start = start_of_id | (rank_in_id % group == 0)
    group_id = torch.cumsum(group_start.long(), 0) - 1
    shuffled_groups = torch.randperm(int(group_id[-1]) + 1, generator=generator) if len(ids) else group_id
    return order[torch.argsort(shuffled_groups[group_id], stable=True)]


class FaceAttributeData(DataModule):
    splits = ("train", "dev", "test")

    @property
    def attribute_names(self) -> list[str]:
        raise NotImplementedError

    @classmethod
    def configured_attributes(cls, params) -> list[str]:
        """The attribute list a config of this dataset gives, without loading any data (checks before work)."""
        return list(params.attributes)

    @classmethod
    def configured_image_size(cls, params) -> int:
        """The (square) image side a config of this dataset gives, without loading any data."""
        return int(params.image_size)

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
        return self.dataloader(
            self.attribute_dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=gen,
            drop_last=drop_last,
        )

    def loader(
        self, split: str, batch_size: int, shuffle: bool = False, limit: int | None = None, seed: int = 0
    ) -> torch.utils.data.DataLoader:
        group = getattr(self.params, "images_per_identity_batch", 0)
        if not shuffle or group <= 1 or limit is not None:
            return super().loader(split, batch_size, shuffle=shuffle, limit=limit, seed=seed)
        order = identity_grouped_order(self.identities(split), group, torch.Generator().manual_seed(seed))
        batches = [order[s : s + batch_size].tolist() for s in range(0, len(order), batch_size)]
        return self.dataloader(self.dataset(split), batch_sampler=batches)

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
