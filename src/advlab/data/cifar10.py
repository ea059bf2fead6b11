"""CIFAR-10 from the official "python version" archive (``cifar-10-python.tar.gz`` extracted):

    <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5, test_batch, batches.meta

Each batch is a pickle dict with ``data`` (uint8 [N, 3072], rows of R, G, B planes of 32x32) and
``labels``; ``batches.meta`` has ``label_names``.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import Cifar10Config  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

LAYOUT = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + [
    "cifar-10-batches-py/test_batch",
    "cifar-10-batches-py/batches.meta",
]
SOURCE = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:
        raise DatasetNotFoundError(f"dataset.root: cannot read CIFAR-10 batch '{path}' ({exc})") from None


@functools.lru_cache(maxsize=2)
def load_cifar10_split(root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    folder = Path(root) / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        batch = _unpickle(folder / name)
        missing = [k for k in ("data", "labels") if not isinstance(batch, dict) or k not in batch]
        if missing:
            found = sorted(map(str, batch)) if isinstance(batch, dict) else type(batch).__name__
            raise DatasetNotFoundError(
                f"dataset.root: CIFAR-10 batch '{folder / name}' has no {' / '.join(repr(k) for k in missing)} "
                f"(found {found}); it is not from the official python version ({SOURCE}, extracted under "
                "dataset.root)"
            )
        data, labels = np.asarray(batch["data"], dtype=np.uint8), np.asarray(batch["labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise DatasetNotFoundError(
                f"dataset.root: '{folder / name}' is malformed: data {data.shape} and {len(labels)} labels "
                "(expected [N, 3072] uint8 and N labels)"
            )
        xs.append(data)
        ys.append(labels)
    x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32).float().div_(255)
    return x, torch.from_numpy(np.concatenate(ys))


@DATASETS.register("cifar10")
class Cifar10(DataModule):
    Config = Cifar10Config

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "cifar10", LAYOUT, SOURCE)

    @functools.cached_property
    def info(self) -> DataInfo:
        path = self.root / "cifar-10-batches-py" / "batches.meta"
        meta = _unpickle(path)
        if not isinstance(meta, dict) or "label_names" not in meta:
            raise DatasetNotFoundError(
                f"dataset.root: CIFAR-10 '{path}' has no 'label_names'; it is not from the official python "
                f"version ({SOURCE})"
            )
        return DataInfo(10, (3, 32, 32), list(meta["label_names"]), MEAN, STD)

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        return TensorDataset(*load_cifar10_split(str(self.root), split))
