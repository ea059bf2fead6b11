"""Multi-process (DistributedDataParallel) helpers for the fit and evaluate loops.

``torchrun --nproc_per_node=N -m advlab ...`` starts N processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
set; :func:`init_from_env` then joins the process group (nccl on GPUs, gloo on CPU) and pins each rank to its
GPU. Everything else in advlab asks :func:`rank_world` and behaves as a single process when it is (0, 1).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from advlab.metrics.meter import Meter


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_world()[0] == 0


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group described by torchrun's environment (no-op for one process); returns the
    device of this rank (``cuda:LOCAL_RANK`` when training on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast(obj):
    """Rank 0's value of ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_loader(dataset: Dataset, batch_size: int, seed: int, **loader_options: Any) -> DataLoader:
    """This rank's share of a shuffled epoch (the same permutation on every rank, split by rank);
    ``loader_options``: the data module's DataLoader settings (``DataModule.loader_options``)."""
    rank, world = rank_world()
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, **loader_options)


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable, e.g. an evaluation state on the CPU), in rank order, on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reduce_meter(meter: Meter) -> None:
    """Make ``meter`` hold every rank's samples (in rank order) and maxima, in place: the same merge as
    sharded evaluation (:meth:`Meter.merge`), so the metrics are those of one process that saw them all."""
    device = next((v[0].device for v in meter.values.values() if v), torch.device("cpu"))
    parts = gather_objects(copy.deepcopy(meter).to("cpu"))
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(other)
    meter.__dict__.update(merged.to(device).__dict__)
