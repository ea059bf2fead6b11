"""StAdv: spatially transformed adversarial examples (Xiao et al. 2018), bounded as in Laidlaw et al. 2021.

Each pixel is displaced by a flow vector and the image resampled bilinearly:
``x~ = warp(x, f)``, ``x~(p) = x(p + f(p))``. The flow is in the normalised coordinates of
``torch.nn.functional.grid_sample`` (the image spans [-1, 1] in both directions, so 0.05 is 2.5% of the
width, 0.8 pixels at 32 px) and bounded per component: ``||f||_inf <= bound`` (0.05). The attack ascends
``objective(x~) - smoothness * L_flow(f)`` with signed-gradient steps on ``f``, projected onto the bound, where
``L_flow`` is StAdv's total-variation-like flow smoothness
``sum_p sum_{q in N(p)} sqrt(||f(p) - f(q)||^2 + 1e-8)`` (``N``: right and lower neighbours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import StAdvConfig  # noqa: F401


def identity_grid(x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)[None].expand(n, -1, -1)
    return F.affine_grid(theta, list(x.shape), align_corners=False)  # [N, H, W, 2]


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Resample ``x`` at ``p + flow(p)``; ``flow`` is [N, 2, H, W] (x, y) in grid_sample coordinates."""
    grid = identity_grid(x) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def flow_smoothness(flow: Tensor) -> Tensor:
    """Per-sample StAdv flow loss over right and lower neighbours."""
    dx = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    dy = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    lx = (dx.pow(2).sum(1) + 1e-8).sqrt().flatten(1).sum(1)
    ly = (dy.pow(2).sum(1) + 1e-8).sqrt().flatten(1).sum(1)
    return lx + ly


@ATTACKS.register("stadv")
class StAdv(Attack):
    paper = "Xiao, Zhu, Li, He, Liu & Song, Spatially Transformed Adversarial Examples, ICLR 2018"
    url = "https://arxiv.org/abs/1801.02612"
    Config = StAdvConfig
    norm = None

    def __init__(self, params, task):
        super().__init__(params, task)
        self.last_flow: Tensor | None = None  # the flow of the last batch (inspection, tests)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        alpha = p.step_size if p.step_size is not None else 2.5 * p.bound / p.steps
        n, _, h, w = x.shape
        flow = torch.empty(n, 2, h, w, device=x.device, dtype=x.dtype).uniform_(-p.bound, p.bound) * 0.1
        best, best_obj = x.clone(), torch.full((n,), float("-inf"), device=x.device)
        best_flow = torch.zeros_like(flow)
        for _ in range(p.steps):
            f = flow.detach().requires_grad_(True)
            x_adv = warp(x, f)
            out = model(x_adv)
            obj = (-self.task.margin(out, y, target)).clamp(max=p.kappa)
            (grad,) = torch.autograd.grad((obj - p.smoothness * flow_smoothness(f)).sum(), f)
            with torch.no_grad():
                better = obj > best_obj
                best[better], best_obj[better], best_flow[better] = x_adv[better], obj[better], f[better]
                flow = (flow + alpha * grad.sign()).clamp_(-p.bound, p.bound)
        with torch.no_grad():
            x_adv = warp(x, flow)
            obj = (-self.task.margin(model(x_adv), y, target)).clamp(max=p.kappa)
            better = obj > best_obj
            best[better], best_flow[better] = x_adv[better], flow[better]
        self.last_flow = best_flow
        return best.clamp(0, 1)
