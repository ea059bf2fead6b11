"""Auto-PGD (Croce & Hein 2020), the gradient components of AutoAttack, in the Linf or L2 ball.

APGD, as in the authors' reference implementation (``fra31/auto-attack``, ``autopgd_base.py``): start at a
random point ``x + eps * t / ||t||`` (``t`` uniform in [-1, 1] for Linf, Gaussian for L2), step size
``eta = 2 * eps``. Momentum: ``z = P(x_k + eta * ascent(grad))``, ``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)
(x_k - x_{k-1}))`` with ``a = 0.75`` (1 for the first step). The step size is halved at the checkpoints of
:func:`checkpoints` for the examples where (1) at most ``rho = 0.75`` of the steps since the last
checkpoint increased the objective (``<=``, the reference's test) or (2) it was not halved at the last
checkpoint and the best objective did not increase since; those restart from their best point and its
gradient (the momentum term keeps the previous iterate, as in the reference).

* ``apgd`` with ``loss=ce``: APGD-CE, the task's attack objective (cross-entropy for classification);
  ``loss=dlr``: APGD-DLR. ``eot_iter > 1`` averages the gradient over that many passes (randomised
  defenses, AutoAttack's ``rand`` version).
* ``apgd_t``: APGD-T, the targeted DLR loss ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` against each of
  the ``n_target_classes`` highest-scoring wrong classes in turn (at the clean image).
* ``apgd_ce_t``: APGD-CE, then APGD-T on the examples still not fooled: the worst case over both (the
  two-stage evaluation PAT's tables call "AutoAttack"; the full AutoAttack is :mod:`advlab.attacks.autoattack`).

``restarts`` random restarts, each only on the examples not fooled yet (for APGD-T: per target class).
Classification only for the DLR losses (they read sorted logits). An example keeps the first iterate that
fools the model; otherwise the iterate with the highest objective.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from advlab import keyed_random
from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import APGDConfig, APGDTConfig  # noqa: F401
from advlab.attacks.perturbation import ascent_direction, lp_norm, project
from advlab.errors import ConfigError

PAPER = (
    "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free "
    "attacks, ICML 2020"
)
URL = "https://arxiv.org/abs/2003.01690"


def checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD may halve its step size: the reference's integer schedule.

    The first interval is ``max(int(0.22 N), 1)`` steps, each next one ``max(int(0.03 N), 1)`` shorter, but
    never below ``max(int(0.06 N), 1)``. For ``N = 100``: 22, 41, 57, 70, 80, 87, 93, 99. (The paper writes
    the same schedule as fractions ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` of ``N``; the reference
    code, which we follow, rounds the intervals down instead of the positions up.)
    """
    first, decrement, floor = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, pos, interval = [], 0, first
    while pos + interval <= steps:
        pos += interval
        marks.append(pos)
        interval = max(interval - decrement, floor)
    return marks


