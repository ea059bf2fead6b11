"""The data-module pattern every dataset follows.

A data module is built from its validated config, knows its :class:`DataInfo` (classes, image shape,
normalisation statistics, default task), returns a ``torch.utils.data.Dataset`` per split whose items are
``(image float CHW in [0,1], target)``, and owns the training-time augmentation, applied batch-wise on the
device. Datasets read from disk resolve ``root`` with :func:`require_root`, which fails early with the
expected layout and where to get the data.

Every DataLoader of a data module is made by :meth:`DataModule.dataloader`, with the dataset's loading
settings (``num_workers``, ``pin_memory``, ``persistent_workers``, ``prefetch_factor``; defaults per device,
see :meth:`DataModule.loader_options`); the loops copy batches to the device with ``non_blocking=True``, which
overlaps the copy with compute when the batches are pinned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from advlab.data.configs import DATASETS, DatasetConfig  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError
from advlab.registry import check


def require_root(root: str | os.PathLike | None, dataset: str, layout: list[str], source: str) -> Path:
    """Return ``root`` as a Path after checking each relative path in ``layout`` exists under it.

    ``layout`` lists files/folders relative to root (glob patterns allowed); ``source`` says where the data is
    published. The error shows the full expected layout so users can fix their folder in one go.
    """
    expected = "\n".join(f"    {root or '<root>'}/{p}" for p in layout)
    hint = f"Expected layout:\n{expected}\nDownload from {source} and set dataset.root=<folder>."
    if root is None or str(root) == "":
        raise DatasetNotFoundError(f"dataset.root is not set for dataset '{dataset}'.\n{hint}")
    path = Path(os.path.expanduser(str(root)))
    if not path.is_dir():
        raise DatasetNotFoundError(f"dataset.root '{path}' for dataset '{dataset}' does not exist.\n{hint}")
    missing = [p for p in layout if not any(path.glob(p))]
    if missing:
        raise DatasetNotFoundError(
            f"dataset.root '{path}' for dataset '{dataset}' is malformed: missing {', '.join(missing)}.\n{hint}"
        )
    return path


class DataModule:
    Config = DatasetConfig
    registered_name = "dataset"
    splits: tuple[str, ...] = ("train", "test")

    #: the device the run computes on (set by :meth:`advlab.context.RunContext.build`); picks the loading defaults
    device: torch.device | None = None

    def __init__(self, params: Any, seed: int):
        self.params = params
        self.seed = seed

    @property
    def default_task(self) -> str:
        """The task used when ``task.name=auto``: declared on the dataset's config (``default_task``)."""
        return self.Config.default_task

    @property
    def info(self) -> DataInfo:
        raise NotImplementedError

    def dataset(self, split: str) -> Dataset:
        raise NotImplementedError

    def check_split(self, split: str) -> None:
        check(split in self.splits, "dataset", f"split '{split}' not available; choose from {self.splits}")

    def loader(
        self, split: str, batch_size: int, shuffle: bool = False, limit: int | None = None, seed: int = 0
    ) -> DataLoader:
        ds = self.dataset(split)
        if limit is not None and limit < len(ds):
            ds = torch.utils.data.Subset(ds, range(limit))
        gen = torch.Generator().manual_seed(seed)
        return self.dataloader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, drop_last=False)

    def loader_options(self) -> dict[str, Any]:
        """The DataLoader settings of ``dataset.*``, nulls resolved for :attr:`device`: ``num_workers`` 0 for
        in-memory datasets and CPU runs (workers would compete with the compute for the cores), else
        ``min(4, cores - 1)``; ``pin_memory`` on for a cuda device."""
        p = self.params
        on_cuda = self.device is not None and torch.device(self.device).type == "cuda"
        workers = getattr(p, "num_workers", 0)
        if workers is None:
            reads_files = getattr(type(p), "reads_files", False)
            workers = min(4, max((os.cpu_count() or 1) - 1, 0)) if (on_cuda and reads_files) else 0
        pin = getattr(p, "pin_memory", None)
        options: dict[str, Any] = {"num_workers": workers, "pin_memory": on_cuda if pin is None else pin}
        if workers > 0:
            options["persistent_workers"] = bool(getattr(p, "persistent_workers", False))
            if getattr(p, "prefetch_factor", None) is not None:
                options["prefetch_factor"] = p.prefetch_factor
        return options

    def dataloader(self, dataset: Dataset, **kwargs: Any) -> DataLoader:
        """A DataLoader over ``dataset`` (batching as in ``kwargs``) with the dataset's loading settings: the
        one place every loader of this data module is made."""
        return DataLoader(dataset, **{**self.loader_options(), **kwargs})

    def train_transform(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Batch augmentation on the device (random 2-pixel-padded crops, optional flips)."""
        if self.params.augment:
            n, c, h, w = x.shape
            pad = 2
            padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="replicate")
            dy = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * pad + 1, (n, 1), generator=generator).to(x.device)
            iy = (torch.arange(h, device=x.device)[None, :] + dy)[:, None, :, None]
            ix = (torch.arange(w, device=x.device)[None, :] + dx)[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chan = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[batch, chan, iy, ix]
        if self.params.hflip:
            flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x
