"""Embedded segmentation data: real handwritten digits (scikit-learn's bundled 8x8 digits) placed on a colour
canvas, one class per digit plus background (11 classes), per-pixel labels. No download.

Each canvas is split into a 2x2 grid of cells; 1 to ``max_digits`` distinct cells get a digit, upscaled to a
random size and placed with a random offset inside its cell, drawn in a random bright colour over a random
dark, slightly noisy background. A pixel belongs to a digit where the upscaled digit's intensity is at least
``threshold``. Training canvases use only the digits of the stratified training split, test canvases only those
of the test split; everything is seeded (``dataset.split_seed``), so every run sees the same canvases.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule, DatasetConfig
from advlab.data.digits import load_digits_tensors
from advlab.data.info import DataInfo
from advlab.registry import check

CLASS_NAMES = ["background", *[str(i) for i in range(10)]]


@dataclasses.dataclass
class DigitsSegConfig(DatasetConfig):
    size: int = 64  # canvas side (pixels)
    num_train: int = 1500
    num_test: int = 400
    max_digits: int = 3  # digits per canvas: 1..max_digits (at most 4, one per grid cell)
    min_scale: float = 0.7  # digit side as a fraction of the cell side: [min_scale, max_scale]
    max_scale: float = 1.0
    threshold: float = 0.3  # digit pixels: upscaled intensity >= threshold
    noise: float = 0.05  # std of the background noise
    split_seed: int = 0

    def validate(self, key: str) -> None:
        check(self.size >= 32, f"{key}.size", f"must be >= 32 (got {self.size})")
        check(self.num_train >= 1 and self.num_test >= 1, key, "num_train and num_test must be >= 1")
        check(1 <= self.max_digits <= 4, f"{key}.max_digits", f"must be in [1, 4] (got {self.max_digits})")
        check(
            0.2 <= self.min_scale <= self.max_scale <= 1.0,
            f"{key}.min_scale",
            "need 0.2 <= min_scale <= max_scale <= 1",
        )
        check(0.0 < self.threshold < 1.0, f"{key}.threshold", f"must be in (0, 1) (got {self.threshold})")


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
    label_kind = "mask"
    Config = DigitsSegConfig
    default_task = "segmentation"

    def _tensors(self):
        fields = dataclasses.asdict(self.params)
        fields.pop("root", None)
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
