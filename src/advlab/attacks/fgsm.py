"""FGSM (Goodfellow et al. 2015): one step of size eps along the sign of the objective's gradient
(``norm=l2``: along the normalised gradient, i.e. FGM)."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack, AttackConfig
from advlab.attacks.perturbation import NORMS, ascent_direction
from advlab.registry import check


@dataclasses.dataclass
class FGSMConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")


@ATTACKS.register("fgsm")
class FGSM(Attack):
    Config = FGSMConfig

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_in = x.clone().requires_grad_(True)
        loss = self.task.attack_loss(model(x_in), y, target)
        (grad,) = torch.autograd.grad(loss.sum(), x_in)
        return (x + self.params.eps * ascent_direction(grad, self.params.norm)).clamp(0, 1)
