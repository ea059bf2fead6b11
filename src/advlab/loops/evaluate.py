"""The evaluate loop: clean metrics on the test split and, with an attack, metrics under the attack.

Metric keys: ``clean/<m>`` and ``adv/<m>`` from the task (e.g. ``acc``), ``attack/asr`` (task's rule),
``attack/linf``, ``attack/l2``, ``attack/mse``, ``attack/psnr`` and ``attack/ssim`` (means over the examples
counted as successes, the convention for minimal-perturbation attacks), ``attack/linf_max``/``attack/l2_max`` (over all attacked examples, the bound
check), ``attack/time_per_image_s`` and any per-sample statistic the attack reports (``attack/iters``...).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack, NoAttack
from advlab.data.base import DataModule
from advlab.metrics.distortion import distortion, image_quality
from advlab.metrics.meter import Meter
from advlab.progress import track
from advlab.registry import check
from advlab.tasks.base import Task
from advlab.utils import atomic_torch_save, reading_state

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = 256
    num_examples: int | None = None  # evaluate the first N test images (None = all)
    grid_examples: int = 8  # adversarial examples shown in adv_examples.png (0 = no picture)
    # attack/lpips: null (off) | alex | vgg | squeeze (the lpips package's calibrated LPIPS; trunk weights from
    # TORCH_HOME) | alex_random (uncalibrated random trunk, tests only) | self (the victim's own features)
    lpips: str | None = None

    def validate(self, key: str) -> None:
        check(
            self.lpips in (None, "alex", "vgg", "squeeze", "alex_random", "self"),
            f"{key}.lpips",
            f"must be null, alex, vgg, squeeze, alex_random or self (got '{self.lpips}')",
        )
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


def lpips_metric(name: str, model: nn.Module):
    """The per-sample LPIPS distance behind ``attack/lpips``."""
    from advlab.perceptual.lpips_distance import CalibratedLPIPS, LPIPSConfig, LPIPSDistance

    if name == "self":
        return LPIPSDistance(LPIPSConfig(model="self"), model)
    net = "alex" if name == "alex_random" else name
    ref = next(model.parameters(), None)
    metric = CalibratedLPIPS(net, random_trunk=name == "alex_random")
    return metric.to(ref.device) if ref is not None else metric


def evaluate(
    model: nn.Module,
    task: Task,
    data: DataModule,
    attack: Attack,
    params: EvalConfig,
    device: torch.device,
    seed: int,
    progress: bool = True,
    resume_path: Path | None = None,
    checkpoint_every_s: float = 60.0,
    per_example: dict[str, Tensor] | None = None,
) -> tuple[dict[str, float], Examples, Tensor | None]:
    """Returns (metrics, examples for the grid, all attack targets or None).

    With ``resume_path``, the loop's whole state (meters, RNG, targets, timing, the next batch) is written
    there atomically at most every ``checkpoint_every_s`` seconds, and a restarted evaluation continues from
    it, giving the same result as an uninterrupted one (the test split is read in a fixed order).

    With a dict ``per_example``, the loop also fills it with per-example bool tensors over the evaluated test
    images, in order: ``clean_correct`` and, with an attack, ``adv_correct`` (the task's ``correct`` on the
    attacked image) -- e.g. to combine several attacks into a union accuracy."""
    model.eval()
    loader = data.loader("test", params.batch_size, shuffle=False, limit=params.num_examples)
    run_attack = not isinstance(attack, NoAttack)
    if run_attack:
        attack.prepare(model, data)
    gen = torch.Generator().manual_seed(seed)
    state = {
        "clean": task.meter(),
        "adv": task.meter(),
        "att": Meter(),
        "attack_time": 0.0,
        "n_images": 0,
        "examples": None,
        "targets": [],
        "next_batch": 0,
        "clean_correct": [],
        "adv_correct": [],
    }
    if resume_path is not None and resume_path.is_file():
        with reading_state(
            resume_path,
            "evaluation resume state",
            f"Delete it to start the evaluation over: rm '{resume_path}'",
        ):
            saved = torch.load(resume_path, map_location="cpu", weights_only=False)
            state = saved["state"]
            for key in ("clean", "adv", "att"):
                state[key].to(device)
            gen.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
        logger.info(f"resuming evaluation from {resume_path} at batch {state['next_batch']}")
    state.setdefault("clean_correct", [])  # states saved before these were recorded
    state.setdefault("adv_correct", [])
    clean, adv, att, targets = state["clean"], state["adv"], state["att"], state["targets"]
    lpips_fn = lpips_metric(params.lpips, model) if (run_attack and params.lpips) else None
    last_save = time.perf_counter()
    desc = f"attack {attack.registered_name}" if run_attack else "evaluate"
    bar = track(loader, desc, enabled=progress)
    for i, (x, y) in enumerate(bar):
        if i < state["next_batch"]:
            continue
        if resume_path is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            state["next_batch"] = i
            saved = {"state": state, "generator": gen.get_state(), "torch_rng": torch.get_rng_state()}
            atomic_torch_save(saved, resume_path)
            last_save = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.no_grad():
            clean_out = model(x)
        task.update_metrics(clean, clean_out, y)
        if per_example is not None:
            state["clean_correct"].append(task.correct(clean_out, y).cpu())
        if state["examples"] is None:
            k = params.grid_examples
            state["examples"] = Examples(
                x[:k].cpu(), y[:k].cpu(), clean_pred=task.predict(clean_out[:k]).cpu()
            )
        examples = state["examples"]
        state["n_images"] += x.shape[0]
        if not run_attack:
            continue
        target = task.sample_targets(y, gen) if attack.targeted else None
        if target is not None:
            targets.append(target.cpu())
        _sync(device)
        t0 = time.perf_counter()
        x_adv = attack(model, x, y, target)
        _sync(device)
        state["attack_time"] += time.perf_counter() - t0
        with torch.no_grad():
            adv_out = model(x_adv)
        y = attack.adv_labels(y)  # e.g. pixels under a patch are not scored
        task.update_metrics(adv, adv_out, y)
        if per_example is not None:
            state["adv_correct"].append(task.correct(adv_out, y).cpu())
        task.update_attack_metrics(att, clean_out, adv_out, y, target)
        eligible, success = task.attack_outcome(clean_out, adv_out, y, target)
        for name, values in distortion(x, x_adv).items():
            att.add(name, values, mask=eligible & success)
            att.add_max(f"{name}_max", values)
        for name, values in image_quality(x, x_adv).items():  # mse, psnr, ssim on successes
            att.add(name, values, mask=eligible & success)
        if lpips_fn is not None:
            with torch.no_grad():
                values = lpips_fn(x, x_adv)
            att.add("lpips", values, mask=eligible & success)
            att.add_max("lpips_max", values)
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
        metrics["attack/time_per_image_s"] = state["attack_time"] / max(state["n_images"], 1)
    metrics["eval/num_examples"] = state["n_images"]
    if per_example is not None:
        for key in ("clean_correct", "adv_correct"):
            if state[key]:
                per_example[key] = torch.cat(state[key])
    assert state["examples"] is not None, "empty test split"
    return metrics, state["examples"], (torch.cat(targets) if targets else None)
