"""ReColorAdv (Laidlaw & Feizi 2019): a bounded, smooth change of colours through a colour-space grid, as the
authors' code defines it (``recoloradv`` 0.0.1, used by PAT's ``perceptual_advex.attacks.ReColorAdvAttack``).

Every image gets its own function on colours ``c -> c + g(c)``, evaluated in the authors' scaled CIELUV space
``c = (L / 100, (u + 100) / 200, (v + 100) / 200)`` (sRGB, D65; :func:`to_luv`): ``g`` is a trilinearly
interpolated grid of offsets *indexed by the colour itself* (``16 x 32 x 32`` points over L, u, v). Before
every use the grid is constrained as in the authors' code: the colour at each grid point ``identity + g`` is
clipped to [0, 1], projected into the RGB gamut (``to_luv(from_luv(.))``) and the offset then clamped to
``||g||_inf <= bound`` (0.06). Every pixel's colour change ``g(c)`` is a convex combination of grid offsets,
so it is within the bound exactly, per channel, in this colour space (the final RGB conversion clips to the
gamut). The attack minimises the C&W margin (uncapped: ``kappa: null``) plus ``smoothness`` (default
``0.0036 / bound``) times the grid's smoothness (the L2 norm of the difference to each neighbour along the
three colour axes, summed), with Adam (learning rate 0.001) for ``steps`` iterations (100 in PAT's
evaluation), keeping each example's best objective. RGB images only.

Deliberate differences (options): ``optimizer=sign`` takes signed steps of ``step_size`` instead of Adam
(advlab's earlier default). Inside the grid advlab adds the interpolated *offset* to the pixel's own colour;
the authors interpolate the full colour grid, which for colours outside the unit cube (``u > 100``: saturated
reds) clamps them to the cube even with a zero offset -- a colour change the bound does not account for.
Like the authors' code, each example returns the grid *after* the optimiser step taken from its best
iterate (the objective includes the smoothness penalty, so the best iterate alone would often be the
unperturbed start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import ReColorAdvConfig

WHITE_U, WHITE_V = 0.1978, 0.4683  # D65 chromaticity u', v'
_TINY = 1e-10
_RGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9504))
_XYZ_TO_RGB = ((3.2406, -1.5372, -0.4986), (-0.9689, 1.8758, 0.0415), (0.0557, -0.2040, 1.0570))


def _mix(m, a: Tensor) -> Tensor:
    """Apply the 3x3 matrix ``m`` to the channels of ``a`` [N, 3, ...]."""
    m = torch.tensor(m, dtype=a.dtype, device=a.device)
    return torch.einsum("ij,nj...->ni...", m, a)


def to_luv(x: Tensor) -> Tensor:
    """sRGB [N, 3, ...] in [0, 1] -> the authors' scaled CIELUV ``(L/100, (u+100)/200, (v+100)/200)``."""
    lin = torch.where(x < 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp_min(0) ** 2.4)
    xyz = _mix(_RGB_TO_XYZ, lin)
    big_x, big_y, big_z = xyz.unbind(1)
    denom = big_x + 15 * big_y + 3 * big_z + _TINY
    up, vp = 4 * big_x / denom, 9 * big_y / denom
    lightness = torch.where(
        big_y < (6 / 29) ** 3, (29 / 3) ** 3 * big_y, 116 * big_y.clamp_min(_TINY) ** (1 / 3) - 16
    )
    u, v = 13 * lightness * (up - WHITE_U), 13 * lightness * (vp - WHITE_V)
    return torch.stack([lightness / 100, (u + 100) / 200, (v + 100) / 200], 1)


def from_luv(c: Tensor) -> Tensor:
    """Inverse of :func:`to_luv`, into the RGB gamut: XYZ clipped to [0, 1.1], RGB to [0, 1] (the authors')."""
    lightness, u, v = c[:, 0] * 100, c[:, 1] * 200 - 100, c[:, 2] * 200 - 100
    up = u / (13 * lightness + _TINY) + WHITE_U
    vp = v / (13 * lightness + _TINY) + WHITE_V
    big_y = torch.where(lightness <= 8, lightness * (3 / 29) ** 3, ((lightness + 16) / 116) ** 3)
    denom = 4 * vp + _TINY
    xyz = torch.stack([big_y * 9 * up / denom, big_y, big_y * (12 - 3 * up - 20 * vp) / denom], 1)
    lin = _mix(_XYZ_TO_RGB, xyz.clamp(0, 1.1))
    srgb = torch.where(lin < 0.0031308, 12.92 * lin, 1.055 * lin.clamp_min(_TINY) ** (1 / 2.4) - 0.055)
    return srgb.clamp(0, 1)


