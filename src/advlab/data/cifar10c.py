"""Common corruptions of a test set: read from disk (CIFAR-10-C / ImageNet-C ``.npy`` format) or generated
on the fly for any dataset (``imagecorruptions``, the 15 benchmark corruptions x severities 1-5).

On-disk format (CIFAR-10-C, Hendrycks & Dietterich, https://zenodo.org/record/2535967)::

    <root>/<corruption>.npy   uint8 [5 * n, H, W, 3]: severities 1..5 stacked, n images each (10 000)
    <root>/labels.npy         int [5 * n] (the test labels repeated per severity) or [n]

:class:`CorruptionSource` gives ``(images float [n, C, H, W] in [0, 1], labels)`` per (corruption, severity).
Generated corruptions are deterministic (seeded per corruption, severity and image) and cached on disk.
"""

from __future__ import annotations

import functools
import logging
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from advlab.cache import ArtifactCache
from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.cifar10 import Cifar10
from advlab.data.configs import Cifar10CConfig  # noqa: F401
from advlab.errors import DatasetNotFoundError
from advlab.metrics.corruption import CORRUPTIONS

logger = logging.getLogger(__name__)
SOURCE_C = "https://zenodo.org/record/2535967 (CIFAR-10-C.tar)"


class CorruptionSource:
    def get(self, corruption: str, severity: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


@functools.lru_cache(maxsize=4)
def _load_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r")


class NpyCorruptions(CorruptionSource):
    """The CIFAR-10-C layout (``<corruption>.npy`` + ``labels.npy``)."""

    def __init__(self, root: str | os.PathLike, corruptions: list[str], limit: int | None = None):
        self.root = require_root(
            root, "cifar10c", [f"{c}.npy" for c in corruptions] + ["labels.npy"], SOURCE_C
        )
        self.limit = limit
        labels = np.load(self.root / "labels.npy")
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def get(self, corruption: str, severity: int) -> tuple[Tensor, Tensor]:
        arr = _load_npy(str(self.root / f"{corruption}.npy"))
        if arr.ndim != 4 or arr.shape[0] % 5 or arr.shape[-1] not in (1, 3):
            raise DatasetNotFoundError(
                f"'{self.root / corruption}.npy' is malformed: shape {arr.shape}, expected [5 * n, H, W, 3] uint8"
            )
        n = arr.shape[0] // 5
        if len(self.labels) not in (n, 5 * n):
            raise DatasetNotFoundError(
                f"'{self.root / 'labels.npy'}' has {len(self.labels)} labels; expected {n} or {5 * n} to match "
                f"{corruption}.npy ({arr.shape[0]} images)"
            )
        k = n if self.limit is None else min(n, self.limit)
        part = np.array(arr[(severity - 1) * n : (severity - 1) * n + k])  # a writable copy
        x = torch.from_numpy(part).permute(0, 3, 1, 2).float().div_(255)
        labels = self.labels[(severity - 1) * n :] if len(self.labels) == 5 * n else self.labels
        return x, labels[:k].clone()


def corrupt_batch(x: Tensor, corruption: str, severity: int, seed: int) -> Tensor:
    """Apply one ``imagecorruptions`` corruption to images in [0, 1] (CPU, deterministic per image).

    imagecorruptions needs sides of at least 32 px: smaller images are upsampled (bilinear, integer factor)
    before corrupting and brought back to their size by area averaging."""
    from imagecorruptions import corrupt

    h, w = x.shape[-2:]
    if min(h, w) < 32:
        factor = -(-32 // min(h, w))
        up = torch.nn.functional.interpolate(
            x.float(), scale_factor=factor, mode="bilinear", align_corners=False
        )
        out = corrupt_batch(up.clamp(0, 1), corruption, severity, seed)
        return torch.nn.functional.interpolate(out, size=(h, w), mode="area")
    imgs = (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty_like(imgs)
    state = np.random.get_state()
    try:
        for i, img in enumerate(imgs):
            np.random.seed((seed * 1_000_003 + i) % (2**32))
            src = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
            res = np.asarray(corrupt(src, corruption_name=corruption, severity=severity))
            res = res[: img.shape[0], : img.shape[1]]
            out[i] = res.mean(axis=2, keepdims=True).round().astype(np.uint8) if img.shape[2] == 1 else res
    finally:
        np.random.set_state(state)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


class GeneratedCorruptions(CorruptionSource):
    """Corruptions of ``(x, y)`` (any dataset's test images) generated with imagecorruptions, cached."""

    def __init__(self, x: Tensor, y: Tensor, cache_dir: Path | None, key: dict):
        self.x, self.y = x, y
        self.cache_dir, self.key = cache_dir, key

    def get(self, corruption: str, severity: int) -> tuple[Tensor, Tensor]:
        seed = zlib.crc32(f"{corruption}-{severity}".encode())
        if self.cache_dir is None:
            return corrupt_batch(self.x, corruption, severity, seed), self.y
        cache = ArtifactCache(self.cache_dir)
        key = {**self.key, "corruption": corruption, "severity": severity, "n": len(self.y)}
        artifact = cache.artifact("corruptions", f"{corruption}-{severity}", key)

        def generate(_resume: Path) -> Tensor:  # stored as uint8
            return (corrupt_batch(self.x, corruption, severity, seed) * 255).round().byte()

        xc, _ = cache.load_or_build(artifact, generate)
        return xc.float().div_(255), self.y


@DATASETS.register("cifar10c")
class Cifar10C(Cifar10):
    """CIFAR-10 for training, one CIFAR-10-C corruption/severity as the test split."""

    Config = Cifar10CConfig

    def dataset(self, split: str) -> TensorDataset:
        if split != "test":
            return super().dataset(split)
        src = NpyCorruptions(self.params.corrupted_root, [self.params.corruption])
        return TensorDataset(*src.get(self.params.corruption, self.params.severity))


__all__ = [
    "CORRUPTIONS",
    "CorruptionSource",
    "DataModule",
    "GeneratedCorruptions",
    "NpyCorruptions",
    "corrupt_batch",
]