def require_class_logits(task, key: str, what: str) -> None:
    """ConfigError unless the task's outputs are single-label class logits (the DLR losses, FAB and
    Square's margin read them)."""
    from advlab.tasks.classification import Classification

    if not isinstance(task, Classification):
        raise ConfigError(
            f"{key}: {what} needs single-label class logits, but the task is "
            f"'{task.registered_name}'; use task=classification or an attack on the task's objective "
            "(e.g. attack=apgd_ce, attack=pgd_linf)"
        )


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Untargeted DLR (to maximise): ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``."""
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


def top_wrong_classes(logits: Tensor, y: Tensor, k: int) -> Tensor:
    """``[B, k]``: the ``k`` highest-scoring classes other than ``y``, best first (APGD-T's and FAB-T's
    targets; the reference takes ranks 2.. of the clean scores, which skips ``y`` on the correctly
    classified examples these attacks run on)."""
    ranking = logits.sort(dim=1, descending=True)[1]
    others = ranking[ranking != y[:, None]].view(y.shape[0], -1)
    return others[:, :k]


class _APGDBase(Attack):
    paper = PAPER
    url = URL

    def __init__(self, params, task):
        super().__init__(params, task)
        if params.loss == "dlr" or isinstance(params, APGDTConfig):
            require_class_logits(task, f"attack.name={self.registered_name}", "the DLR loss")

    @property
    def norm(self) -> str:  # type: ignore[override]
        return self.params.norm

    def _project(self, x: Tensor, x_new: Tensor) -> Tensor:
        p = self.params
        return (x + project(x_new - x, p.norm, p.eps)).clamp(0, 1)

    def _random_start(self, x: Tensor) -> Tensor:
        p = self.params
        if keyed_random.active():  # the evaluate loop: keyed on each image (advlab.keyed_random)
            t = keyed_random.randn_like(x) if p.norm == "l2" else keyed_random.uniform_like(x, -1.0, 1.0)
        else:
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
        """One APGD run on the examples not already fooled at ``x`` (the others are returned as they are);
        returns (adversarial images, fooled)."""
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
            grad = torch.zeros_like(xa)
            for _ in range(p.eot_iter):  # EOT: the mean gradient; loss and success of the last pass
                out = model(xa)
                loss = loss_fn(out)
                grad += torch.autograd.grad(loss.sum(), xa)[0]
            return loss.detach(), grad / p.eot_iter, success_fn(out.detach())

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
        # the reference compares the first step's objective with its (zero-initialised) loss history, not
        # with the objective at the start point
        loss_prev = torch.zeros_like(loss)
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
                oscillating = increases <= p.rho * h
                stalled = ~reduced_last & (loss_best_at_mark >= loss_best)
                reduce = oscillating | stalled
                eta = torch.where(reduce, eta / 2, eta)
                # the reduced examples continue from their best point; x_prev is kept (reference)
                x_cur = torch.where(_view(reduce, x), x_best, x_cur)
                grad = torch.where(_view(reduce, x), grad_best, grad)
                reduced_last = reduce
                loss_best_at_mark = loss_best.clone()
                increases.zero_()
                last_mark = k + 1
        x_out[~fooled] = x_best[~fooled]
        self.last_step_size = eta  # per example, after the last checkpoint (diagnostics)
        return x_out, fooled


@ATTACKS.register("apgd")
class APGD(_APGDBase):
    """APGD-CE (or untargeted DLR with ``loss=dlr``); targeted with the task's targets when ``targeted``."""

    Config = APGDConfig

    def restarted_runs(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None, x_adv: Tensor, todo: Tensor
    ) -> Tensor:
        """``restarts`` runs, each on the examples of ``todo`` not fooled yet; fills ``x_adv`` and clears
        ``todo`` where an example is fooled."""
        p = self.params
        for _ in range(p.restarts):
            idx = todo.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            tt = None if target is None else target[idx]
            xr, fooled = self.run(model, x[idx], y[idx], p.loss, tt, tt)
            x_adv[idx] = xr  # fooled: the fooling iterate; otherwise this run's best
            todo[idx[fooled]] = False
        return x_adv

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.restarted_runs(model, x, y, target, x.clone(), todo)


@ATTACKS.register("apgd_t")
class APGDT(_APGDBase):
    """APGD-T: targeted DLR against each of the ``n_target_classes`` highest wrong classes in turn."""

    Config = APGDTConfig

    def targeted_runs(self, model: nn.Module, x: Tensor, y: Tensor, x_adv: Tensor, todo: Tensor) -> Tensor:
        """For each target rank, ``restarts`` runs on the examples of ``todo`` not fooled yet; fills ``x_adv``
        and clears ``todo`` where an example is fooled."""
        p = self.params
        with torch.no_grad():
            targets = top_wrong_classes(model(x), y, p.n_target_classes)  # by clean score
        for t in range(targets.shape[1]):
            for _ in range(p.restarts):
                idx = todo.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return x_adv
                xr, fooled = self.run(model, x[idx], y[idx], "dlr", targets[idx, t], None)
                x_adv[idx[fooled]] = xr[fooled]
                todo[idx[fooled]] = False
        return x_adv

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        return self.targeted_runs(model, x, y, x.clone(), todo)


@ATTACKS.register("apgd_ce_t")
class APGDCET(APGDT):
    """APGD-CE, then APGD-T on the examples it did not fool (the worst case over both; ``restarts`` in both)."""

    Config = APGDTConfig

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p = self.params
        ce = APGD(dataclasses.replace(p, loss="ce"), self.task)
        todo = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        x_adv = ce.restarted_runs(model, x, y, None, x.clone(), todo)
        return self.targeted_runs(model, x, y, x_adv, todo)
