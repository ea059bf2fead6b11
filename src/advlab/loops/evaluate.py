"""The evaluate loop: clean metrics on the test split and, with an attack, metrics under the attack.

Metric keys: ``clean/<m>`` and ``adv/<m>`` from the task (e.g. ``acc``), ``attack/asr`` (task's rule),
``attack/linf`` and ``attack/l2`` (means over the examples counted as successes, the convention for
minimal-perturbation attacks), ``attack/linf_max``/``attack/l2_max`` (over all attacked examples, the bound
check), ``attack/time_per_image_s`` and any per-sample statistic the attack reports (``attack/iters``...).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from advlab.attacks.base import Attack, NoAttack
from advlab.data.base import DataModule
from advlab.metrics.distortion import distortion
from advlab.registry import check
from advlab.tasks.base import Meter, Task


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = 256
    num_examples: int | None = None  # evaluate the first N test images (None = all)
    grid_examples: int = 8  # adversarial examples shown in adv_examples.png (0 = no picture)

    def validate(self, key: str) -> None:
        check(self.grid_examples >= 0, f"{key}.grid_examples", f"must be >= 0 (got {self.grid_examples})")
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1 (got {self.batch_size})")
        check(
            self.num_examples is None or self.num_examples >= 1, f"{key}.num_examples", "must be >= 1 or null"
        )


@dataclasses.dataclass
class Examples:
    """The first few test images with their clean/adversarial versions and outputs, for the example grid."""

    x: Tensor
    y: Tensor
    x_adv: Tensor | None = None
    clean_pred: Tensor | None = None
    adv_pred: Tensor | None = None
    target: Tensor | None = None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    model: nn.Module,
    task: Task,
    data: DataModule,
    attack: Attack,
    params: EvalConfig,
    device: torch.device,
    seed: int,
    progress: bool = True,
) -> tuple[dict[str, float], Examples, Tensor | None]:
    """Returns (metrics, examples for the grid, all attack targets or None)."""
    model.eval()
    loader = data.loader("test", params.batch_size, shuffle=False, limit=params.num_examples)
    clean, adv, att = task.meter(), task.meter(), Meter()
    run_attack = not isinstance(attack, NoAttack)
    gen = torch.Generator().manual_seed(seed)
    attack_time, n_images = 0.0, 0
    examples: Examples | None = None
    targets: list[Tensor] = []
    desc = f"attack {attack.registered_name}" if run_attack else "evaluate"
    for x, y in tqdm(loader, desc=desc, leave=False, disable=not progress or not sys.stderr.isatty()):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.no_grad():
            clean_out = model(x)
        task.update_metrics(clean, clean_out, y)
        if examples is None:
            k = params.grid_examples
            examples = Examples(x[:k].cpu(), y[:k].cpu(), clean_pred=task.predict(clean_out[:k]).cpu())
        n_images += x.shape[0]
        if not run_attack:
            continue
        target = task.sample_targets(y, gen) if attack.targeted else None
        if target is not None:
            targets.append(target.cpu())
        _sync(device)
        t0 = time.perf_counter()
        x_adv = attack(model, x, y, target)
        _sync(device)
        attack_time += time.perf_counter() - t0
        with torch.no_grad():
            adv_out = model(x_adv)
        task.update_metrics(adv, adv_out, y)
        task.update_attack_metrics(att, clean_out, adv_out, y, target)
        eligible, success = task.attack_outcome(clean_out, adv_out, y, target)
        for name, values in distortion(x, x_adv).items():
            att.add(name, values, mask=eligible & success)
            att.add_max(f"{name}_max", values)
        for name, values in attack.batch_stats.items():
            att.add(name, values)
        if examples.x_adv is None:
            k = examples.x.shape[0]
            examples.x_adv = x_adv[:k].cpu()
            examples.adv_pred = task.predict(adv_out[:k]).cpu()
            examples.target = None if target is None else target[:k].cpu()
    metrics = {f"clean/{k}": v for k, v in clean.compute().items()}
    if run_attack:
        metrics.update({f"adv/{k}": v for k, v in adv.compute().items()})
        metrics.update({f"attack/{k}": v for k, v in att.compute().items()})
        metrics["attack/time_per_image_s"] = attack_time / max(n_images, 1)
    metrics["eval/num_examples"] = n_images
    assert examples is not None, "empty test split"
    return metrics, examples, (torch.cat(targets) if targets else None)
