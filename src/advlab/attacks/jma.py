"""JMA: Jacobian-induced Mahalanobis distance attack (Guo, Tondi & Barni), Algorithm 1 of the paper.

At the current point ``x`` with decision scores ``f = f(x)`` (the logits, or whatever space the task decodes
linearly in) and Jacobian ``J = df/dx`` (``n x m``), the task gives the target region as linear constraints
``A d <= b`` on an output displacement ``d`` (one-hot / ECOC: one row ``c_i - c_t`` per class ``i != t``;
multi-label: ``A = -diag(t)``, ``t`` in {-1,+1}). Under the first-order model ``d = J delta`` the smallest
``||delta||_2`` reaching the region is ``delta* = -J^T A^T lam*`` with

    lam* = argmin_{lam >= 0} 1/2 lam^T (A J J^T A^T) lam + b^T lam      (Wolfe dual, an NNLS problem),

solved batched on the device (:mod:`advlab.attacks.nnls`). If ``clip(x + delta*)`` is decoded as the target,
a binary search (``binary_search_steps``, 6 in the paper) on the segment from the original image to it finds
the smallest successful scale and the attack stops; otherwise the point moves by ``step`` (L2) along
``delta*`` (``x <- clip(x + step delta*/||delta*||)``) and the Jacobian is recomputed, for at most
``max_iters`` iterations. Iterations are counted as in the paper: ``n_it = (v - 1) + n_bs`` for an example
that succeeds in the ``v``-th loop, ``max_iters`` for one that never does, 0 for one whose clean output is
already the target.

Two numerical refinements (on by default; ``boundary_margin=0, box_iters=0`` is the plain algorithm) make
the step the optimum of the paper's problem on a linear model, box included: the linearised constraints ask
a margin of ``boundary_margin`` of the problem's own scale (at confidence 0 the optimum sits on the decision
boundary, where a float32 victim decides either way), and where ``x + delta*`` leaves ``[0, 1]`` the step
solves the box-constrained problem instead of being clipped (:func:`box_constrained_step`). Success is
still decided on the final clipped image.

The Jacobian of all ``n`` outputs is one forward pass and ``n`` vectorised backward passes (``torch.func``
``vjp`` + ``vmap``), for the whole batch at once (examples are independent in eval mode). Examples that have
succeeded leave the batch.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import JMAConfig  # noqa: F401
from advlab.attacks.nnls import solve_min_norm_dual


def math_attention():
    """Scaled-dot-product attention through its plain matmul/softmax form: the fused (flash / efficient)
    kernels' backward has no vmap batching rule, so ``vmap`` would run the ``n`` backward passes of a
    transformer victim (ViT, Swin) one after the other. Same values; a no-op context before torch 2.3."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover (torch 2.2)
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def output_jacobian(fn, x: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """``(fn(x) [B, n], J [B, n, m])`` for a batch of independent examples: one forward pass, ``n`` backward
    passes vectorised with ``torch.func.vmap`` (``chunk`` of them at a time)."""
    with math_attention():
        out, vjp_fn = torch.func.vjp(fn, x)
        n = out.shape[1]
        basis = torch.eye(n, device=x.device, dtype=out.dtype)[:, None, :].expand(n, x.shape[0], n)
        (jac,) = torch.func.vmap(vjp_fn, chunk_size=chunk)(basis)  # [n, B, *x.shape[1:]]
    return out.detach(), jac.flatten(2).transpose(0, 1)


def min_norm_step(
    task,
    features: Tensor,
    jac: Tensor,
    target: Tensor,
    confidence: float,
    x: Tensor | None = None,
    boundary_margin: float = 0.0,
    box_iters: int = 20,
) -> Tensor:
    """JMA's linearised optimum (``[B, m]``): the smallest ``delta`` with ``A J delta <= b`` for the task's
    target constraints, ``delta* = -J^T A^T lam*`` from the Wolfe dual, solved from ``G = A J`` without
    forming ``G G^T`` (:func:`advlab.attacks.nnls.solve_min_norm_dual`).

    ``boundary_margin`` asks the linearised step a margin of at least that fraction of the problem's own scale
    (the largest ``|b|`` and ``|f|``; constraints are tightened by what ``confidence`` does not already give):
    with ``confidence = 0`` the exact optimum lies on the decision boundary, where the float32 victim decides
    either way; the margin puts it just inside the target region.

    With ``x`` (the flattened current images, ``[B, m]``), where ``x + delta*`` leaves the ``[0, 1]`` box the
    box-constrained problem ``min ||delta|| s.t. A J delta <= b, -x <= delta <= 1 - x`` is solved instead by a
    primal-dual active-set iteration (at most ``box_iters`` rounds): pixels whose unconstrained value leaves
    the box are fixed at the bound, the dual is re-solved on the free pixels with the fixed ones' effect moved
    into ``b``, and ``delta = clip(-G^T lam, -x, 1 - x)`` until the set of fixed pixels stops changing. Where it
    does not converge, or the box makes the linearised target unreachable, the plain step is kept."""
    a, b = task.target_constraints(features, target, confidence)
    a64, b64 = a.double(), b.double()
    if boundary_margin > 0:
        scale = torch.maximum(b64.abs().amax(dim=1), features.double().abs().amax(dim=1))
        b64 = b64 - (boundary_margin * scale - confidence).clamp(min=0)[:, None]
    g = a64 @ jac.double()  # G = A J, [B, k, m]
    lam = solve_min_norm_dual(g, b64)
    delta = -(lam.unsqueeze(1) @ g).squeeze(1)
    if x is not None:
        lo, hi = -x.double(), 1 - x.double()
        leaves = ((delta < lo) | (delta > hi)).any(dim=1)
        if bool(leaves.any()):
            idx = leaves.nonzero().squeeze(1)
            boxed = box_constrained_step(g[idx], b64[idx], lo[idx], hi[idx], delta[idx], box_iters)
            delta[idx] = boxed
    return delta.to(jac.dtype)


def box_constrained_step(
    g: Tensor, b: Tensor, lo: Tensor, hi: Tensor, free_step: Tensor, iters: int
) -> Tensor:
    """``argmin ||delta|| s.t. G delta <= b, lo <= delta <= hi`` by the primal-dual active-set iteration of
    :func:`min_norm_step`; examples that do not converge to a feasible point keep ``free_step``."""
    v = free_step
    fixed_lo, fixed_hi = v <= lo, v >= hi
    converged = torch.zeros(g.shape[0], dtype=torch.bool, device=g.device)
    delta = v.clamp(lo, hi)
    for _ in range(iters):
        free = ~(fixed_lo | fixed_hi)
        pinned = torch.where(fixed_lo, lo, torch.where(fixed_hi, hi, torch.zeros_like(lo)))
        rest = b - (g @ pinned.unsqueeze(2)).squeeze(2)
        lam = solve_min_norm_dual(g * free.unsqueeze(1), rest)
        v = -(lam.unsqueeze(1) @ g).squeeze(1)
        new_lo, new_hi = v <= lo, v >= hi
        same = ((new_lo == fixed_lo) & (new_hi == fixed_hi)).all(dim=1)
        delta = torch.where(converged[:, None], delta, torch.maximum(torch.minimum(v, hi), lo))
        converged = converged | same
        if bool(converged.all()):
            break
        fixed_lo, fixed_hi = new_lo, new_hi
    reach = (g @ delta.unsqueeze(2)).squeeze(2) <= b + 1e-9 * b.abs().amax(dim=1, keepdim=True).clamp(
        min=1e-300
    )
    ok = converged & reach.all(dim=1) & torch.isfinite(delta).all(dim=1)
    return torch.where(ok[:, None], delta, free_step)


class JacobianAttack(Attack):
    """What the Jacobian-based attacks (JMA, MLA-LP) share: the torch.func warm-up and the start of a batch."""

    def prepare(self, model: nn.Module, data) -> None:
        """torch.func imports torch._dynamo on its first use (seconds on a busy CPU): do it here, once, so the
        one-time import does not count as attack time."""
        output_jacobian(lambda v: v * 2, torch.zeros(1, 2))

    def start(
        self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Checks the targets; returns the flattened images ``[B, m]``, zero iteration counts, the clean outputs
        and whether they already reach the target."""
        assert target is not None
        self.task.check_target(y, target)
        with torch.no_grad():
            out = model(x)
            done = self.task.success(out, y, target)
        return x.flatten(1), torch.zeros(x.shape[0], device=x.device), out, done


@ATTACKS.register("jma")
class JMA(JacobianAttack):
    paper = (
        "Tondi, Guo, Pancino & Barni, JMA: a General Algorithm to Craft Nearly Optimal Targeted Adversarial "
        "Examples, arXiv 2024"
    )
    url = "https://arxiv.org/abs/2401.01199"
    needs_task = ("target_constraints",)
    Config = JMAConfig
    norm = "l2"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        shape = x.shape[1:]
        x0, iters, _, already = self.start(model, x, y, target)
        x_adv = x0.clone()
        x_cur = x0.clone()
        active = (~already).nonzero().squeeze(1)

        def feats(inp: Tensor) -> Tensor:
            return task.decision_features(model(inp.view(-1, *shape)))

        for v in range(1, p.max_iters + 1):
            if active.numel() == 0:
                break
            xa, ya, ta = x_cur[active], y[active], target[active]
            f, jac = output_jacobian(feats, xa, p.jacobian_chunk)
            delta = min_norm_step(
                task, f, jac, ta, p.confidence, xa if p.box_iters else None, p.boundary_margin, p.box_iters
            )
            x_try = (xa + delta).clamp(0, 1)
            with torch.no_grad():
                hit = task.success(model(x_try.view(-1, *shape)), ya, ta)
            x_adv[active] = x_try  # failures end at their last linear step
            if bool(hit.any()):
                idx = active[hit]
                x_adv[idx] = self._binary_search(model, x0[idx], x_try[hit], y[idx], target[idx], shape)
                iters[idx] = v - 1 + p.binary_search_steps
            miss = ~hit
            step_dir = delta[miss] / delta[miss].norm(dim=1, keepdim=True).clamp(min=1e-12)
            x_cur[active[miss]] = (xa[miss] + p.step * step_dir).clamp(0, 1)
            active = active[miss]
        iters[active] = p.max_iters
        self.batch_stats["iters"] = iters
        return x_adv.view_as(x)

    @torch.no_grad()
    def _binary_search(
        self, model: nn.Module, x0: Tensor, x_hit: Tensor, y: Tensor, target: Tensor, shape
    ) -> Tensor:
        """Smallest successful scale ``s`` in [0, 1] of ``x0 + s (x_hit - x0)`` (``x_hit`` succeeds)."""
        lo = torch.zeros(x0.shape[0], 1, device=x0.device)
        hi = torch.ones_like(lo)
        d = x_hit - x0
        for _ in range(self.params.binary_search_steps):
            mid = (lo + hi) / 2
            ok = self.task.success(model((x0 + mid * d).view(-1, *shape)), y, target)[:, None]
            hi = torch.where(ok, mid, hi)
            lo = torch.where(ok, lo, mid)
        return x0 + hi * d
