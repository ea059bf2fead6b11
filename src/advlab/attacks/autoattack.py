"""AutoAttack (Croce & Hein 2020): a fixed ensemble of parameter-free attacks run in sequence, each only on the
examples every earlier one left robust; an example's result is the first stage that fools it (the worst case
per example), the robust ones keep their clean image.

The versions of the reference implementation (``fra31/auto-attack``, ``autoattack.py``):

* ``standard`` (what RobustBench reports): APGD-CE (1 run), APGD-T (``n_target_classes = 9`` targets, 1 run
  each), FAB-T (9 targets, 1 run each), Square (``queries = 5000``, 1 run);
* ``plus``: APGD-CE and APGD-DLR with 5 restarts, FAB (untargeted, 5 restarts), Square, APGD-T, FAB-T;
* ``rand`` (randomised defenses): APGD-CE and APGD-DLR with the gradient averaged over ``eot_iter = 20``
  passes, 1 run each.

APGD and FAB run ``steps = 100`` iterations. ``restarts`` replaces the version's restart counts for every
stage (null: the version's). ``seed`` re-seeds the random stream before each stage as the reference does
(null: the run's stream continues). Robust accuracy after each stage (over all attacked examples, the
clean errors counted as not robust) is reported per example in ``batch_stats`` as
``autoattack/<stage>/acc`` -- the evaluate loop logs ``attack/autoattack/<stage>/acc``, non-increasing, the
last equal to ``adv/acc``. It is measured on the whole batch of the current worst-case images, exactly as the
loop scores ``adv/acc``. Single-label classification only (DLR, FAB).
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from advlab.attacks.apgd import APGD, APGDT, PAPER, URL, require_class_logits
from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import (
    APGDConfig,
    APGDTConfig,
    AutoAttackConfig,
    FABConfig,
    FABTConfig,
    SquareConfig,
)
from advlab.attacks.fab import FAB, FABT
from advlab.attacks.square import Square

#: stage name -> the reference's restarts, per version
STAGES = {
    "standard": {"apgd_ce": 1, "apgd_t": 1, "fab_t": 1, "square": 1},
    "plus": {"apgd_ce": 5, "apgd_dlr": 5, "fab": 5, "square": 1, "apgd_t": 1, "fab_t": 1},
    "rand": {"apgd_ce": 1, "apgd_dlr": 1},
}


@ATTACKS.register("autoattack")
class AutoAttack(Attack):
    """AutoAttack (standard | plus | rand): APGD-CE, APGD-T, FAB-T, Square, each on the still-robust examples."""

    Config = AutoAttackConfig
    paper = PAPER
    url = URL

    def __init__(self, params: AutoAttackConfig, task):
        super().__init__(params, task)
        require_class_logits(task, "attack.name=autoattack", "AutoAttack (APGD-T's DLR loss, FAB)")
        self.stages: dict[str, Attack] = {
            name: self._stage(name, restarts if params.restarts is None else params.restarts)
            for name, restarts in STAGES[params.version].items()
        }

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def _stage(self, name: str, restarts: int) -> Attack:
        p = self.params
        common = {"name": name, "norm": p.norm, "eps": p.eps, "restarts": restarts}
        eot = p.eot_iter if p.version == "rand" else 1
        if name in ("apgd_ce", "apgd_dlr"):
            cfg = APGDConfig(**common, steps=p.steps, loss=name[5:], eot_iter=eot)
            return APGD(cfg, self.task)
        if name == "apgd_t":
            return APGDT(APGDTConfig(**common, steps=p.steps, n_target_classes=p.n_target_classes), self.task)
        if name == "fab":
            return FAB(FABConfig(**common, steps=p.steps), self.task)
        if name == "fab_t":
            return FABT(FABTConfig(**common, steps=p.steps, n_target_classes=p.n_target_classes), self.task)
        return Square(SquareConfig(**common, queries=p.queries, p_init=p.p_init), self.task)

    @contextlib.contextmanager
    def _seeded(self, device: torch.device):
        if self.params.seed is None:
            yield
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.params.seed)
            yield

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_adv = x.clone()
        with torch.no_grad():
            robust = ~self.task.success(model(x), y)
        for name, stage in self.stages.items():
            idx = robust.nonzero().squeeze(1)
            if idx.numel() > 0:
                with self._seeded(x.device):
                    xs = stage.perturb(model, x[idx], y[idx], None)
                with torch.no_grad():
                    fooled = self.task.success(model(xs), y[idx])
                x_adv[idx[fooled]] = xs[fooled]
                with torch.no_grad():  # scored on the whole batch, as the evaluate loop scores adv/acc
                    robust = ~self.task.success(model(x_adv), y)
            self.batch_stats[f"autoattack/{name}/acc"] = robust.float()
        return x_adv
