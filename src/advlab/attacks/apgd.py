"""Auto-PGD (Croce & Hein 2020), the gradient components of AutoAttack, in the Linf or L2 ball.

APGD: start at a random point of the ball, step size ``2 * eps`` halved at checkpoints
``w_j = ceil(p_j * steps)`` (``p_0 = 0``, ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``)
when (1) fewer than ``rho = 0.75`` of the steps since the last checkpoint increased the objective, or (2) the
step size was not reduced at the last checkpoint and the best objective did not change since; after a
reduction the iterate restarts from the best point. Momentum: ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)
(x_k - x_{k-1}))`` with ``z = P(x_k + eta * ascent(grad))`` and ``a = 0.75`` (1 for the first step).

* ``apgd`` with ``loss=ce``: APGD-CE, the task's attack objective (cross-entropy for classification).
* ``apgd_t``: APGD-T, the targeted DLR loss ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` against each of
  the ``n_target_classes`` highest-scoring wrong classes in turn (one run per target class).
* ``autoattack``: APGD-CE, then APGD-T on the examples still not fooled: the worst case over both.
  (The full AutoAttack also runs FAB-T and Square; these are not part of advlab's AutoAttack.)

Classification only for the DLR losses (they read sorted logits). An example keeps the first iterate that
fools the model; otherwise the iterate with the highest objective.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import APGDConfig, APGDTConfig, AutoAttackConfig  # noqa: F401
from advlab.attacks.perturbation import ascent_direction, lp_norm, project


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({math.ceil(q * steps) for q in p[1:] if q <= 1})


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR (to maximise)."""
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf")).amax(1)
    return -(z_y - others) / (srt[:, -1] - srt[:, -3] + 1e-12)


