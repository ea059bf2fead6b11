"""StAdv: spatially transformed adversarial examples (Xiao et al. 2018), as PAT's evaluation runs it (the
authors' ``perceptual_advex.attacks.StAdvAttack`` on ``recoloradv``'s mister_ed).

Each pixel is displaced by a flow vector and the image resampled bilinearly with zero padding:
``x~ = warp(x, f)``, ``x~(p) = x(p + f(p))``. The flow is in the normalised coordinates of
``torch.nn.functional.grid_sample`` (the image spans [-1, 1], so 0.05 is 2.5% of the width, 0.8 pixels at
32 px) and constrained before every use as in the authors' code: the sampling grid clipped to [-1, 1], then
``||f||_inf <= bound`` (0.05) per component, exactly. The attack minimises the C&W margin (uncapped:
``kappa: null``) plus ``smoothness`` (default ``0.0025 / bound``) times StAdv's flow loss
``sum_p sum_{q in N(p)} sqrt(||f(p) - f(q)||^2 + 1e-10)`` over the 4 neighbours ``N(p)`` (the border
replicated), with Adam (learning rate 0.01) from the zero flow for ``steps`` iterations; like the authors'
code each example returns the flow after the optimiser step taken from its best iterate.

Options that differ on purpose: ``optimizer=sign`` (signed steps of ``step_size``, advlab's earlier default).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import StAdvConfig


def identity_grid(x: Tensor) -> Tensor:
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device, dtype=x.dtype)[None].expand(n, -1, -1)
    return F.affine_grid(theta, list(x.shape), align_corners=False)  # [N, H, W, 2]


def warp(x: Tensor, flow: Tensor) -> Tensor:
    """Resample ``x`` at ``p + flow(p)`` (zero outside the image); ``flow`` is [N, 2, H, W] (x, y) in
    grid_sample coordinates."""
    grid = identity_grid(x) + flow.permute(0, 2, 3, 1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def constrain_flow(flow: Tensor, identity: Tensor, bound: float) -> Tensor:
    """The authors' projection: the sampling grid clipped to [-1, 1], then the flow to ``[-bound, bound]``."""
    grid = (identity + flow).clamp(-1, 1)
    return (grid - identity).clamp(-bound, bound)


def flow_smoothness(flow: Tensor) -> Tensor:
    """Per example: StAdv's flow loss over the 4 neighbours (each neighbouring pair counts from both sides;
    the replicated border adds only the constant ``sqrt(1e-10)`` terms, left out)."""
    dx = flow[:, :, :, 1:] - flow[:, :, :, :-1]
    dy = flow[:, :, 1:, :] - flow[:, :, :-1, :]
    lx = (dx.pow(2).sum(1) + 1e-10).sqrt().flatten(1).sum(1)
    ly = (dy.pow(2).sum(1) + 1e-10).sqrt().flatten(1).sum(1)
    return 2 * (lx + ly)


@ATTACKS.register("stadv")
class StAdv(Attack):
    """StAdv: a smooth flow field within ``bound``, optimised as in PAT's evaluation."""

    Config = StAdvConfig
    norm = None
    paper = "Xiao, Zhu, Li, He, Liu & Song, Spatially Transformed Adversarial Examples, ICLR 2018"
    url = "https://arxiv.org/abs/1801.02612"

    def __init__(self, params, task):
        super().__init__(params, task)
        self.last_flow: Tensor | None = None  # the flow of the last batch (inspection, tests)

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        lam = p.smoothness if p.smoothness is not None else 0.0025 / max(p.bound, 1e-12)
        alpha = p.step_size if p.step_size is not None else 2.5 * p.bound / p.steps
        n, _, h, w = x.shape
        identity = identity_grid(x).permute(0, 3, 1, 2)
        flow = torch.zeros(n, 2, h, w, device=x.device, dtype=x.dtype).requires_grad_(True)
        opt = torch.optim.Adam([flow], lr=p.lr) if p.optimizer == "adam" else None
        best_flow = torch.zeros_like(flow)
        best_obj = torch.full((n,), float("-inf"), device=x.device)
        for _ in range(p.steps):
            with torch.no_grad():
                flow.copy_(constrain_flow(flow, identity, p.bound))
            margin = self.task.margin(model(warp(x, flow)), y, target)
            if p.kappa is not None:
                margin = margin.clamp(min=-p.kappa)
            loss = margin + lam * flow_smoothness(flow) if lam else margin
            (g,) = torch.autograd.grad(loss.sum(), flow)
            if opt is not None:
                flow.grad = g
                opt.step()
            else:
                with torch.no_grad():
                    flow -= alpha * g.sign()
            with torch.no_grad():  # the authors keep the flow after the step from the best iterate
                better = -loss > best_obj
                best_obj[better], best_flow[better] = -loss[better], flow[better]
        with torch.no_grad():
            best_flow = constrain_flow(best_flow, identity, p.bound)
            self.last_flow = best_flow
            return warp(x, best_flow).clamp(0, 1)
