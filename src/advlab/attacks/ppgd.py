"""Perceptual PGD (Laidlaw et al. 2021): projected steepest ascent in the LPIPS metric.

Each step solves ``(J^T J) delta = grad`` (``J`` the Jacobian of the LPIPS features at the current iterate,
grad the margin objective's gradient) with a few conjugate-gradient iterations, scales ``delta`` to LPIPS size
``step_size`` under the linearised distance (``||J delta|| = step_size``), takes the step, clips to [0, 1] and
projects onto the LPIPS ball (Newton steps, then bisection; see :func:`project_lpips`). Defaults: bound 0.5,
40 steps, step ``2 * bound / steps``, 5 CG iterations.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import PPGDConfig  # noqa: F401
from advlab.attacks.perceptual_base import PerceptualAttack, _view, project_lpips


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


@ATTACKS.register("ppgd")
class PerceptualPGD(PerceptualAttack):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = PPGDConfig

    def conjugate_gradient(self, x: Tensor, g: Tensor) -> Tensor:
        """Batched CG for ``(J^T J + damping) v = g`` at ``x`` (one system per example)."""
        damp = self.params.cg_damping
        jtj = self.distance.jtj_operator(x)
        v = torch.zeros_like(g)
        r = g.clone()
        p = r.clone()
        rs = _dot(r, r)
        for _ in range(self.params.cg_iterations):
            ap = jtj(p) + damp * p
            alpha = rs / _dot(p, ap).clamp_min(1e-20)
            v = v + _view(alpha, x) * p
            r = r - _view(alpha, x) * ap
            rs_new = _dot(r, r)
            p = r + _view(rs_new / rs.clamp_min(1e-20), x) * p
            rs = rs_new
        return v

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        step = p.step_size if p.step_size is not None else 2 * p.bound / p.steps
        dist = self.bind(model)
        with torch.no_grad():
            ref = dist.features(x)
        x_adv = self.start(x)
        for _ in range(p.steps):
            xa = x_adv.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.objective(model(xa), y, target).sum(), xa)
            direction = self.conjugate_gradient(x_adv.detach(), grad)
            size = dist.linearised_norm(x_adv, direction).clamp_min(1e-12)
            x_adv = (x_adv.detach() + _view(step / size, x) * direction).clamp_(0, 1)
            x_adv = project_lpips(dist, x, x_adv, ref, p.bound, p.newton_steps)
        return x_adv
