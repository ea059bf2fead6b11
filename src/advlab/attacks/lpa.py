"""Lagrangian Perceptual Attack (LPA) and Fast-LPA (Laidlaw et al. 2021), as the authors define them
(``LagrangePerceptualAttack`` / ``FastLagrangePerceptualAttack`` in perceptual-advex).

Both maximise ``f(x~) - lambda * max(0, d(x~, x) - bound)`` (``f`` the margin objective ``min(-margin,
kappa)``) by normalised gradient steps ``x~ += (eta / m) g``, ``g`` the unit gradient, ``eta = step * 0.1 ** (t /
T)`` the decaying LPIPS step size (``step`` default: the bound) and ``m = d(x~, x~ + h g) / h`` the LPIPS
derivative along ``g`` (a finite difference, ``h = 0.1``); every iterate is clipped to [0, 1]. Start: ``x +
N(0, 0.01^2)`` (clipped to the image box; the authors' first iterate is not).

* **LPA** (evaluation): ``binary_steps`` (S = 5) rounds of ``steps`` (T = 40 in the authors' evaluation)
  iterations, lambda starting at ``lam`` = 0.01, kappa 1. *Early freezing*: an example is frozen as soon as its
  iterate is misclassified (the task's success) and within the bound, and keeps that iterate to the end. After
  a round, lambda is multiplied by ``lam_factor`` (10) for the examples still attacked whose last evaluated
  distance is ``>= bound``. At the end every example is projected onto the LPIPS ball
  (:func:`~advlab.attacks.perceptual_base.project_lpips`; the frozen ones are inside already).
  One difference from the authors' code, on purpose: their loop applies the step before it tests the iterate,
  so a frozen example keeps the iterate one step *after* the one found adversarial (which may no longer be,
  and is projected); advlab keeps the iterate that was found adversarial within the bound.
* **Fast-LPA** (training, PAT): one round of ``steps`` iterations with lambda ramped geometrically,
  ``lambda_t = lam * 0.1 ** (1 - t / T)`` (from ``lam / 10`` to ``lam * 0.1 ** (1 / T)``: ~7.9 at T = 10,
  ``lam`` = 10), an uncapped margin (``kappa: null``, the authors' ``kappa = inf``), no projection (the
  penalty keeps the examples near the bound; cheaper for training).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import FastLPAConfig, LPAConfig  # noqa: F401
from advlab.attacks.perceptual_base import PerceptualAttack, _view
from advlab.perceptual.lpips_distance import LPIPSDistance


class _Lagrangian(PerceptualAttack):
    #: added to ``m`` before dividing (the authors': 1e-8 in LPA, 1e-4 in Fast-LPA)
    slope_eps = 1e-8

    def begin(self, model: nn.Module, x: Tensor) -> tuple[LPIPSDistance, Tensor, Tensor]:
        """(the distance bound to ``model``, the LPIPS features of ``x``, the random start)."""
        dist = self.bind(model)
        with torch.no_grad():
            ref = dist.features(x)
        return dist, ref, self.start(x)

    def step_size(self, t: int) -> float:
        """``eta_t = step * 0.1 ** (t / T)`` (``step`` default: the bound)."""
        p = self.params
        return (p.step_size if p.step_size is not None else p.bound) * 0.1 ** (t / p.steps)

    def lagrangian_step(
        self,
        model: nn.Module,
        x_adv: Tensor,
        ref: Tensor,
        y: Tensor,
        target: Tensor | None,
        lam: Tensor | float,
        eta: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One normalised ascent step; returns (the next iterate, success of ``x_adv``, ``d(x_adv, x)``)."""
        p, dist = self.params, self.distance
        xa = x_adv.detach().requires_grad_(True)
        feats, outputs = dist.features_and_outputs(xa, model)
        d = (feats - ref).norm(dim=1)
        obj = self.objective(outputs, y, target) - lam * (d - p.bound).clamp_min(0)
        (grad,) = torch.autograd.grad(obj.sum(), xa)
        unit = grad / _view(grad.flatten(1).norm(dim=1) + 1e-8, grad)
        with torch.no_grad():
            x0 = x_adv.detach()
            slope = (dist.features(x0 + p.h * unit) - feats.detach()).norm(dim=1) / p.h
            new = (x0 + _view(eta / (slope + self.slope_eps), x0) * unit).clamp_(0, 1)
            success = self.task.success(outputs.detach(), y, target)
        return new, success, d.detach()


@ATTACKS.register("lpa")
class LPA(_Lagrangian):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = LPAConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        dist, ref, x_adv = self.begin(model, x)
        lam = torch.full((x.shape[0],), p.lam, device=x.device)
        live = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)  # not yet frozen
        d = torch.zeros(x.shape[0], device=x.device)
        for _ in range(p.binary_steps):
            for t in range(p.steps):
                new, success, d = self.lagrangian_step(model, x_adv, ref, y, target, lam, self.step_size(t))
                moving = live if p.freeze == "after_step" else None
                live = live & ~(success & (d <= p.bound))  # freeze: adversarial and within the bound
                x_adv = torch.where(_view(live if moving is None else moving, x), new, x_adv)
            lam = torch.where(live & (d >= p.bound), lam * p.lam_factor, lam)
            if not bool(live.any()):  # every example frozen (one host sync per round)
                break
        return self.project(dist, x, x_adv, ref)


@ATTACKS.register("fast_lpa")
class FastLPA(_Lagrangian):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = FastLPAConfig
    slope_eps = 1e-4

    def lam_at(self, t: int) -> float:
        """``lambda_t = lam * 0.1 ** (1 - t / T)`` (the authors' ``increase_lambda`` schedule)."""
        return self.params.lam * 0.1 ** (1 - t / self.params.steps)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        _, ref, x_adv = self.begin(model, x)
        for t in range(self.params.steps):
            x_adv, _, _ = self.lagrangian_step(
                model, x_adv, ref, y, target, self.lam_at(t), self.step_size(t)
            )
        return x_adv
