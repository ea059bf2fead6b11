"""Batched non-negative least squares on the device, in the one form JMA's Wolfe dual and plain NNLS share:

    min_{x >= 0}  1/2 ||M x - h||^2 + c^T x          (M [B, r, k], h [B, r], c [B, k])

- plain NNLS ``min_{x>=0} ||G x - h||`` is ``M = G``, ``c = 0`` (:func:`nnls`);
- JMA's dual ``min_{lam>=0} 1/2 ||G^T lam||^2 + b^T lam`` with ``G = A J`` is ``M = G^T``, ``h = 0``,
  ``c = b`` (:func:`solve_min_norm_dual`): the Gram matrix ``G G^T`` is never formed;
- a QP given by its matrix, ``min_{lam>=0} 1/2 lam^T Q lam + b^T lam``, is factored once (``Q = M^T M`` from
  its eigendecomposition) and solved the same way (:func:`solve_nonneg_qp`).

Solver: the Lawson-Hanson active-set method (the algorithm behind ``scipy.optimize.nnls``), run on the whole
batch at once. Every outer step moves, in each unfinished problem, the coordinate with the largest negative
gradient into the passive set P, solves the unconstrained problem on P, and steps back along the segment
(dropping coordinates that reach zero) when that solution leaves the orthant. The problem on P is solved from
a QR factorisation of the masked ``M`` (columns off P replaced by unit columns), never from ``M^T M``: the
error grows with ``cond(M)``, not its square. A tall ``M`` (JMA: one row per pixel) is first reduced by one
QR, ``M = Q0 R0``, to the same problem on ``R0`` and ``Q0^T h`` (``k x k``), so the iterations cost no more
than on the Gram matrix. Problems that are finished are masked; there is no per-sample
Python loop, and the number of outer steps is about the size of the largest support in the batch.

Stopping is scale-invariant: coordinate ``j`` may enter only if its negative gradient exceeds ``tol`` times
the size of the terms it is made of, ``(|M|^T |h - M x|)_j + |c_j|``; scaling ``M``, ``h``, ``c``
changes nothing. At ``x = 0`` that test is ``-c_j > tol |c_j|`` (dual form): no problem stops at
``lam = 0`` while a reachable constraint is violated. Coordinates whose column of ``M`` is zero (relative to
the problem's largest) are never moved: they either do not change the objective, or (``c_j < 0``, an
unreachable constraint of JMA's dual) make it unbounded below. Computed in float64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _solve_on_passive_set(
    m: Tensor, h: Tensor, c: Tensor, passive: Tensor, ridge: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``argmin_x 1/2 ||M_P x_P - h||^2 + c_P^T x_P`` with ``x = 0`` off the passive set P, for every problem.

    Columns off P are zeroed and ``k`` rows appended (unit rows off P, a ``ridge``-sized row on P that only
    guards exactly dependent columns), so one batched QR ``[M_P; D] = Q R`` serves all problems:
    ``R^T R x = M_P^T h - c_P``, i.e. ``x = R^{-1} (Q_1^T h - R^{-T} c_P)``. Also returns ``Q_1`` (``[B, r, k]``,
    an orthonormal basis of the span of ``M_P``) and the residual ``h - M x = h - Q_1 (Q_1^T h - R^{-T} c_P)``,
    accurate to ``eps ||h||`` even where ``x`` is huge (as in Lawson-Hanson's transformed right-hand side)."""
    f = passive.to(m.dtype)
    rows = m.shape[1]
    aug = torch.cat([m * f.unsqueeze(1), torch.diag_embed(1 - f + f * ridge[:, None])], dim=1)
    q, r = torch.linalg.qr(aug)  # reduced: q [B, r+k, k], r [B, k, k]
    qth = (q[:, :rows].transpose(1, 2) @ h.unsqueeze(2)).squeeze(2)
    rtc = torch.linalg.solve_triangular(r.transpose(1, 2), (c * f).unsqueeze(2), upper=False).squeeze(2)
    x = torch.linalg.solve_triangular(r, (qth - rtc).unsqueeze(2), upper=True).squeeze(2)
    basis = q[:, :rows]
    res = h - (basis @ (qth - rtc).unsqueeze(2)).squeeze(2)  # h - M_P x_P through the factor: no cancellation
    return x * f, basis, res


