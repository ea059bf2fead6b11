"""Adversarial training (Madry et al. 2018): each training batch is replaced by adversarial examples of the
current model, generated (with the model in eval mode) by the attack configured under ``defense.attack``
(PGD-Linf by default; any registered attack, e.g. PGD-L2, works the same way)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.defenses.base import DEFENSES, Defense
from advlab.registry import ComponentConfig, check


@dataclasses.dataclass
class AdvTrainingConfig(ComponentConfig):
    attack: Any = None  # a full attack config; conf/defense/adv_training.yaml composes pgd_linf_train
    clean_fraction: float = 0.0  # share of each batch kept clean (0 = pure adversarial training)

    def validate(self, key: str) -> None:
        check(0.0 <= self.clean_fraction < 1.0, f"{key}.clean_fraction", "must be in [0, 1)")
        check(
            self.attack is not None,
            f"{key}.attack",
            "missing: set the training attack, e.g. attack@defense.attack=pgd_linf_train",
        )
        parsed = ATTACKS.parse(self.attack, key=f"{key}.attack")
        check(parsed.name != "none", f"{key}.attack.name", "adversarial training needs an attack")
        check(not getattr(parsed, "targeted", False), f"{key}.attack.targeted", "must be false")
        self.attack = dataclasses.asdict(parsed)


@DEFENSES.register("adv_training")
class AdversarialTraining(Defense):
    Config = AdvTrainingConfig
    trains_victim = True

    def __init__(self, params, task):
        super().__init__(params, task)
        self.attack = ATTACKS.build(ATTACKS.parse(params.attack, key="defense.attack"), task)

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n_clean = int(round(self.params.clean_fraction * x.shape[0]))
        x_adv = self.attack(model, x[n_clean:], y[n_clean:])
        return torch.cat([x[:n_clean], x_adv]), y
