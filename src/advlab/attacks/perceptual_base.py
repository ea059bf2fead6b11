"""What the perceptual attacks (PPGD, LPA, Fast-LPA) share: their config (LPIPS bound and distance), the
margin objective, the N(0, 0.01) start and the projection onto the LPIPS ball.

Projection (:func:`project_lpips`): Newton steps on ``d(x~, x) = bound`` along the distance's gradient, as in
the paper, then — because LPIPS is not linear — a bisection on the segment between ``x`` and ``x~`` for any
example still outside, so the returned images are *guaranteed* inside the ball (``d(x, x) = 0``).

Where the projection lands (a documented difference from the authors' code): a projection onto the ball maps
an outside point to the ball's boundary, so advlab's Newton step aims at ``0.99 * bound`` (1% inside, so that
it converges from outside in a few steps). The authors' ``NewtonsPerceptualProjection`` aims ``overshoot = 0.1``
inside the bound and lengthens the step by ``1 + overshoot``; at bound 0.5 their PPGD iterates end at a mean
LPIPS of about 0.42 instead of about 0.5, a weaker attack than the bound allows. Their step
(``projection: authors``, with the other detail of their loop: it sums the gradients of its successive
iterations, as it never zeroes them) reproduces their projection; the oracle test shows that with it advlab's
PPGD succeeds exactly as often as theirs on the same images. Their fallback, when an example is still outside after ``max_iterations``,
bisects *every* example of the batch from its pre-projection image; advlab bisects only those still outside,
from the Newton result (the others are already inside).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack
from advlab.attacks.configs import PerceptualConfig  # noqa: F401
from advlab.perceptual.lpips_distance import LPIPSDistance
from advlab.tasks.base import Task


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def project_lpips(
    distance: LPIPSDistance,
    x: Tensor,
    x_adv: Tensor,
    ref: Tensor,
    bound: float,
    newton_steps: int = 10,
    overshoot: float = 0.0,
    bisection_steps: int = 10,
    accumulate: bool = False,
) -> Tensor:
    """Bring every ``x_adv`` with ``d(x_adv, x) > bound`` back into the LPIPS ball (``ref`` = phi(x)).

    Newton step on ``d(x~) - aim = 0``: ``x~ -= (1 + overshoot) (d - aim) g / ||g||^2`` with ``aim = 0.99 bound``
    (``overshoot = 0``) or ``bound - overshoot`` (the authors' step for ``overshoot > 0``). ``accumulate``: ``g``
    is the sum of the gradients of all Newton iterations so far (the authors' code, which never zeroes them)."""
    aim = bound - overshoot if overshoot > 0 else 0.99 * bound
    x_adv = x_adv.detach().clone()
    summed = torch.zeros_like(x_adv)
    for _ in range(newton_steps):
        xa = x_adv.requires_grad_(True)
        dist = distance.distance_to(xa, ref)
        outside = dist > bound
        if not bool(outside.any()):
            return xa.detach()
        (grad,) = torch.autograd.grad(dist.sum(), xa)
        if accumulate:  # only the examples still outside add their gradient (the others are not evaluated)
            summed = summed + torch.where(_view(outside, grad), grad, torch.zeros_like(grad))
            grad = summed
        gnorm2 = grad.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        coef = (1 + overshoot) * (dist.detach() - aim) / gnorm2
        coef = torch.where(outside, coef, torch.zeros_like(gnorm2))
        x_adv = (xa.detach() - _view(coef, x) * grad).clamp_(0, 1)
    with torch.no_grad():
        dist = distance.distance_to(x_adv, ref)
        outside = dist > bound
        if bool(outside.any()):  # bisection on the segment [x, x_adv]; t = 0 is always inside
            idx = outside.nonzero().squeeze(1)
            x0, x1 = x[idx], x_adv[idx]
            lo = torch.zeros(idx.numel(), device=x.device)
            hi = torch.ones(idx.numel(), device=x.device)
            for _ in range(bisection_steps):
                mid = (lo + hi) / 2
                inside = distance.distance_to(x0 + _view(mid, x0) * (x1 - x0), ref[idx]) <= bound
                lo = torch.where(inside, mid, lo)
                hi = torch.where(inside, hi, mid)
            x_adv[idx] = x0 + _view(lo, x0) * (x1 - x0)
    return x_adv.detach()


class PerceptualAttack(Attack):
    Config = PerceptualConfig
    norm = None

    def __init__(self, params, task: Task):
        super().__init__(params, task)
        self.distance = LPIPSDistance(params.lpips)

    def objective(self, outputs: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        """Per-sample margin objective the attack maximises (capped at kappa; ``kappa: null``: uncapped)."""
        objective = -self.task.margin(outputs, y, target)
        return objective if self.params.kappa is None else objective.clamp(max=self.params.kappa)

    def project(self, distance: LPIPSDistance, x: Tensor, x_adv: Tensor, ref: Tensor) -> Tensor:
        """:func:`project_lpips` with this attack's bound, Newton steps and ``projection`` (boundary | authors)."""
        p = self.params
        authors = p.projection == "authors"
        return project_lpips(
            distance, x, x_adv, ref, p.bound, p.newton_steps, 0.1 if authors else 0.0, accumulate=authors
        )

    def start(self, x: Tensor) -> Tensor:
        return (x + self.params.init_std * torch.randn_like(x)).clamp(0, 1)

    def bind(self, model: nn.Module) -> LPIPSDistance:
        return self.distance.bind(model)