def nonneg_least_squares(
    m: Tensor,
    h: Tensor | None = None,
    c: Tensor | None = None,
    max_iter: int | None = None,
    tol: float = 1e-13,
) -> Tensor:
    """``argmin_{x >= 0} 1/2 ||M x - h||^2 + c^T x`` for each problem of the batch (see the module doc).

    ``m``: ``[B, r, k]``; ``h``: ``[B, r]`` (default 0); ``c``: ``[B, k]`` (default 0). Returned in float64.
    ``max_iter`` bounds the outer steps (default ``3k``, as scipy)."""
    if m.dim() != 3:
        raise ValueError(f"nonneg_least_squares: need M [B,r,k], got {tuple(m.shape)}")
    n, rows, k = m.shape
    m = m.double()
    h = torch.zeros(n, rows, dtype=m.dtype, device=m.device) if h is None else h.double()
    c = torch.zeros(n, k, dtype=m.dtype, device=m.device) if c is None else c.double()
    if h.shape != (n, rows) or c.shape != (n, k):
        raise ValueError(
            f"nonneg_least_squares: need h [B,r] and c [B,k] for M {tuple(m.shape)}, "
            f"got {tuple(h.shape)} and {tuple(c.shape)}"
        )
    if rows > k:  # one QR M = Q0 R0 first: the same problem on R0 (k x k) and Q0^T h, up to a constant
        q0, m = torch.linalg.qr(m)
        h = (q0.transpose(1, 2) @ h.unsqueeze(2)).squeeze(2)
        rows = k
    col_norm = torch.linalg.vector_norm(m, dim=1)  # [B, k]
    top = col_norm.amax(dim=1, keepdim=True)
    ridge = 1e-20 * top.squeeze(1).clamp(min=1e-150)
    abs_m = m.abs()
    x = torch.zeros_like(c)
    passive = torch.zeros_like(c, dtype=torch.bool)
    done = torch.zeros(n, dtype=torch.bool, device=m.device)
    batch = torch.arange(n, device=m.device)
    basis = torch.zeros_like(m)  # orthonormal basis of span(M_P), P empty at the start
    res = h.clone()  # h - M x
    for _ in range(max_iter or 3 * k):
        w = (m.transpose(1, 2) @ res.unsqueeze(2)).squeeze(2) - c  # negative gradient
        size = (abs_m.transpose(1, 2) @ res.abs().unsqueeze(2)).squeeze(2) + c.abs()  # its terms' scale
        # the part of each column outside span(M_P): what entering can still change (Lawson-Hanson's test)
        fresh = torch.linalg.vector_norm(m - basis @ (basis.transpose(1, 2) @ m), dim=1)
        cand = ~passive & (fresh > 1e-14 * col_norm) & (col_norm > 1e-13 * top) & (w > tol * size)
        done = done | ~cand.any(dim=1)
        if bool(done.all()):
            break
        # steepest decrease of the objective per coordinate: w_j / ||fresh part of M_j|| (scale-free pivot)
        gain = w / fresh.clamp(min=1e-300)
        j = torch.where(cand, gain, torch.full_like(w, float("-inf"))).argmax(dim=1)
        passive[batch[~done], j[~done]] = True
        for _ in range(k + 1):  # inner loop: restore feasibility
            s, basis, res_s = _solve_on_passive_set(m, h, c, passive, ridge)
            neg = passive & (s <= 0) & ~done[:, None]
            bad = neg.any(dim=1)
            take = (~bad & ~done)[:, None]
            x = torch.where(take, s, x)
            res = torch.where(take, res_s, res)
            if not bool(bad.any()):
                break
            ratio = torch.where(neg, x / (x - s).clamp(min=1e-300), torch.full_like(x, float("inf")))
            alpha = ratio.amin(dim=1, keepdim=True).clamp(0, 1)
            x = torch.where(bad[:, None], x + alpha * (s - x), x)
            blocking = (
                bad[:, None] & passive & ((x <= 1e-14 * x.abs().amax(dim=1, keepdim=True)) | (ratio <= alpha))
            )
            x = torch.where(blocking, torch.zeros_like(x), x)
            passive = passive & ~blocking
            res = torch.where(bad[:, None], h - (m @ x.unsqueeze(2)).squeeze(2), res)
    return x.clamp(min=0)


def nnls(g: Tensor, h: Tensor, **kwargs) -> Tensor:
    """Batched ``argmin_{x >= 0} ||G x - h||_2`` (``G [B, m, k]``, ``h [B, m]``), in ``h``'s dtype."""
    return nonneg_least_squares(g, h, None, **kwargs).to(h.dtype)


def solve_min_norm_dual(g: Tensor, b: Tensor, **kwargs) -> Tensor:
    """``argmin_{lam >= 0} 1/2 ||G^T lam||^2 + b^T lam`` (``G [B, k, m]``, ``b [B, k]``): the Wolfe dual of
    ``min ||delta|| s.t. G delta <= b``, whose solution is ``delta = -G^T lam``. In ``b``'s dtype."""
    if g.dim() != 3 or b.shape != g.shape[:2]:
        raise ValueError(
            f"solve_min_norm_dual: need G [B,k,m] and b [B,k], got {tuple(g.shape)} and {tuple(b.shape)}"
        )
    return nonneg_least_squares(g.transpose(1, 2), None, b, **kwargs).to(b.dtype)


def solve_nonneg_qp(q: Tensor, b: Tensor, **kwargs) -> Tensor:
    """``argmin_{lam >= 0} 1/2 lam^T Q lam + b^T lam`` (``Q [B, k, k]`` symmetric PSD, ``b [B, k]``): ``Q`` is
    factored as ``M^T M`` (``M = diag(sqrt(e)) V^T`` from ``Q = V diag(e) V^T``, negative rounding-level
    eigenvalues clipped to 0). In ``b``'s dtype."""
    if q.dim() != 3 or q.shape[1] != q.shape[2] or b.shape != q.shape[:2]:
        raise ValueError(
            f"solve_nonneg_qp: need Q [B,k,k] and b [B,k], got {tuple(q.shape)} and {tuple(b.shape)}"
        )
    q = q.double()
    e, v = torch.linalg.eigh((q + q.transpose(1, 2)) / 2)
    m = e.clamp(min=0).sqrt().unsqueeze(2) * v.transpose(1, 2)
    return nonneg_least_squares(m, None, b, **kwargs).to(b.dtype)
