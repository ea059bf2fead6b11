"""FGSM (Goodfellow et al. 2015): one step of size eps along the sign of the objective's gradient
(``norm=l2``: along the normalised gradient, i.e. FGM)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import FGSMConfig  # noqa: F401
from advlab.attacks.perturbation import ascent_direction


@ATTACKS.register("fgsm")
class FGSM(Attack):
    paper = "Goodfellow, Shlens & Szegedy, Explaining and Harnessing Adversarial Examples, ICLR 2015"
    url = "https://arxiv.org/abs/1412.6572"
    Config = FGSMConfig

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_in = x.clone().requires_grad_(True)
        loss = self.task.attack_loss(model(x_in), y, target)
        (grad,) = torch.autograd.grad(loss.sum(), x_in)
        return (x + self.params.eps * ascent_direction(grad, self.params.norm)).clamp(0, 1)
