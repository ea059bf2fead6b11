"""MLA-LP: multi-label adversarial examples by linear programming (Zhou et al., IJCNN 2020), the JMA paper's
reference [10].

Each output ``j`` has a per-label loss, the binary cross-entropy of its score against the target bit,
``L_j(x) = softplus(-t_j z_j(x))`` (``t`` in {-1,+1} the task's per-output target code, ``z`` the raw outputs;
the score is the sigmoid ``sigma(z_j)`` with threshold ``rho = 0.5``, i.e. ``z_j = 0``). A label is on the
target side exactly when its loss is below ``L* = log 2``. Assuming the losses change linearly for a small
perturbation ``r``, each iteration solves the linear program

    min_{r, s}  s     s.t.   L(x) + G r <= L_target,   -s <= r_i <= s,   0 <= x + r <= 1,

(``G = dL/dx`` the ``n x m`` Jacobian of the per-label losses, ``L_target_j = softplus(-kappa_j)``): the
smallest Linf step that brings every label's linearised loss under its target value, with the image box as
variable bounds. The point moves to ``clip(x + r*)`` and the losses and Jacobian are recomputed, until the
task's decision equals the target or ``max_iters`` iterations. Every label is constrained, not only the
attacked ones, so labels that should stay keep their side (what distinguishes MLA-LP from ML-DeepFool).

Labels that are still on the wrong side after a step ask for ``margin_step`` more logit margin ``kappa_j`` at
the next one (starting from ``confidence``): the linearisation underestimates the step where the loss is
convex, and without this the greedy iteration can stall just short of the boundary. (The authors' code
moves the probability threshold by 0.05 for stalled labels instead; this is the same idea in logit units.)

On the ECOC task the JMA paper applies MLA-LP "with rho = 0, decoding element-wise": the per-bit target is the
target codeword (``task.output_code``), each bit's score is ``tanh(z_j)`` whose threshold 0 is ``z_j = 0``,
and success is the task's own rule (the decoded class), checked after every step.

An example whose LP is infeasible (the box leaves no linearised solution) stops there. The returned image is
the first successful iterate, or for a failure the iterate with the most output bits on the target side
(ties: the earlier one). ``iters`` = LP steps taken (0 where the clean output is already the target).

The Jacobian is batched on the device (:func:`advlab.attacks.jma.output_jacobian`). The LPs are solved per
example with ``scipy.optimize.linprog`` (HiGHS) on the CPU: there is no practical batched LP solver in torch,
and the problem (m + 1 variables, n + 2m sparse constraints) is what the original authors also solve one
example at a time (with MOSEK).
"""

from __future__ import annotations

import numpy as np
import scipy.optimize
import scipy.sparse
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.configs import MLALPConfig  # noqa: F401
from advlab.attacks.jma import JacobianAttack, output_jacobian


def min_linf_step(grad: Tensor, slack: Tensor, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Solve ``min ||r||_inf s.t. grad r <= slack, lower <= r <= upper`` for every example.

    ``grad [B, k, m]``, ``slack [B, k]``, ``lower/upper [B, m]``. Returns ``(r [B, m], feasible [B] bool)``
    (``r = 0`` where infeasible). One HiGHS LP per example (see the module docstring)."""
    b, k, m = grad.shape
    g = grad.detach().double().cpu().numpy()
    h = slack.detach().double().cpu().numpy()
    lo = lower.detach().double().cpu().numpy()
    hi = upper.detach().double().cpu().numpy()
    eye = scipy.sparse.identity(m, format="csr")
    ones = scipy.sparse.csr_matrix(np.ones((m, 1)))
    box = scipy.sparse.vstack(
        [scipy.sparse.hstack([eye, -ones]), scipy.sparse.hstack([-eye, -ones])], format="csr"
    )  # r - s <= 0, -r - s <= 0
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    out = np.zeros((b, m))
    ok = np.zeros(b, dtype=bool)
    for i in range(b):
        a_ub = scipy.sparse.vstack(
            [scipy.sparse.hstack([scipy.sparse.csr_matrix(g[i]), scipy.sparse.csr_matrix((k, 1))]), box],
            format="csr",
        )
        b_ub = np.concatenate([h[i], np.zeros(2 * m)])
        bounds = np.concatenate([np.stack([lo[i], hi[i]], 1), [[0.0, np.inf]]])
        res = scipy.optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
        if res.status == 0:
            out[i], ok[i] = res.x[:m], True
    return torch.from_numpy(out).to(grad), torch.from_numpy(ok).to(grad.device)


@ATTACKS.register("mla_lp")
class MLALP(JacobianAttack):
    paper = "Zhou, Yang, Guo, Zhang, Zhang & Chen, Generating Multi-label Adversarial Examples by Linear Programming, IJCNN 2020"
    url = "https://doi.org/10.1109/IJCNN48605.2020.9206614"
    needs_task = ("output_code",)
    Config = MLALPConfig
    norm = "linf"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        shape = x.shape[1:]
        x0, iters, out0, done = self.start(model, x, y, target)
        code = task.output_code(target).to(x.dtype)  # [B, n_out] in {-1,+1}
        best = x0.clone()
        best_bits = (torch.sign(out0) == code).sum(dim=1)
        kappa = torch.full_like(code, p.confidence)
        x_cur = x0.clone()
        active = (~done).nonzero().squeeze(1)

        def outputs(inp: Tensor) -> Tensor:
            return model(inp.view(-1, *shape))

        for _ in range(p.max_iters):
            if active.numel() == 0:
                break
            xa, ta = x_cur[active], code[active]
            z, jac = output_jacobian(outputs, xa, p.jacobian_chunk)
            loss = F.softplus(-ta * z)
            # dL_j/dx = -t_j sigmoid(-t_j z_j) dz_j/dx
            grad = (-ta * torch.sigmoid(-ta * z)).unsqueeze(2) * jac
            slack = F.softplus(-kappa[active]) - loss
            r, feasible = min_linf_step(grad, slack, -xa, 1 - xa)
            x_new = (xa + r).clamp(0, 1)
            iters[active] += feasible.to(iters.dtype)
            with torch.no_grad():
                out = outputs(x_new)
                hit = task.success(out, y[active], target[active]) & feasible
                bits = (torch.sign(out) == ta).sum(dim=1)
            better = feasible & (hit | (bits > best_bits[active]))
            best[active[better]] = x_new[better]
            best_bits[active[better]] = bits[better]
            x_cur[active] = torch.where(feasible[:, None], x_new, xa)
            wrong = torch.sign(out) != ta
            kappa[active] = kappa[active] + p.margin_step * wrong.to(kappa.dtype)
            active = active[feasible & ~hit]
        self.batch_stats["iters"] = iters
        return best.view_as(x)
