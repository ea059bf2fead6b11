"""The universal-perturbation loop: optimise a :class:`UniversalAttack`'s perturbation over the training
split with the victim frozen.

Resumable: after every epoch the perturbation, optimiser, scheduler, epoch and RNG states are written
atomically to ``resume_path``; a restarted run continues after the last finished epoch. Each epoch logs
``universal/loss`` (mean training loss) and ``universal/epoch``.
"""

from __future__ import annotations

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
from advlab.utils import atomic_torch_save, frozen, reading_state

logger = logging.getLogger(__name__)


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
    if resume_path is not None and resume_path.is_file():
        with reading_state(
            resume_path,
            "universal-perturbation resume state",
            f"Delete it to start the optimisation over: rm '{resume_path}'",
        ):
            state = torch.load(resume_path, map_location="cpu", weights_only=False)
            attack.load_state_dict(state["perturbation"], device)
            optimizer, scheduler = attack.make_optimizer(steps_per_epoch * params.epochs)
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
            start_epoch, history = state["epoch"], state["history"]
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
        logger.info(
            f"resuming universal perturbation from {resume_path} at epoch {start_epoch}/{params.epochs}"
        )
    with frozen(model):
        for epoch in range(start_epoch, params.epochs):
            loader = data.loader(
                "train", params.batch_size, shuffle=True, seed=int(torch.randint(2**31, (1,), generator=gen))
            )
            total, count, t0 = 0.0, 0, time.perf_counter()
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
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                attack.project()
                total += loss.item() * x.shape[0]
                count += x.shape[0]
            stats = {
                "universal/epoch": epoch + 1,
                "universal/loss": total / max(count, 1),
                "universal/epoch_time_s": time.perf_counter() - t0,
            }
            if epoch_end is not None:
                stats.update(epoch_end(epoch))
            history.append(stats)
            if resume_path is not None:
                atomic_torch_save(
                    {
                        "perturbation": attack.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "epoch": epoch + 1,
                        "history": history,
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                    },
                    resume_path,
                )
            if log is not None:
                log(stats)
            logger.info(
                f"{attack.registered_name} epoch {epoch + 1}/{params.epochs}: loss={stats['universal/loss']:.4g}"
            )
    return history
