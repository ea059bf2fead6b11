"""The fit loop: train a victim on the training split, optionally under a training-time defense.

Resumable: after every epoch the full state (model, optimiser, scheduler, epoch, RNG) is written atomically
to ``resume_path``; a restarted run continues from the last finished epoch.

Distributed: when a ``torch.distributed`` process group is initialised (``torchrun --nproc_per_node=N``, see
:func:`advlab.distributed.init_from_env`), the model is wrapped in DistributedDataParallel, every rank reads
its share of each epoch through a DistributedSampler (``train.batch_size`` is the *global* batch, split evenly
over the ranks), metrics are reduced over the ranks, and only rank 0 logs and writes the resume checkpoint.
A training-time defense generates its examples on each rank's share with the bare (unwrapped) model.

Precision: the victim's forward runs as the run's ``precision`` says (:mod:`advlab.victims.acceleration`);
under fp16 the loss is scaled by a ``GradScaler`` (gradients unscaled before clipping; steps whose gradients
overflowed are skipped). The scaler's state is not resumed: it re-calibrates within a few steps.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from advlab import distributed
from advlab.data.base import DataModule
from advlab.defenses.base import Defense
from advlab.errors import AdvlabError
from advlab.loops.configs import TrainConfig  # noqa: F401
from advlab.progress import track
from advlab.resume import LoopState
from advlab.tasks.base import Task
from advlab.victims.acceleration import grad_scaler

logger = logging.getLogger(__name__)


def make_optimizer(params: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    # a model may group its parameters by learning rate: ``model.param_groups(lr) -> [{"params", "lr"}]``
    groups = getattr(model, "param_groups", None)
    trainable = groups(params.lr) if callable(groups) else [p for p in model.parameters() if p.requires_grad]
    if params.optimizer == "sgd":
        return torch.optim.SGD(
            trainable,
            lr=params.lr,
            momentum=params.momentum,
            weight_decay=params.weight_decay,
            nesterov=params.momentum > 0,
        )
    return torch.optim.Adam(trainable, lr=params.lr, weight_decay=params.weight_decay)


def lr_factor(params: TrainConfig, epoch_float: float) -> float:
    """Learning-rate multiplier at a fractional epoch (linear warm-up, then the schedule)."""
    if params.warmup_epochs and epoch_float < params.warmup_epochs:
        return (epoch_float + 1e-3) / params.warmup_epochs
    if params.schedule == "cosine":
        t = (epoch_float - params.warmup_epochs) / max(params.epochs - params.warmup_epochs, 1e-9)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if params.schedule == "multistep":
        return 0.1 ** sum(epoch_float >= m for m in params.milestones)
    return 1.0


@dataclasses.dataclass
class FitState(LoopState):
    """The fit loop's progress after a finished epoch."""

    model: dict
    optimizer: dict
    epoch: int  # epochs done
    generator: torch.Tensor  # the loop's own generator (shuffling, augmentation)


def fit(
    model: torch.nn.Module,
    task: Task,
    data: DataModule,
    params: TrainConfig,
    defense: Defense,
    device: torch.device,
    seed: int,
    resume_path: Path | None = None,
    log: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> torch.nn.Module:
    model.to(device)
    rank, world = distributed.rank_world()
    net = model  # what the forward/backward runs through (DDP-wrapped when distributed)
    if world > 1:
        if params.batch_size % world:
            raise AdvlabError(
                f"train.batch_size: the global batch ({params.batch_size}) must be divisible by the number of "
                f"processes ({world})"
            )
        if params.sync_bn and device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = make_optimizer(params, model)
    scaler = grad_scaler(model, device)  # precision=fp16: loss scaling (a no-op otherwise)
    start_epoch = 0
    gen = torch.Generator().manual_seed(seed)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    state = FitState.load(resume_path)
    if state is not None:
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        start_epoch = state.epoch
        gen.set_state(state.generator)
        logger.info(f"training resumes at epoch {start_epoch}/{params.epochs}")
    steps_per_epoch = math.ceil(len(data.dataset("train")) / params.batch_size)
    for epoch in range(start_epoch, params.epochs):
        model.train()
        epoch_seed = int(torch.randint(2**31, (1,), generator=gen))
        if world > 1:
            loader = distributed.shard_loader(
                data.dataset("train"), params.batch_size // world, epoch_seed, **data.loader_options()
            )
        else:
            loader = data.loader("train", params.batch_size, shuffle=True, seed=epoch_seed)
        meter = task.meter()
        t0 = time.perf_counter()
        bar = track(loader, f"train epoch {epoch + 1}/{params.epochs}", enabled=progress and rank == 0)
        for i, (x, y) in enumerate(bar):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x = data.train_transform(x, gen)
            factor = lr_factor(params, epoch + i / steps_per_epoch)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            x, y = defense.training_batch(model, x, y)
            model.train()
            outputs, loss = defense.training_loss(net, x, y)
            if not torch.isfinite(loss):
                raise AdvlabError(
                    f"train: loss is {loss.item()} at epoch {epoch + 1}, step {i + 1}; lower train.lr "
                    f"(now {params.lr}) or set train.grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if params.grad_clip or params.grad_clip_value:
                scaler.unscale_(optimizer)  # clip the true gradients
            if params.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            if params.grad_clip_value:
                torch.nn.utils.clip_grad_value_(model.parameters(), params.grad_clip_value)
            scaler.step(optimizer)
            scaler.update()
            meter.add("loss", loss.detach().expand(x.shape[0]))
            task.update_metrics(meter, outputs.detach(), y)
        if world > 1:
            distributed.reduce_meter(meter)
        stats = {f"train/{k}": v for k, v in meter.compute().items()}
        stats.update(
            {
                "train/epoch": epoch + 1,
                "train/epoch_time_s": time.perf_counter() - t0,
                "train/lr": optimizer.param_groups[0]["lr"],
            }
        )
        if resume_path is not None and rank == 0:  # first, so that a kill after this point loses nothing
            FitState(model.state_dict(), optimizer.state_dict(), epoch + 1, gen.get_state()).save(resume_path)
        if world > 1:
            distributed.barrier()
        if rank != 0:
            continue
        if log is not None:
            log(stats)
        shown = ", ".join(f"{k.split('/')[1]}={v:.4g}" for k, v in stats.items() if k != "train/epoch")
        logger.info(f"epoch {epoch + 1}/{params.epochs}: {shown}")
    optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model
