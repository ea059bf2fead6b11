"""Lagrangian Perceptual Attack (LPA) and Fast-LPA (Laidlaw et al. 2021).

Both maximise ``margin_objective(x~) - lambda * max(0, d(x~, x) - bound)`` by normalised gradient steps whose
LPIPS size is ``step`` (estimated by a finite difference ``d(x~, x~ + h g) / h`` along the unit gradient
``g``), with the step decaying as ``step * 0.1 ** (i / steps)``. Start: ``x + N(0, 0.01)``.

* **LPA** (evaluation): ``binary_steps`` rounds of ``steps`` iterations; lambda starts at ``lam`` (0.01) and is
  multiplied by 10 after a round for the examples that ended outside the bound. The best in-bound adversarial
  iterate seen is kept; the rest are projected onto the LPIPS ball at the end (so the bound always holds).
* **Fast-LPA** (training, PAT): one round, lambda ramped geometrically from ``lam / 10`` to ``lam`` (10) over
  the iterations, no projection (the penalty keeps examples near the bound; cheaper for training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import FastLPAConfig, LPAConfig  # noqa: F401
from advlab.attacks.perceptual_base import PerceptualAttack, _view, project_lpips
from advlab.perceptual.lpips_distance import LPIPSDistance


class _Lagrangian(PerceptualAttack):
    def begin(self, model: nn.Module, x: Tensor) -> tuple[LPIPSDistance, Tensor, Tensor]:
        """(the distance bound to ``model``, the LPIPS features of ``x``, the random start)."""
        dist = self.bind(model)
        with torch.no_grad():
            ref = dist.features(x)
        return dist, ref, self.start(x)

    def ascend(
        self,
        model: nn.Module,
        x_adv: Tensor,
        ref: Tensor,
        y: Tensor,
        target: Tensor | None,
        lam_at: Callable[[int], Tensor],
    ) -> Tensor:
        """``steps`` Lagrangian steps with lambda ``lam_at(i)`` and the step size decaying from ``step_size``
        (default: the bound) by ``0.1 ** (i / steps)``."""
        p = self.params
        step0 = p.step_size if p.step_size is not None else p.bound
        for i in range(p.steps):
            x_adv, _ = self.lagrangian_step(
                model, x_adv, ref, y, target, lam_at(i), step0 * 0.1 ** (i / p.steps)
            )
        return x_adv

    def lagrangian_step(
        self,
        model: nn.Module,
        x_adv: Tensor,
        ref: Tensor,
        y: Tensor,
        target: Tensor | None,
        lam: Tensor,
        step: float,
    ) -> tuple[Tensor, Tensor]:
        """One normalised ascent step; returns (new iterate, success of the current iterate)."""
        p, dist = self.params, self.distance
        xa = x_adv.detach().requires_grad_(True)
        feats, outputs = dist.features_and_outputs(xa, model)
        d = (feats - ref).norm(dim=1)
        obj = self.objective(outputs, y, target) - lam * (d - p.bound).clamp_min(0)
        (grad,) = torch.autograd.grad(obj.sum(), xa)
        unit = grad / _view(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)
        with torch.no_grad():
            x0 = x_adv.detach()
            size = (dist.features(x0 + p.h * unit) - feats.detach()).norm(dim=1) / p.h
            new = (x0 + _view(step / size.clamp_min(1e-12), x0) * unit).clamp_(0, 1)
            success = self.task.success(outputs.detach(), y, target)
        return new, success


@ATTACKS.register("lpa")
class LPA(_Lagrangian):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = LPAConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        dist, ref, x_adv = self.begin(model, x)
        lam = torch.full((x.shape[0],), p.lam, device=x.device)
        best = x.clone()
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(p.binary_steps):
            x_adv = self.ascend(model, x_adv, ref, y, target, lambda i, lam=lam: lam)
            with torch.no_grad():
                feats, outputs = dist.features_and_outputs(x_adv, model)
                inside = (feats - ref).norm(dim=1) <= p.bound
                good = inside & self.task.success(outputs, y, target)
            best[good] = x_adv[good]
            found |= good
            lam = torch.where(inside, lam, lam * p.lam_factor)
        last = project_lpips(dist, x, x_adv, ref, p.bound, p.newton_steps)
        return torch.where(_view(found, x), best, last)


@ATTACKS.register("fast_lpa")
class FastLPA(_Lagrangian):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = FastLPAConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        _, ref, x_adv = self.begin(model, x)
        ones = torch.ones(x.shape[0], device=x.device)
        # lambda ramped geometrically from lam / 10 to lam over the iterations
        return self.ascend(
            model, x_adv, ref, y, target, lambda i: p.lam * 10 ** (i / max(p.steps - 1, 1) - 1) * ones
        )
