"""Embedded multi-label dataset: 2x2 mosaics of scikit-learn's handwritten digits, with 10 presence labels.

Each image is a 2x2 grid of tiles; every tile holds a digit image (upscaled) or is blank (probability
``blank_prob``), with at least one digit per image. Label ``j`` is 1 when digit ``j`` appears anywhere in the
mosaic. Training mosaics use only digits of the digits train split and test mosaics only test-split digits
(the same stratified, seeded split as ``dataset=digits``), so no digit image is shared. Generation is seeded
(``dataset.mosaic_seed``) and cached per process. No download.
"""

from __future__ import annotations

import functools

import torch
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import DigitsMultiLabelConfig  # noqa: F401
from advlab.data.digits import load_digits_tensors
from advlab.data.info import DataInfo


def make_mosaics(
    images: torch.Tensor, labels: torch.Tensor, count: int, blank_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` 2x2 mosaics of ``images`` ``[N,C,s,s]`` -> (``[count,C,2s,2s]``, multi-hot ``[count,10]``)."""
    n, c, s, _ = images.shape
    pick = torch.randint(n, (count, 4), generator=generator)
    blank = torch.rand(count, 4, generator=generator) < blank_prob
    keep = torch.randint(4, (count,), generator=generator)  # one tile always holds a digit
    blank[torch.arange(count), keep] = False
    tiles = images[pick] * (~blank).float()[:, :, None, None, None]  # [count, 4, C, s, s]
    top = torch.cat([tiles[:, 0], tiles[:, 1]], dim=3)
    bottom = torch.cat([tiles[:, 2], tiles[:, 3]], dim=3)
    x = torch.cat([top, bottom], dim=2).contiguous()
    y = torch.zeros(count, 10)
    y.scatter_add_(1, labels[pick].masked_fill(blank, 0), (~blank).float())
    return x, (y > 0).float()


@functools.lru_cache(maxsize=4)
def load_mosaics(
    tile: int, channels: int, counts: tuple[int, int], blank: float, seed: int, frac: float, split_seed: int
):
    digits = load_digits_tensors(tile, channels, frac, split_seed)
    out = {}
    for i, split in enumerate(("train", "test")):
        gen = torch.Generator().manual_seed(seed * 2 + i)
        out[split] = make_mosaics(*digits[split], counts[i], blank, gen)
    return out


@DATASETS.register("digits_multilabel")
class DigitsMultiLabel(DataModule):
    Config = DigitsMultiLabelConfig

    def _tensors(self):
        p = self.params
        return load_mosaics(
            p.tile_size,
            p.channels,
            (p.num_train, p.num_test),
            p.blank_prob,
            p.mosaic_seed,
            p.test_fraction,
            p.split_seed,
        )

    @functools.cached_property
    def info(self) -> DataInfo:
        x, _ = self._tensors()["train"]
        p = self.params
        return DataInfo(
            num_classes=10,
            image_shape=(p.channels, 2 * p.tile_size, 2 * p.tile_size),
            class_names=[str(i) for i in range(10)],
            mean=tuple(x.mean(dim=(0, 2, 3)).tolist()),
            std=tuple(x.std(dim=(0, 2, 3)).tolist()),
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(*self._tensors()[split])