def dlr_targeted_loss(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR (to maximise): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``."""
    srt, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (srt[:, -1] - 0.5 * (srt[:, -3] + srt[:, -4]) + 1e-12)


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


class _APGDBase(Attack):
    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def _project(self, x: Tensor, x_new: Tensor) -> Tensor:
        p = self.params
        return (x + project(x_new - x, p.norm, p.eps)).clamp(0, 1)

    def _random_start(self, x: Tensor) -> Tensor:
        p = self.params
        t = torch.randn_like(x) if p.norm == "l2" else 2 * torch.rand_like(x) - 1
        t = t / _view(lp_norm(t, p.norm).clamp_min(1e-12), x)
        return (x + p.eps * t).clamp(0, 1)

    def loss(self, kind: str, out: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if kind == "dlr":
            return dlr_loss(out, y) if target is None else dlr_targeted_loss(out, y, target)
        return self.task.attack_loss(out, y, target)

    def run(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        kind: str,
        loss_target: Tensor | None,
        success_target: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """APGD on the examples not already fooled at ``x`` (the others are returned as they are); returns
        (adversarial images, fooled)."""
        with torch.no_grad():
            fooled = self.task.success(model(x), y, success_target)
        x_adv = x.clone()
        idx = (~fooled).nonzero().squeeze(1)
        if idx.numel() == 0:
            return x_adv, fooled
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        yy, lt, st = y[idx], pick(loss_target), pick(success_target)
        xr, f = self._run(
            model, x[idx], lambda o: self.loss(kind, o, yy, lt), lambda o: self.task.success(o, yy, st)
        )
        x_adv[idx] = xr
        fooled[idx] = f
        return x_adv, fooled

    def _run(self, model: nn.Module, x: Tensor, loss_fn, success_fn) -> tuple[Tensor, Tensor]:
        """One APGD run; returns (best adversarial iterate, fooled)."""
        p = self.params
        n = x.shape[0]
        marks = set(checkpoints(p.steps))

        def loss_grad(xa: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            xa = xa.detach().requires_grad_(True)
            out = model(xa)
            loss = loss_fn(out)
            (g,) = torch.autograd.grad(loss.sum(), xa)
            return loss.detach(), g, success_fn(out.detach())

        x_cur = self._random_start(x)
        loss, grad, succ = loss_grad(x_cur)
        x_best, loss_best, grad_best = x_cur.clone(), loss.clone(), grad.clone()
        x_out, fooled = x_cur.clone(), succ.clone()
        eta = torch.full((n,), 2.0 * p.eps, device=x.device)
        x_prev = x_cur.clone()
        increases = torch.zeros(n, device=x.device)
        reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
        loss_best_at_mark = loss_best.clone()
        last_mark = 0
        loss_prev = loss.clone()
        for k in range(p.steps):
            z = self._project(x, x_cur + _view(eta, x) * ascent_direction(grad, p.norm))
            a = 1.0 if k == 0 else p.momentum
            x_new = self._project(x, x_cur + a * (z - x_cur) + (1 - a) * (x_cur - x_prev))
            x_prev = x_cur
            x_cur = x_new
            loss, grad, succ = loss_grad(x_cur)
            newly = succ & ~fooled
            x_out[newly] = x_cur[newly]
            fooled |= succ
            increases += (loss > loss_prev).float()
            loss_prev = loss
            better = loss > loss_best
            x_best[better], loss_best[better], grad_best[better] = x_cur[better], loss[better], grad[better]
            if k + 1 in marks:
                h = k + 1 - last_mark
                cond1 = increases < p.rho * h
                cond2 = ~reduced_last & (loss_best_at_mark >= loss_best)
                reduce = cond1 | cond2
                eta = torch.where(reduce, eta / 2, eta)
                # restart the reduced examples from their best point
                x_cur = torch.where(_view(reduce, x), x_best, x_cur)
                grad = torch.where(_view(reduce, x), grad_best, grad)
                x_prev = torch.where(_view(reduce, x), x_best, x_prev)
                reduced_last = reduce
                loss_best_at_mark = loss_best.clone()
                increases.zero_()
                last_mark = k + 1
        x_out[~fooled] = x_best[~fooled]
        return x_out, fooled


@ATTACKS.register("apgd")
class APGD(_APGDBase):
    """APGD-CE (or untargeted DLR with ``loss=dlr``); targeted with the task's targets when ``targeted``."""

    paper = "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, ICML 2020"
    url = "https://arxiv.org/abs/2003.01690"

    Config = APGDConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        x_adv = x.clone()
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(p.restarts):  # restarts only for the examples not fooled yet
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            tt = None if target is None else target[idx]
            xr, fooled = self.run(model, x[idx], y[idx], p.loss, tt, tt)
            x_adv[idx] = xr
            todo[idx[fooled]] = False
        return x_adv


@ATTACKS.register("apgd_t")
class APGDT(_APGDBase):
    paper = "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, ICML 2020"
    url = "https://arxiv.org/abs/2003.01690"
    Config = APGDTConfig

    def targeted_runs(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, todo: Tensor) -> Tensor:
        p = self.params
        with torch.no_grad():
            ranking = model(x).sort(dim=1, descending=True)[1]  # classes by clean score
        k = min(p.n_target_classes, ranking.shape[1] - 1)
        for t in range(k):
            for _ in range(p.restarts):
                idx = todo.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return x_adv
                yy = y[idx]
                rank = ranking[idx]
                # the (t+1)-th highest class other than y
                others = rank[rank != yy[:, None]].view(idx.numel(), -1)
                tt = others[:, t]
                xr, fooled = self.run(model, x[idx], yy, "dlr", tt, None)
                x_adv[idx[fooled]] = xr[fooled]
                todo[idx[fooled]] = False
        return x_adv

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if y.dim() != 1:
            raise ValueError("apgd_t: the targeted DLR loss needs single-label classification outputs")
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.targeted_runs(model, x, y, x.clone(), todo)


@ATTACKS.register("autoattack")
class AutoAttack(APGDT):
    """APGD-CE, then APGD-T on the examples it did not fool (the worst case over both)."""

    paper = "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks, ICML 2020"
    url = "https://arxiv.org/abs/2003.01690"

    Config = AutoAttackConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        xr, fooled = self.run(model, x, y, "ce", None, None)
        return self.targeted_runs(model, x, y, xr, ~fooled)
