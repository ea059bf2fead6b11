"""ReColorAdv (Laidlaw & Feizi 2019): a bounded, smooth change of colours through a colour-space grid.

Every image gets its own function ``c -> c + g(c)`` on colours, where ``g`` is a trilinearly interpolated grid
of ``resolution^3`` offsets over the RGB cube (indexed by the pixel's input colour) and the offsets live in
CIELUV, scaled to unit range (``L/100, u/100, v/100``). Each offset is bounded ``||g||_inf <= bound`` (0.06),
so every pixel's CIELUV change is a convex combination of bounded offsets and respects the same bound (up to
the final clip of the RGB result to [0, 1]). The attack ascends the margin objective minus a smoothness
penalty on neighbouring grid offsets, with signed-gradient steps projected onto the bound. RGB images only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import ReColorAdvConfig  # noqa: F401

LUV_SCALE = 100.0


def to_luv(x: Tensor) -> Tensor:
    import kornia  # imported lazily: kornia takes seconds to import

    return kornia.color.rgb_to_luv(x) / LUV_SCALE


def from_luv(luv: Tensor) -> Tensor:
    import kornia

    return kornia.color.luv_to_rgb(luv * LUV_SCALE)


def colour_offsets(x: Tensor, grid: Tensor) -> Tensor:
    """Per-pixel CIELUV offset ``g(x)``: trilinear interpolation of ``grid`` [N, 3, R, R, R] at each pixel's
    RGB colour (grid axes: depth = blue, height = green, width = red)."""
    n, _, h, w = x.shape
    coords = (x * 2 - 1).permute(0, 2, 3, 1).reshape(n, 1, h * w, 1, 3)  # (r, g, b) -> (W, H, D)
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, 3, h, w)


def recolour(x: Tensor, grid: Tensor) -> Tensor:
    return from_luv(to_luv(x) + colour_offsets(x, grid)).clamp(0, 1)


def grid_smoothness(grid: Tensor) -> Tensor:
    return sum((grid.diff(dim=d) ** 2).flatten(1).sum(1) for d in (2, 3, 4))


@ATTACKS.register("recoloradv")
class ReColorAdv(Attack):
    paper = "Laidlaw & Feizi, Functional Adversarial Attacks, NeurIPS 2019"
    url = "https://arxiv.org/abs/1906.00001"
    Config = ReColorAdvConfig
    norm = None

    def __init__(self, params, task):
        super().__init__(params, task)
        self.last_grid: Tensor | None = None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        if x.shape[1] != 3:
            raise ValueError(
                f"recoloradv needs RGB images (got {x.shape[1]} channels); e.g. dataset.channels=3"
            )
        alpha = p.step_size if p.step_size is not None else 2.5 * p.bound / p.steps
        n, r = x.shape[0], p.resolution
        grid = torch.zeros(n, 3, r, r, r, device=x.device, dtype=x.dtype)
        best, best_obj = x.clone(), torch.full((n,), float("-inf"), device=x.device)
        best_grid = grid.clone()
        for _ in range(p.steps + 1):
            g = grid.detach().requires_grad_(True)
            x_adv = recolour(x, g)
            obj = (-self.task.margin(model(x_adv), y, target)).clamp(max=p.kappa)
            with torch.no_grad():
                better = obj > best_obj
                best[better], best_obj[better], best_grid[better] = x_adv[better], obj[better], grid[better]
            total = obj - p.smoothness * grid_smoothness(g) if p.smoothness else obj
            (grad,) = torch.autograd.grad(total.sum(), g)
            grid = (grid + alpha * grad.sign()).clamp_(-p.bound, p.bound)
        self.last_grid = best_grid
        return best
