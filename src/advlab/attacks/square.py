"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020): score-based random search in the Linf or L2
ball, the black-box component of AutoAttack.

Only the victim's outputs are used (no gradients). The loss minimised is the task's margin (``margin``,
negative exactly when the attack succeeds; for classification ``z_y - max_{l != y} z_l``) or, with
``loss=ce``, the negated attack objective. An example stops as soon as its margin is <= 0.

* Linf: start from vertical stripes ``x + eps * s`` (``s`` = +-1 per channel and column); at iteration
  ``i`` one square window of side ``round(sqrt(p_i * H * W))`` at a random position gets a new random
  vertex of the ball, ``+-2 eps`` per channel, clipped back to the ball and the box; the candidate replaces the
  current point when it lowers the loss (or fools the model).
* L2: start from a grid of ``H // 5`` windows each holding a "two opposite pyramids" pattern with a random
  sign per channel, scaled to norm ``eps``; each iteration moves the mass of a second random window into
  the first (odd side ``>= 3``), with a new pattern, keeping ``||delta||_2 = eps``.

The fraction ``p_i`` of pixels changed follows the reference schedule: ``p_init`` halved after iterations
10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 (``p_init / 2 ... p_init / 512``); with
``rescale_schedule`` the iteration is first mapped to ``int(i / queries * 10000)`` (the reference's
``resc_schedule``; AutoAttack runs Square without it, which is our default). Facts from the authors'
implementation in ``fra31/auto-attack`` (``square.py``), including its use of one window position and
one Linf sign vector for the whole batch per iteration, and of the CPU random stream: on the CPU, Linf
Square draws exactly the reference's random numbers. ``restarts`` runs, each on the examples not yet fooled.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import SquareConfig
from advlab.attacks.perturbation import lp_norm

#: the iterations after which the reference halves p (on a 10000-query scale)
P_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(i: int, p_init: float, queries: int, rescale: bool) -> float:
    """The fraction of pixels the window covers at iteration ``i`` (0-based)."""
    if rescale:
        i = int(i / queries * 10000)
    halvings = sum(i > t for t in P_SCHEDULE)
    return p_init / 2**halvings


def pyramid(rows: int, cols: int, device=None) -> Tensor:
    """``[rows, cols]``: nested rectangles around ``(rows // 2, cols // 2)``, ring ``k`` (Chebyshev distance
    ``k`` from the centre, clipped to the array) weighted ``sum_{j >= k} 1 / (j + 1)^2``; unit L2 norm."""
    ci, cj = rows // 2, cols // 2
    rings = max(ci, cj) + 1
    i = torch.arange(rows, device=device)[:, None]
    j = torch.arange(cols, device=device)[None, :]
    ring = torch.maximum((i - ci).abs(), (j - cj).abs())
    weight = 1.0 / torch.arange(1, rings + 1, device=device, dtype=torch.float32) ** 2
    tail = weight.flip(0).cumsum(0).flip(0)  # tail[k] = sum_{j >= k} weight[j]
    out = tail[ring]
    return out / out.norm()


