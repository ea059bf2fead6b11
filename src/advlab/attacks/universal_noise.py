"""``attack=universal_linf``: one additive noise for the whole dataset (a universal adversarial perturbation),
``||delta||_inf <= eps``, optimised with signed-gradient steps to maximise the task's attack loss over the
training split, then added to every test image."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import UniversalLinfConfig  # noqa: F401
from advlab.attacks.universal import UniversalAttack
from advlab.data.info import DataInfo


@ATTACKS.register("universal_linf")
class UniversalLinf(UniversalAttack):
    paper = "Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, Universal adversarial perturbations, CVPR 2017"
    url = "https://arxiv.org/abs/1610.08401"
    Config = UniversalLinfConfig
    norm = "linf"

    def init_perturbation(self, info: DataInfo, device: torch.device, generator: torch.Generator) -> None:
        self.perturbation = {"noise": torch.zeros(info.image_shape, device=device, requires_grad=True)}

    def apply(self, x: Tensor, y: Tensor | None = None, generator: Any = None) -> Tensor:
        return (x + self.perturbation["noise"]).clamp(0, 1)

    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        target = self.task.sample_targets(y, generator) if self.targeted else None
        return -self.task.attack_loss(model(self.apply(x)), y, target).mean()

    def project(self) -> None:
        with torch.no_grad():
            self.perturbation["noise"].clamp_(-self.params.eps, self.params.eps)
