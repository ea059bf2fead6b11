"""Shared pieces for datasets stored as image files with label lists (VOC, COCO, NUS-WIDE, GTSRB): a
dataset over ``(path, label)`` pairs that decodes and resizes lazily, and a seeded split helper."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from advlab.errors import DatasetNotFoundError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image(path: Path, size: int, box: tuple[int, int, int, int] | None = None) -> Tensor:
    """RGB float CHW in [0,1], optionally cropped to ``box`` (x1, y1, x2, y2 inclusive), resized to size x size
    (bilinear, antialiased, by PIL)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if box is not None:
                im = im.crop((box[0], box[1], box[2] + 1, box[3] + 1))
            im = im.resize((size, size), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8).copy()
    except (OSError, ValueError) as exc:
        raise DatasetNotFoundError(f"dataset: cannot read image '{path}' ({exc})") from None
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255)


class ImageFileDataset(Dataset):
    """Items ``(image [3,size,size] in [0,1], label)``; ``labels`` holds every label (multi-hot float [N, C] or
    class indices [N]) so tasks can read them without decoding images."""

    def __init__(
        self,
        paths: Sequence[Path],
        labels: Tensor,
        size: int,
        boxes: Sequence[tuple[int, int, int, int] | None] | None = None,
    ):
        if len(paths) != len(labels):
            raise DatasetNotFoundError(f"dataset: {len(paths)} images but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = labels
        self.size = size
        self.boxes = boxes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        box = self.boxes[i] if self.boxes is not None else None
        return load_image(self.paths[i], self.size, box), self.labels[i]


def seeded_split(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Random partition of ``range(n)`` into parts of the given fractions (the last takes the rest)."""
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return [np.sort(p) for p in np.split(perm, cuts)]
