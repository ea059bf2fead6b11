"""FAB, the Fast Adaptive Boundary attack (Croce & Hein 2020), Linf or L2, untargeted or targeted.

A minimum-norm attack: from ``x^(0) = x_orig`` (restarts after the first start at a random point at
``eps / 2`` from it) every step linearises the classifier at the current point ``x^(i)``: for each class
``l != y`` the decision hyperplane ``f_l(x^(i)) - f_y(x^(i)) + <grad(f_l - f_y), z - x^(i)> = 0``. It takes
the closest one in the attack's norm (distance ``|f_l - f_y| / ||grad(f_l - f_y)||_q``, ``q`` the dual
norm; the targeted variant uses the hyperplane of its target only) and projects both ``x^(i)`` and
``x_orig`` onto it within the [0, 1] box (:func:`project_hyperplane_box`: ``d1``, ``d2``). The next point
is the biased combination

    x^(i+1) = clip((x^(i) + eta d1) (1 - alpha) + (x_orig + eta d2) alpha),
    alpha = min(||d1|| / (||d1|| + ||d2||), alpha_max),

with overshoot ``eta = 1.05`` and ``alpha_max = 0.1``; when ``x^(i+1)`` is adversarial it is recorded if
closer to ``x_orig`` than the best so far, and the iterate steps back towards ``x_orig``:
``x^(i+1) <- x_orig + beta (x^(i+1) - x_orig)`` (``beta = 0.9``). An example counts as fooled only when its
best adversarial point lies within ``eps`` (AutoAttack's use of FAB); the others are returned unchanged.

* ``fab``: untargeted (all ``l != y``); with ``targeted: true`` the task's targets (the hyperplane of the
  target, success = the target class is predicted).
* ``fab_t``: FAB-T, AutoAttack's multi-targeted FAB: one run per target among the ``n_target_classes``
  highest-scoring wrong classes at the clean image, success = misclassified (as in the reference).

Every step costs one forward pass and, untargeted, one backward pass per class (the full Jacobian; vmapped),
targeted, one; plus one forward pass to test the new point. Single-label classification only (it needs
class logits). Facts (defaults, the projection's behaviour when the hyperplane is out of the box: the
nearest corner) from the authors' reference implementation (``fra31/auto-attack``, ``fab_pt.py``,
``fab_projections.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.apgd import require_class_logits, top_wrong_classes
from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import FABConfig, FABTConfig
from advlab.attacks.jma import output_jacobian
from advlab.attacks.perturbation import lp_norm


def _solve_breakpoints(breaks: Tensor, slope: Tensor, saturated: Tensor, need: Tensor) -> Tensor:
    """The smallest ``lam >= 0`` with ``g(lam) = sum_i min(lam * slope_i, saturated_i) = need`` where
    ``saturated_i = breaks_i * slope_i`` (``g`` piecewise linear, nondecreasing); ``inf`` where even
    ``g(inf) = sum saturated < need``. Rows are independent; ``[B, n]`` -> ``[B]``."""
    order = breaks.argsort(dim=1)
    b = breaks.gather(1, order)
    a = slope.gather(1, order)
    sat_cum = saturated.gather(1, order).cumsum(1)  # sum over the breakpoints passed
    slope_left = a.sum(1, keepdim=True) - a.cumsum(1)  # slope of g after the j-th breakpoint
    g_at_break = sat_cum + b * slope_left
    j = (g_at_break < need[:, None]).sum(1)  # number of breakpoints passed before g reaches `need`
    feasible = j < b.shape[1]
    prev = (j - 1).clamp(min=0)[:, None]
    sat_before = torch.where(j > 0, sat_cum.gather(1, prev).squeeze(1), torch.zeros_like(need))
    slope_here = torch.where(j > 0, slope_left.gather(1, prev).squeeze(1), a.sum(1))
    lam = (need - sat_before) / slope_here.clamp_min(1e-30)
    return torch.where(feasible, lam.clamp_min(0), torch.full_like(lam, float("inf")))


def project_hyperplane_box(t: Tensor, w: Tensor, b: Tensor, norm: str) -> Tensor:
    """The displacement ``d`` of smallest ``norm`` with ``<w, t + d> = b`` and ``0 <= t + d <= 1``, per row
    (``t, w`` ``[B, n]``, ``b`` ``[B]``); where the box does not reach the hyperplane, the box corner
    closest to it.

    With ``need = |b - <w, t>|`` and ``u = sign(b - <w, t>) w``, each coordinate moves towards the
    hyperplane (``sign(u_i)``) by at most its room in the box ``cap_i``: Linf ``d_i = sign(u_i) min(lam,
    cap_i)``; L2 (KKT) ``d_i = sign(u_i) min(lam |u_i|, cap_i)``; ``lam`` solves ``<u, d> = need``."""
    gap = b - (w * t).sum(1)
    u = w * torch.where(gap >= 0, 1.0, -1.0)[:, None]
    need = gap.abs()
    direction = u.sign()
    cap = torch.where(u > 0, 1 - t, t).clamp_min(0)  # room towards the hyperplane
    au = u.abs()
    if norm == "linf":
        breaks, slope = torch.where(au > 0, cap, torch.zeros_like(cap)), au
    else:
        breaks, slope = torch.where(au > 0, cap / au.clamp_min(1e-30), torch.zeros_like(cap)), au**2
    lam = _solve_breakpoints(breaks, slope, breaks * slope, need)
    step = torch.minimum(lam[:, None] * (1 if norm == "linf" else au), cap)
    step = torch.where(torch.isinf(lam)[:, None], cap, step)  # out of reach: the corner
    return direction * step


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


@ATTACKS.register("fab")
class FAB(Attack):
    """FAB (Fast Adaptive Boundary), untargeted or with the task's targets, in the Linf or L2 ball."""

    Config = FABConfig
    paper = "Croce & Hein, Minimally distorted Adversarial Examples with a Fast Adaptive Boundary Attack, ICML 2020"
    url = "https://arxiv.org/abs/1907.02044"

    def __init__(self, params, task):
        super().__init__(params, task)
        require_class_logits(task, f"attack.name={self.registered_name}", "FAB (the decision hyperplanes)")

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def _hyperplane(self, model: nn.Module, x1: Tensor, y: Tensor, target: Tensor | None):
        """(value ``f_l - f_y`` [B], gradient [B, n]) of the closest linearised decision boundary."""
        n = x1.shape[0]
        rows = torch.arange(n, device=x1.device)
        if target is not None:
            xa = x1.detach().requires_grad_(True)
            out = model(xa)
            diff = out[rows, target] - out[rows, y]
            (g,) = torch.autograd.grad(diff.sum(), xa)
            return diff.detach(), g.flatten(1)
        out, jac = output_jacobian(model, x1.detach())  # [B, K], [B, K, n]
        df = out - out[rows, y][:, None]
        dg = jac - jac[rows, y][:, None]
        dual = dg.abs().sum(2) if self.params.norm == "linf" else dg.norm(dim=2)
        dist = df.abs() / (dual + 1e-12)
        dist[rows, y] = float("inf")
        ind = dist.argmin(1)
        return df[rows, ind], dg[rows, ind]

    def _run(
        self, model: nn.Module, x0: Tensor, y: Tensor, target: Tensor | None, st: Tensor | None, rand: bool
    ) -> tuple[Tensor, Tensor]:
        """One FAB run from ``x0`` (random start at eps/2 when ``rand``); returns (closest adversarial point
        found, or ``x0``; its distance, ``inf`` if none)."""
        p = self.params
        n = x0.shape[0]
        flat0 = x0.flatten(1)
        x1 = x0.clone()
        if rand:
            t = torch.randn_like(x0) if p.norm == "l2" else 2 * torch.rand_like(x0) - 1
            x1 = (x0 + 0.5 * p.eps * t / _view(lp_norm(t, p.norm).clamp_min(1e-12), x0)).clamp(0, 1)
        best = x0.clone()
        best_dist = torch.full((n,), float("inf"), device=x0.device)
        for _ in range(p.steps):
            with torch.enable_grad():
                df, w = self._hyperplane(model, x1, y, target)
            with torch.no_grad():
                flat1 = x1.flatten(1)
                b = -df + (w * flat1).sum(1)  # the hyperplane <w, z> = b
                d = project_hyperplane_box(
                    torch.cat([flat1, flat0]), torch.cat([w, w]), torch.cat([b, b]), p.norm
                )
                d1, d2 = d[:n].view_as(x0), d[n:].view_as(x0)
                a = lp_norm(d, p.norm).clamp_min(1e-8)
                alpha = (a[:n] / (a[:n] + a[n:])).clamp(0, p.alpha_max)
                al = _view(alpha, x0)
                x1 = ((x1 + p.eta * d1) * (1 - al) + (x0 + p.eta * d2) * al).clamp(0, 1)
                adv = self.task.success(model(x1), y, st)
                dist = lp_norm(x1 - x0, p.norm)
                closer = adv & (dist < best_dist)
                best = torch.where(_view(closer, x0), x1, best)
                best_dist = torch.where(closer, dist, best_dist)
                x1 = torch.where(_view(adv, x0), x0 + (x1 - x0) * p.beta, x1)
        return best, best_dist

    def restarted_runs(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        success_target: Tensor | None,
        x_adv: Tensor,
        todo: Tensor,
    ) -> Tensor:
        """``restarts`` runs, each on the examples of ``todo`` not yet fooled within eps; fills ``x_adv`` and
        clears ``todo`` where one is."""
        p = self.params
        with torch.no_grad():
            todo &= ~self.task.success(model(x), y, success_target)  # the reference attacks the robust points
        for r in range(p.restarts):
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            tt = None if target is None else target[idx]
            st = None if success_target is None else success_target[idx]
            best, dist = self._run(model, x[idx], y[idx], tt, st, rand=r > 0)
            fooled = dist <= p.eps
            x_adv[idx[fooled]] = best[fooled]
            todo[idx[fooled]] = False
        return x_adv

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.restarted_runs(model, x, y, target, target, x.clone(), todo)


@ATTACKS.register("fab_t")
class FABT(FAB):
    """FAB-T: FAB towards each of the ``n_target_classes`` highest wrong classes in turn (AutoAttack)."""

    Config = FABTConfig

    def targeted_runs(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, todo: Tensor) -> Tensor:
        with torch.no_grad():
            targets = top_wrong_classes(model(x), y, self.params.n_target_classes)
        for t in range(targets.shape[1]):
            x_adv = self.restarted_runs(model, x, y, targets[:, t], None, x_adv, todo)
        return x_adv

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.targeted_runs(model, x, y, x.clone(), todo)
