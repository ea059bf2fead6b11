"""MNIST from the original IDX files (optionally gzipped):

    <root>/train-images-idx3-ubyte[.gz]   <root>/train-labels-idx1-ubyte[.gz]
    <root>/t10k-images-idx3-ubyte[.gz]    <root>/t10k-labels-idx1-ubyte[.gz]

IDX: a big-endian header (two zero bytes, the element type 0x08 = uint8, the number of dimensions, then each
dimension as uint32) followed by the raw data. Images are 28x28 grey, resized to ``size`` (bilinear), or zero-padded to it with ``pad``.
"""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import MNISTConfig  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SOURCE = "http://yann.lecun.com/exdb/mnist/ (or any mirror of the four IDX files)"


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (plain or .gz) into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DatasetNotFoundError(f"dataset.root: cannot read IDX file '{path}' ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetNotFoundError(f"dataset.root: '{path}' is not an unsigned-byte IDX file (bad magic)")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetNotFoundError(f"dataset.root: '{path}' holds {body.size} values, header says {dims}")
    return body.reshape(dims)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetNotFoundError(f"dataset.root: missing '{root / name}' (or .gz)")


@functools.lru_cache(maxsize=4)
def load_mnist_split(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(_find(Path(root), FILES[split][0]))
    labels = read_idx(_find(Path(root), FILES[split][1]))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetNotFoundError(
            f"dataset.root: MNIST {split} images {images.shape} and labels {labels.shape} do not match"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


@DATASETS.register("mnist")
class MNIST(DataModule):
    Config = MNISTConfig

    @functools.cached_property
    def root(self) -> Path:
        layout = [f"{name}*" for pair in FILES.values() for name in pair]
        return require_root(self.params.root, "mnist", layout, SOURCE)

    @functools.cached_property
    def info(self) -> DataInfo:
        p = self.params
        return DataInfo(
            10,
            (p.channels, p.size, p.size),
            [str(i) for i in range(10)],
            (0.1307,) * p.channels,
            (0.3081,) * p.channels,
        )

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        images, labels = load_mnist_split(str(self.root), split)
        x = images.float().div(255)[:, None]
        if self.params.pad:  # centred, zeros around (the JMA authors' np.pad of the 28x28 digits to 32x32)
            margin = (self.params.size - x.shape[-1]) // 2
            x = F.pad(x, (margin,) * 4)
        elif self.params.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.params.size,) * 2, mode="bilinear", align_corners=False).clamp(
                0, 1
            )
        x = x.expand(-1, self.params.channels, -1, -1).contiguous()
        return TensorDataset(x, labels)
