"""The universal-perturbation loop: optimise a :class:`UniversalAttack`'s perturbation over the training
split with the victim frozen.

Resumable: after every epoch the perturbation, optimiser, scheduler, epoch and RNG states are written
atomically to ``resume_path``; a restarted run continues after the last finished epoch. Each epoch logs
``universal/loss`` (mean training loss) and ``universal/epoch``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from advlab.attacks.universal import UniversalAttack
from advlab.data.base import DataModule
from advlab.errors import AdvlabError
from advlab.progress import track
from advlab.resume import LoopState
from advlab.utils import frozen
from advlab.victims.acceleration import grad_scaler

logger = logging.getLogger(__name__)


def sum_dtype(device: torch.device) -> torch.dtype:
    """The running loss sum's dtype: float64 (as a Python float sum), float32 where the device has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


@dataclasses.dataclass
class UniversalState(LoopState):
    """The universal-perturbation loop's progress after a finished epoch."""

    perturbation: dict
    optimizer: dict
    scheduler: dict | None
    epoch: int  # epochs done
    history: list  # per-epoch statistics so far
    generator: torch.Tensor


def fit_universal(
    attack: UniversalAttack,
    model: nn.Module,
    data: DataModule,
    device: torch.device,
    seed: int,
    resume_path: Path | None = None,
    log: Callable[[dict], None] | None = None,
    progress: bool = True,
    epoch_end: Callable[[int], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Optimise ``attack.perturbation``; returns the per-epoch statistics. ``epoch_end(epoch)`` may return
    extra statistics for the epoch (e.g. a validation mIoU for the learning curve)."""
    params = attack.params
    gen = torch.Generator().manual_seed(seed)
    attack.init_perturbation(data.info, device, gen)
    n_train = len(data.dataset("train"))
    steps_per_epoch = math.ceil(n_train / params.batch_size)
    if params.max_batches_per_epoch:
        steps_per_epoch = min(steps_per_epoch, params.max_batches_per_epoch)
    optimizer, scheduler = attack.make_optimizer(steps_per_epoch * params.epochs)
    start_epoch, history = 0, []
    state = UniversalState.load(resume_path)
    if state is not None:
        attack.load_state_dict(state.perturbation, device)
        optimizer, scheduler = attack.make_optimizer(steps_per_epoch * params.epochs)
        optimizer.load_state_dict(state.optimizer)
        if scheduler is not None and state.scheduler is not None:
            scheduler.load_state_dict(state.scheduler)
        start_epoch, history = state.epoch, state.history
        gen.set_state(state.generator)
        logger.info(f"universal perturbation resumes at epoch {start_epoch}/{params.epochs}")
    scaler = grad_scaler(model, device)  # precision=fp16: loss scaling (a no-op otherwise)
    with frozen(model):
        for epoch in range(start_epoch, params.epochs):
            loader = data.loader(
                "train", params.batch_size, shuffle=True, seed=int(torch.randint(2**31, (1,), generator=gen))
            )
            total, count, t0 = torch.zeros((), dtype=sum_dtype(device), device=device), 0, time.perf_counter()
            bar = track(
                loader,
                f"{attack.registered_name} epoch {epoch + 1}/{params.epochs}",
                total=steps_per_epoch,
                enabled=progress,
            )
            for i, (x, y) in enumerate(bar):
                if i >= steps_per_epoch:
                    break
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with torch.enable_grad():
                    loss = attack.training_loss(model, x, y, gen)
                if not torch.isfinite(loss):
                    raise AdvlabError(
                        f"attack: universal loss is {loss.item()} at epoch {epoch + 1}, step {i + 1}; "
                        f"lower attack.lr (now {params.lr})"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if scheduler is not None:
                    scheduler.step()
                attack.project()
                total += loss.detach().to(total.dtype) * x.shape[0]  # on the device: no host sync per step
                count += x.shape[0]
            stats = {
                "universal/epoch": epoch + 1,
                "universal/loss": total.item() / max(count, 1),
                "universal/epoch_time_s": time.perf_counter() - t0,
            }
            if epoch_end is not None:
                stats.update(epoch_end(epoch))
            history.append(stats)
            if resume_path is not None:
                UniversalState(
                    attack.state_dict(),
                    optimizer.state_dict(),
                    None if scheduler is None else scheduler.state_dict(),
                    epoch + 1,
                    history,
                    gen.get_state(),
                ).save(resume_path)
            if log is not None:
                log(stats)
            logger.info(
                f"{attack.registered_name} epoch {epoch + 1}/{params.epochs}: loss={stats['universal/loss']:.4g}"
            )
    return history
