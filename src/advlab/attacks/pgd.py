"""Projected gradient descent (Madry et al. 2018) in the Linf or L2 ball.

Random start in the ball, ``steps`` steepest-ascent steps of ``step_size`` on the task's attack objective,
projection onto the ball and the [0,1] box after every step, ``restarts`` random restarts (examples already
successful are not restarted; otherwise the restart with the highest objective is kept), and per-example
early stopping: an example whose current iterate already meets the task's success rule is frozen there and
no longer costs forward/backward passes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import PGDConfig  # noqa: F401
from advlab.attacks.perturbation import ascent_direction, project, random_start


@ATTACKS.register("pgd")
class PGD(Attack):
    paper = "Madry, Makelov, Schmidt, Tsipras & Vladu, Towards Deep Learning Models Resistant to Adversarial Attacks, ICLR 2018"
    url = "https://arxiv.org/abs/1706.06083"
    Config = PGDConfig

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    @property
    def step_size(self) -> float:
        p = self.params
        return p.step_size if p.step_size is not None else 2.5 * p.eps / p.steps

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        if p.restarts == 1:
            return self._run(model, x, y, target, need_final=False)[0]
        best = x.clone()
        best_loss = torch.full((x.shape[0],), float("-inf"), device=x.device)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(p.restarts):
            idx = (~done).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            tgt = None if target is None else target[idx]
            x_r, loss_r, succ_r = self._run(model, x[idx], y[idx], tgt, need_final=True)
            better = succ_r | (loss_r > best_loss[idx])
            best[idx[better]] = x_r[better]
            best_loss[idx[better]] = loss_r[better]
            done[idx[succ_r]] = True
        return best

    def _run(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, need_final: bool):
        """One PGD run. Returns (x_adv, final objective, final success); the last two only if need_final."""
        p, task = self.params, self.task
        alpha = self.step_size
        linf = p.norm == "linf"
        # Linf: the eps-ball and the [0,1] box intersect in per-pixel bounds, so projection is one clamp
        lo, hi = ((x - p.eps).clamp_(min=0), (x + p.eps).clamp_(max=1)) if linf else (None, None)
        delta = random_start(x, p.norm, p.eps) if p.random_start else torch.zeros_like(x)
        x_adv = (x + delta).clamp_(0, 1)
        active = None  # indices of examples still attacked; None = all (no indexing on the fast path)

        def pick(t: Tensor | None) -> Tensor | None:
            return t if t is None or active is None else t[active]

        for _ in range(p.steps):
            xa = pick(x_adv).detach().requires_grad_(True)
            ya, ta = pick(y), pick(target)
            outputs = model(xa)
            (grad,) = torch.autograd.grad(task.attack_loss(outputs, ya, ta).sum(), xa)
            xa = xa.detach()
            if p.early_stop:
                keep = ~task.success(outputs.detach(), ya, ta)
                if not bool(keep.all()):  # drop examples that already succeed: x_adv keeps their iterate
                    ids = torch.arange(x.shape[0], device=x.device) if active is None else active
                    active, xa, grad = ids[keep], xa[keep], grad[keep]
                    if active.numel() == 0:
                        break
            step = torch.add(xa, ascent_direction(grad, p.norm), alpha=alpha)
            if linf:
                new = torch.clamp(step, pick(lo), pick(hi))
            else:
                x0 = pick(x)
                new = (x0 + project(step - x0, p.norm, p.eps)).clamp_(0, 1)
            x_adv = new if active is None else x_adv.index_copy(0, active, new)
        if not need_final:
            return x_adv, None, None
        with torch.no_grad():
            outputs = model(x_adv)
            return x_adv, task.attack_loss(outputs, y, target), task.success(outputs, y, target)
