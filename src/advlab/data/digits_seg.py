"""Embedded segmentation data: real handwritten digits (scikit-learn's bundled 8x8 digits) placed on a colour
canvas, one class per digit plus background (11 classes), per-pixel labels. No download.

Each canvas is split into a 2x2 grid of cells; 1 to ``max_digits`` distinct cells get a digit, upscaled to a
random size and placed with a random offset inside its cell, drawn in a random bright colour over a random
dark, slightly noisy background. A pixel belongs to a digit where the upscaled digit's intensity is at least
``threshold``. Training canvases use only the digits of the stratified training split, test canvases only those
of the test split; everything is seeded (``dataset.split_seed``), so every run sees the same canvases.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import (
    DigitsSegConfig,  # noqa: F401
    content_key,
)
from advlab.data.digits import load_digits_tensors
from advlab.data.info import DataInfo

CLASS_NAMES = ["background", *[str(i) for i in range(10)]]


def render_canvases(
    digits: torch.Tensor, labels: torch.Tensor, n: int, p: DigitsSegConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` canvases ``[n, 3, S, S]`` in [0,1] and label maps ``[n, S, S]`` (0 = background, d+1 = digit d)."""
    rng = np.random.default_rng(seed)
    s, cell = p.size, p.size // 2
    bg = torch.from_numpy(rng.uniform(0.0, 0.35, (n, 3, 1, 1))).float()
    images = bg + p.noise * torch.from_numpy(rng.standard_normal((n, 3, s, s))).float()
    maps = torch.zeros(n, s, s, dtype=torch.int64)
    counts = rng.integers(1, p.max_digits + 1, n)
    src = digits[:, 0]  # [M, 8, 8] in [0, 1]
    for i in range(n):
        cells = rng.permutation(4)[: counts[i]]
        for c in cells:
            k = int(rng.integers(len(src)))
            side = int(round(cell * rng.uniform(p.min_scale, p.max_scale)))
            glyph = F.interpolate(src[k][None, None], size=(side, side), mode="bilinear", align_corners=False)
            glyph = glyph[0, 0].clamp(0, 1)
            top = (c // 2) * cell + int(rng.integers(0, cell - side + 1))
            left = (c % 2) * cell + int(rng.integers(0, cell - side + 1))
            colour = torch.from_numpy(rng.uniform(0.6, 1.0, (3, 1, 1))).float()
            region = images[i, :, top : top + side, left : left + side]
            images[i, :, top : top + side, left : left + side] = region * (1 - glyph) + colour * glyph
            m = maps[i, top : top + side, left : left + side]
            maps[i, top : top + side, left : left + side] = torch.where(
                glyph >= p.threshold, labels[k] + 1, m
            )
    return images.clamp(0, 1), maps


@functools.lru_cache(maxsize=4)
def _load_cached(key: tuple) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    p = DigitsSegConfig(**dict(key))
    base = load_digits_tensors(8, 1, 0.25, p.split_seed)
    out = {}
    for j, (split, n) in enumerate((("train", p.num_train), ("test", p.num_test))):
        x, y = base[split]
        out[split] = render_canvases(x, y, n, p, seed=1000 * p.split_seed + j)
    return out


@DATASETS.register("digits_seg")
class DigitsSeg(DataModule):
    Config = DigitsSegConfig

    def _tensors(self):
        fields = content_key(self.params)
        return _load_cached(tuple(sorted(fields.items())))

    @functools.cached_property
    def info(self) -> DataInfo:
        x, _ = self._tensors()["train"]
        return DataInfo(
            num_classes=len(CLASS_NAMES),
            image_shape=(3, self.params.size, self.params.size),
            class_names=list(CLASS_NAMES),
            mean=tuple(x.mean(dim=(0, 2, 3)).tolist()),
            std=tuple(x.std(dim=(0, 2, 3)).tolist()),
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(*self._tensors()[split])

    def train_transform(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # The fit loop transforms images only; geometric augmentation would misalign the label maps.
        return x
