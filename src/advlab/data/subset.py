"""Which test images an evaluation attacks (``eval.subset``), and attack targets read from a file
(``task.target_file``): the JMA paper's protocol.

- ``first`` (default): the first ``eval.num_examples`` test images, in order.
- ``random_correct``: ``eval.num_examples`` test images drawn at random (seeded by the run's seed) among those
  the victim classifies correctly (the task's ``correct``), as the JMA paper attacks "200 randomly chosen,
  correctly classified test images". One clean pass over the test split picks them; they are attacked in
  increasing index order.
- ``file``: the test-set indices in ``eval.subset_file``, a 1-D integer ``.npy`` as the official JMA
  repository ships them (``to_be_attacked_200_*_index.npy``, ``correct_predict_index.npy``), in the file's
  order (the first ``eval.num_examples`` if set).

``task.target_file`` holds one target row per attacked image, in the same order: for multi-label tasks a
``[N, labels]`` array in {0,1} or {-1,+1} (``y_tars_*error.npy``); for class tasks either ``[N]`` class
indices or the official ``[N, code_length]`` error pattern in {-1,+1} (``*_error_pattern.npy``), decoded by
the task (:meth:`advlab.tasks.base.Task.targets_from_file`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from advlab.errors import ConfigError

SUBSETS = ("first", "random_correct", "file")


def read_index_file(path: str | Path, num_test: int, key: str = "eval.subset_file") -> Tensor:
    """The test-set indices of an index ``.npy`` (1-D integers in ``[0, num_test)``, no repeats)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{key}: cannot read '{path}' as a .npy array ({exc})") from exc
    arr = np.asarray(arr).squeeze()
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(
            f"{key}: '{path}' must hold a 1-D array of integer test-set indices, got shape {arr.shape} and "
            f"dtype {arr.dtype}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_test):
        raise ConfigError(
            f"{key}: '{path}' has indices in [{arr.min()}, {arr.max()}] but the test split has {num_test} "
            "images; use the index file written for this dataset's test split"
        )
    if len(np.unique(arr)) != arr.size:
        raise ConfigError(f"{key}: '{path}' repeats test-set indices")
    return torch.from_numpy(arr.astype(np.int64))


@torch.no_grad()
def random_correct_indices(
    model: nn.Module,
    task,
    dataset,
    n: int | None,
    batch_size: int,
    device: torch.device,
    seed: int,
    loader_options: dict | None = None,
) -> Tensor:
    """``n`` seeded random indices (sorted) of test images the victim classifies correctly (all if None), the
    victim at full precision (as the evaluate loop's outcomes); ``loader_options``: the data module's
    DataLoader settings."""
    from advlab.victims.acceleration import full_precision

    correct = []
    with full_precision(model):
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, **(loader_options or {})):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            correct.append(task.correct(model(x), y))
    pool = torch.cat(correct).nonzero().squeeze(1).cpu()
    if n is not None and n > len(pool):
        raise ConfigError(
            f"eval.num_examples: {n} correctly classified test images asked, the victim gets only {len(pool)} "
            f"of {len(dataset)} right; lower eval.num_examples"
        )
    gen = torch.Generator().manual_seed(seed)
    pick = pool[torch.randperm(len(pool), generator=gen)[: n if n is not None else len(pool)]]
    return pick.sort().values


def shard_range(num_images: int, shard: int, num_shards: int) -> range:
    """Positions ``[lo, hi)`` (in evaluation order) of shard ``shard`` of ``num_shards`` contiguous slices of
    ``num_images`` evaluated images, ``lo = shard * num_images // num_shards``: the shards in order are the
    unsharded evaluation."""
    return range(shard * num_images // num_shards, (shard + 1) * num_images // num_shards)


def nested_range(num_images: int, parts: Sequence[tuple[int, int]]) -> range:
    """The positions of part ``parts[-1]`` of ... of part ``parts[0]`` of ``num_images`` images, each
    ``(index, count)`` a :func:`shard_range` of the previous range (e.g. ``[(shard, num_shards), (rank,
    world)]``: a torchrun rank's part of a shard)."""
    r = range(num_images)
    for index, count in parts:
        sub = shard_range(len(r), index, count)
        r = r[sub.start : sub.stop]
    return r


def eval_loader(
    model: nn.Module,
    task,
    data,
    params,
    device: torch.device,
    seed: int,
    parts: Sequence[tuple[int, int]] = (),
) -> tuple[DataLoader, range, int]:
    """The evaluate loop's test loader for ``params.subset`` (an :class:`advlab.loops.evaluate.EvalConfig`),
    restricted to the part ``parts`` of the evaluated images (:func:`nested_range`); returns the loader, the
    positions it covers among the evaluated images, and how many images are evaluated in all."""
    if params.subset == "first":
        ds = data.dataset("test")
        n = len(ds) if params.num_examples is None else min(params.num_examples, len(ds))
        idx = None
    else:
        ds = data.dataset("test")
        if params.subset == "file":
            idx = read_index_file(params.subset_file, len(ds))
            if params.num_examples is not None:
                idx = idx[: params.num_examples]
        else:
            idx = random_correct_indices(
                model, task, ds, params.num_examples, params.batch_size, device, seed, data.loader_options()
            )
        n = len(idx)
    part_range = nested_range(n, parts)
    if idx is None and len(part_range) == n:
        loader = data.loader("test", params.batch_size, shuffle=False, limit=params.num_examples)
    else:
        rows = list(part_range) if idx is None else idx[part_range.start : part_range.stop].tolist()
        loader = data.dataloader(Subset(ds, rows), batch_size=params.batch_size, shuffle=False)
    return loader, part_range, n


def read_target_file(task, num_images: int) -> Tensor | None:
    """The rows of ``task.target_file`` for the first ``num_images`` attacked images (None when unset)."""
    path = getattr(task.params, "target_file", None)
    if path is None:
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"task.target_file: cannot read '{path}' as a .npy array ({exc})") from exc
    if arr.shape[0] < num_images:
        raise ConfigError(
            f"task.target_file: '{path}' has {arr.shape[0]} target rows for {num_images} attacked images; use "
            "the target file that goes with eval.subset_file, or lower eval.num_examples"
        )
    return torch.from_numpy(np.ascontiguousarray(arr[:num_images]))
