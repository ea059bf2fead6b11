"""Batched non-negative quadratic programs on the device, as JMA's Wolfe dual needs them:

    min_{lam >= 0}  1/2 lam^T Q lam + b^T lam          (Q [B, k, k] symmetric PSD, b [B, k])

which is the NNLS problem ``min_{lam>=0} ||G lam - h||^2`` for ``Q = G^T G`` and ``b = -G^T h``.

Solver: the Lawson-Hanson active-set method (the algorithm behind ``scipy.optimize.nnls``), run on the whole
batch at once: every outer step moves, in each unfinished problem, the coordinate with the largest negative
gradient into the passive set, solves the equality-constrained problem on that set with one batched linear
solve, and steps back along the segment (dropping coordinates that hit zero) when the solution leaves the
orthant. Problems that are finished are masked, so there is no per-sample Python loop; the number of outer
steps is about the size of the largest support in the batch. Computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _solve_on_free_set(q: Tensor, b: Tensor, free: Tensor, ridge: Tensor) -> Tensor:
    """Solve ``Q_FF lam_F = -b_F`` with ``lam = 0`` off the free set F (batched, masked to fixed size)."""
    f = free.to(q.dtype)
    m = q * f.unsqueeze(2) * f.unsqueeze(1)
    m = m + torch.diag_embed(1 - f) + torch.diag_embed(f * ridge[:, None])
    return torch.linalg.solve(m, (-b * f).unsqueeze(2)).squeeze(2) * f


def solve_nonneg_qp(q: Tensor, b: Tensor, max_iter: int | None = None, tol: float = 1e-10) -> Tensor:
    """``argmin_{lam >= 0} 1/2 lam^T Q lam + b^T lam`` for each problem of the batch (see module doc).

    ``q``: ``[B, k, k]``, ``b``: ``[B, k]``; returned in ``b``'s dtype. ``max_iter`` bounds the outer steps
    (default ``3k``, as scipy)."""
    if q.dim() != 3 or q.shape[1] != q.shape[2] or b.shape != q.shape[:2]:
        raise ValueError(
            f"solve_nonneg_qp: need Q [B,k,k] and b [B,k], got {tuple(q.shape)} and {tuple(b.shape)}"
        )
    out_dtype = b.dtype
    q = q.double()
    q = (q + q.transpose(1, 2)) / 2
    b = b.double()
    n, k = b.shape
    diag = q.diagonal(dim1=1, dim2=2)
    ridge = 1e-14 * diag.abs().amax(dim=1).clamp(min=1e-300)  # guards exactly singular passive blocks
    # gradient tolerance relative to the problem's scale
    gtol = tol * (b.abs().amax(dim=1) + diag.abs().amax(dim=1)).clamp(min=1e-300)[:, None]
    lam = torch.zeros_like(b)
    passive = torch.zeros_like(b, dtype=torch.bool)
    done = torch.zeros(n, dtype=torch.bool, device=b.device)
    rows = torch.arange(n, device=b.device)
    for _ in range(max_iter or 3 * k):
        w = -((q @ lam.unsqueeze(2)).squeeze(2) + b)  # negative gradient
        cand = ~passive & (w > gtol)
        done = done | ~cand.any(dim=1)
        if bool(done.all()):
            break
        j = torch.where(cand, w, torch.full_like(w, float("-inf"))).argmax(dim=1)
        passive[rows[~done], j[~done]] = True
        for _ in range(k + 1):  # inner loop: restore feasibility
            s = _solve_on_free_set(q, b, passive, ridge)
            neg = passive & (s <= 0) & ~done[:, None]
            bad = neg.any(dim=1)
            lam = torch.where((~bad & ~done)[:, None], s, lam)
            if not bool(bad.any()):
                break
            ratio = torch.where(neg, lam / (lam - s).clamp(min=1e-300), torch.full_like(lam, float("inf")))
            alpha = ratio.amin(dim=1, keepdim=True).clamp(0, 1)
            stepped = lam + alpha * (s - lam)
            lam = torch.where(bad[:, None], stepped, lam)
            blocking = (
                bad[:, None]
                & passive
                & ((lam <= 1e-14 * lam.abs().amax(dim=1, keepdim=True)) | (ratio <= alpha))
            )
            lam = torch.where(blocking, torch.zeros_like(lam), lam)
            passive = passive & ~blocking
    return lam.clamp(min=0).to(out_dtype)


def nnls(g: Tensor, h: Tensor, **kwargs) -> Tensor:
    """Batched ``argmin_{x >= 0} ||G x - h||_2`` (``G [B, m, k]``, ``h [B, m]``), via :func:`solve_nonneg_qp`."""
    gt = g.double().transpose(1, 2)
    return solve_nonneg_qp(gt @ g.double(), -(gt @ h.double().unsqueeze(2)).squeeze(2), **kwargs).to(h.dtype)