def square_pattern(s: int, flip: bool, device=None) -> Tensor:
    """``[s, s]`` L2 update pattern: a pyramid on the top half, a negative one on the bottom half, unit norm;
    transposed when ``flip``."""
    top, bottom = pyramid(s // 2, s, device), -pyramid(s - s // 2, s, device)
    out = torch.cat([top, bottom], 0)
    out = out / out.norm()
    return out.t() if flip else out


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@ATTACKS.register("square")
class Square(Attack):
    """Square Attack: score-based random search with square-shaped updates (Linf or L2)."""

    Config = SquareConfig
    paper = (
        "Andriushchenko, Croce, Flammarion & Hein, Square Attack: a query-efficient black-box adversarial "
        "attack via random search, ECCV 2020"
    )
    url = "https://arxiv.org/abs/1912.00049"

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def _margin_loss(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None):
        out = model(x)
        margin = self.task.margin(out, y, target)
        loss = margin if self.params.loss == "margin" else -self.task.attack_loss(out, y, target)
        return margin, loss

    def _init_linf(self, x: Tensor) -> Tensor:
        b, c, _, w = x.shape
        stripes = torch.rand(b, c, 1, w).mul(2).sub(1).sign().to(x.device)  # CPU stream, as the reference
        return (x + self.params.eps * stripes).clamp(0, 1)

    def _init_l2(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = h // 5
        delta = torch.zeros_like(x)
        start = (h - 5 * s) // 2
        for vh in range(start, start + (h // s) * s, s):
            for vw in range(start, start + (w // s) * s, s):
                pattern = square_pattern(s, bool(torch.rand(1) > 0.5), x.device)
                sign = torch.rand(b, c, 1, 1).mul(2).sub(1).sign().to(x.device)
                delta[:, :, vh : vh + s, vw : vw + s] += pattern * sign
        return (x + delta / _view(lp_norm(delta, "l2") + 1e-12, x) * self.params.eps).clamp(0, 1)

    def _side(self, i: int, h: int, w: int, minimum: int) -> int:
        p = self.params
        return max(
            int(round(math.sqrt(p_schedule(i, p.p_init, p.queries, p.rescale_schedule) * h * w))), minimum
        )

    def _candidate_linf(self, x: Tensor, x_best: Tensor, s: int, vh: int, vw: int, signs: Tensor) -> Tensor:
        eps = self.params.eps
        new = x_best.clone()
        new[:, :, vh : vh + s, vw : vw + s] += 2 * eps * signs.view(1, -1, 1, 1)
        return torch.minimum(torch.maximum(new, x - eps), x + eps).clamp(0, 1)

    def _candidate_l2(self, x: Tensor, x_best: Tensor, i: int) -> Tensor:
        p = self.params
        n, c, h, w = x.shape
        s = self._side(i, h, w, 3)
        s += 1 - s % 2  # odd
        u = torch.rand(4).tolist()
        vh, vw, vh2, vw2 = int((h - s) * u[0]), int((w - s) * u[1]), int((h - s) * u[2]), int((w - s) * u[3])
        delta = x_best - x
        win1 = (slice(None), slice(None), slice(vh, vh + s), slice(vw, vw + s))
        win2 = (slice(None), slice(None), slice(vh2, vh2 + s), slice(vw2, vw2 + s))
        norm_win1 = delta[win1].pow(2).sum((-2, -1), keepdim=True).sqrt()  # per channel
        mask = torch.zeros_like(x[:1])
        mask[win1] = 1
        mask[win2] = 1
        norm_image = _view(lp_norm(delta, "l2"), x)
        norm_windows = _view(lp_norm(delta * mask, "l2"), x)
        pattern = square_pattern(s, bool(torch.rand(1) > 0.5), x.device)
        new = pattern * torch.rand(n, c, 1, 1, device=x.device).mul(2).sub(1).sign()
        new = new + delta[win1] / (1e-12 + norm_win1)
        budget = ((p.eps**2 - norm_image**2).clamp_min(0) / c + norm_windows**2).sqrt()
        new = new / (1e-12 + new.pow(2).sum((-2, -1), keepdim=True).sqrt()) * budget
        delta = delta.clone()
        delta[win2] = 0
        delta[win1] = new
        return (x + delta / _view(lp_norm(delta, "l2") + 1e-12, x) * p.eps).clamp(0, 1)

    @torch.no_grad()
    def _run(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
        """One Square run; returns (best point, fooled)."""
        p = self.params
        c = x.shape[1]
        x_best = self._init_linf(x) if p.norm == "linf" else self._init_l2(x)
        margin_min, loss_min = self._margin_loss(model, x_best, y, target)
        if p.norm == "linf":  # the reference's per-iteration draws (2 positions, c signs), drawn at once
            h, w = x.shape[2:]
            draws = torch.rand(p.queries, 2 + c)
            sides = [self._side(i, h, w, 1) for i in range(p.queries)]
            # the reference's random_int(0, h - s): floor((h - s) * u) in float32
            room = torch.tensor([[h - s, w - s] for s in sides], dtype=torch.float32)
            positions = (room * draws[:, :2]).long().tolist()
            signs = draws[:, 2:].mul(2).sub(1).sign().to(x.device)
        ids = torch.arange(x.shape[0], device=x.device)  # the examples still in the batch
        for i in range(p.queries):
            if i % p.compact_every == 0:  # the only host sync: every compact_every iterations
                keep = margin_min[ids] > 0
                ids = ids[keep]
                if ids.numel() == 0:
                    break
            xi, bi = x[ids], x_best[ids]
            ti = None if target is None else target[ids]
            if p.norm == "linf":
                cand = self._candidate_linf(xi, bi, sides[i], *positions[i], signs[i])
            else:
                cand = self._candidate_l2(xi, bi, i)
            margin, loss = self._margin_loss(model, cand, y[ids], ti)
            active = margin_min[ids] > 0  # fooled examples stay where they are (until compacted away)
            better = active & (loss < loss_min[ids])
            loss_min[ids] = torch.where(better, loss, loss_min[ids])
            better |= active & (margin <= 0)
            margin_min[ids] = torch.where(better, margin, margin_min[ids])
            x_best[ids] = torch.where(_view(better, bi), cand, bi)
        return x_best, margin_min <= 0

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        x_adv = x.clone()
        with torch.no_grad():
            todo = self.task.margin(model(x), y, target) > 0
        for _ in range(self.params.restarts):
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            best, fooled = self._run(model, x[idx], y[idx], None if target is None else target[idx])
            x_adv[idx[fooled]] = best[fooled]
            todo[idx[fooled]] = False
        return x_adv