def grid_colours(n: int, resolution, device, dtype) -> Tensor:
    """``[n, 3, R_L, R_u, R_v]``: the colour each grid point stands for (the identity map)."""
    axes = [torch.linspace(0, 1, r, device=device, dtype=dtype) for r in resolution]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"), 0)
    return mesh.expand(n, -1, -1, -1, -1)


def colour_offsets(c: Tensor, grid: Tensor) -> Tensor:
    """Per-pixel offset ``g(c)``: trilinear interpolation of ``grid`` [N, 3, R_L, R_u, R_v] at each pixel's
    scaled CIELUV colour ``c`` [N, 3, H, W]; colours outside the unit cube take the border value."""
    n, _, h, w = c.shape
    coords = (c.flip(1) * 2 - 1).permute(0, 2, 3, 1).reshape(n, 1, h * w, 1, 3)  # (v, u, L) -> (W, H, D)
    out = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, 3, h, w)


def constrain(grid: Tensor, identity: Tensor, bound: float) -> Tensor:
    """The authors' projection of the offsets: grid colours clipped to [0, 1] and into the RGB gamut, then
    the offsets clamped to ``[-bound, bound]``."""
    n, _, a, b, d = grid.shape
    colours = (identity + grid).clamp(0, 1).reshape(n, 3, a, b * d)
    colours = to_luv(from_luv(colours)).reshape(n, 3, a, b, d)
    return (colours - identity).clamp(-bound, bound)


def grid_smoothness(grid: Tensor) -> Tensor:
    """Per example: the L2 norm (over the colour channels) of the difference between each grid point and
    each of its neighbours along the three axes, summed; each neighbouring pair counts twice, once from each
    side, as in the authors' code (whose constant border terms are left out)."""
    return sum(2 * (grid.diff(dim=d).pow(2).sum(1) + _TINY).sqrt().flatten(1).sum(1) for d in (2, 3, 4))


@ATTACKS.register("recoloradv")
class ReColorAdv(Attack):
    """ReColorAdv: a smooth colour-grid recolouring in CIELUV, bounded per channel by ``bound``."""

    Config = ReColorAdvConfig
    norm = None
    paper = "Laidlaw & Feizi, Functional Adversarial Attacks, NeurIPS 2019"
    url = "https://arxiv.org/abs/1906.00001"

    def __init__(self, params, task):
        super().__init__(params, task)
        self.last_grid: Tensor | None = None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        if x.shape[1] != 3:
            raise ValueError(
                f"recoloradv needs RGB images (got {x.shape[1]} channels); e.g. dataset.channels=3"
            )
        lam = p.smoothness if p.smoothness is not None else 0.0036 / max(p.bound, 1e-12)
        n = x.shape[0]
        c = to_luv(x)
        identity = grid_colours(n, p.resolution, x.device, x.dtype)
        grid = torch.zeros_like(identity).requires_grad_(True)
        opt = torch.optim.Adam([grid], lr=p.lr) if p.optimizer == "adam" else None
        alpha = p.step_size if p.step_size is not None else 2.5 * p.bound / p.steps
        best_grid = torch.zeros_like(identity)
        best_obj = torch.full((n,), float("-inf"), device=x.device)
        for _ in range(p.steps):
            with torch.no_grad():
                grid.copy_(constrain(grid, identity, p.bound))
            x_adv = from_luv(c + colour_offsets(c, grid))
            margin = self.task.margin(model(x_adv), y, target)
            if p.kappa is not None:
                margin = margin.clamp(min=-p.kappa)
            loss = margin + lam * grid_smoothness(grid) if lam else margin
            (g,) = torch.autograd.grad(loss.sum(), grid)
            if opt is not None:
                grid.grad = g
                opt.step()
            else:
                with torch.no_grad():
                    grid -= alpha * g.sign()
            with torch.no_grad():  # the authors keep the grid after the step from the best iterate
                better = -loss > best_obj
                best_obj[better], best_grid[better] = -loss[better], grid[better]
        with torch.no_grad():
            best_grid = constrain(best_grid, identity, p.bound)
            best = from_luv(c + colour_offsets(c, best_grid))
        self.last_grid = best_grid
        return best
