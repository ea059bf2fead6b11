"""Adversarial training (Madry et al. 2018): each training batch is replaced by adversarial examples of the
current model, generated (with the model in eval mode) by the attack configured under ``defense.attack``
(PGD-Linf by default; any registered attack, e.g. PGD-L2, works the same way)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import AdvTrainingConfig  # noqa: F401


@DEFENSES.register("adv_training")
class AdversarialTraining(Defense):
    paper = "Madry, Makelov, Schmidt, Tsipras & Vladu, Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018"
    url = "https://arxiv.org/abs/1706.06083"
    Config = AdvTrainingConfig
    trains_victim = True

    def __init__(self, params, task):
        super().__init__(params, task)
        self.attack = ATTACKS.build(ATTACKS.parse(params.attack, key="defense.attack"), task)

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n_clean = int(round(self.params.clean_fraction * x.shape[0]))
        x_adv = self.attack(model, x[n_clean:], y[n_clean:])
        return torch.cat([x[:n_clean], x_adv]), y
