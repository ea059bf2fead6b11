"""PGD adversarial training (Madry et al. 2018): each training batch is replaced by PGD adversarial
examples (Linf or L2) generated against the current model, with the model in eval mode while attacking."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from advlab.attacks.perturbation import NORMS
from advlab.attacks.pgd import PGD, PGDConfig
from advlab.defenses.base import DEFENSES, Defense
from advlab.registry import ComponentConfig, check


@dataclasses.dataclass
class AdvTrainingConfig(ComponentConfig):
    norm: str = "linf"
    eps: float = 8 / 255
    step_size: float | None = None  # default 2.5 * eps / steps
    steps: int = 7
    random_start: bool = True
    clean_fraction: float = 0.0  # share of each batch kept clean (0 = pure adversarial training)

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(0.0 <= self.clean_fraction < 1.0, f"{key}.clean_fraction", "must be in [0, 1)")


@DEFENSES.register("adv_training")
class AdversarialTraining(Defense):
    Config = AdvTrainingConfig
    trains_victim = True

    def __init__(self, params, task):
        super().__init__(params, task)
        p = params
        self.attack = PGD(
            PGDConfig(
                name="pgd",
                norm=p.norm,
                eps=p.eps,
                step_size=p.step_size,
                steps=p.steps,
                random_start=p.random_start,
                early_stop=False,
            ),
            task,
        )

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n_clean = int(round(self.params.clean_fraction * x.shape[0]))
        x_adv = self.attack(model, x[n_clean:], y[n_clean:])
        return torch.cat([x[:n_clean], x_adv]), y
