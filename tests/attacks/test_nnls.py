"""The batched NNLS / Wolfe-dual solver against scipy.optimize.nnls on the problems that broke it: scaled
(1e-8..1e10), ill-conditioned (cond 1e8, 1e12), rank-deficient and zero-row problems; and JMA's dual never
returning lam = 0 while a reachable constraint is violated."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from advlab.attacks.nnls import nnls, solve_min_norm_dual, solve_nonneg_qp


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _relative_gaps(g, h):
    x = nnls(g, h)
    assert (x >= 0).all()
    gaps = []
    for i in range(g.shape[0]):
        _, rnorm = scipy.optimize.nnls(g[i].numpy(), h[i].numpy(), maxiter=50 * g.shape[2])
        ours = float(torch.linalg.vector_norm(g[i] @ x[i] - h[i]))
        gaps.append((ours - rnorm) / max(rnorm, 1e-300))
    return np.array(gaps)


@pytest.mark.parametrize("scale", [1e-8, 1e-3, 1.0, 1e5, 1e10])
def test_nnls_is_scale_invariant(scale):
    gen = _gen(int(np.log10(scale)) + 20)
    g = torch.randn(32, 30, 10, generator=gen, dtype=torch.float64)
    h = torch.randn(32, 30, generator=gen, dtype=torch.float64)
    assert np.abs(_relative_gaps(g * scale, h * scale)).max() < 1e-9
    # the solution itself does not depend on a common scale of G and h
    torch.testing.assert_close(nnls(g * scale, h * scale), nnls(g, h), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cond,gap", [(1e8, 1e-9), (1e12, 1e-6)])
def test_nnls_ill_conditioned(cond, gap):
    gen = _gen(int(np.log10(cond)))
    u = torch.linalg.qr(torch.randn(32, 30, 10, generator=gen, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(32, 10, 10, generator=gen, dtype=torch.float64))[0]
    sv = torch.logspace(0, -np.log10(cond), 10, dtype=torch.float64)
    g = (u * sv) @ v.transpose(1, 2)
    h = torch.randn(32, 30, generator=gen, dtype=torch.float64)
    gaps = _relative_gaps(g, h)
    assert gaps.max() < gap  # never worse than scipy by more than rounding
    assert gaps.min() > -1e-6  # and not "better" than the optimum (a wrong objective)


def test_nnls_rank_deficient_and_zero_rows():
    gen = _gen(3)
    base = torch.randn(32, 30, 5, generator=gen, dtype=torch.float64)
    g = torch.cat([base, base[:, :, :3], 2 * base[:, :, 3:]], dim=2)  # exactly dependent columns (rank 5)
    h = torch.randn(32, 30, generator=gen, dtype=torch.float64)
    assert np.abs(_relative_gaps(g, h)).max() < 1e-9
    g2 = torch.randn(32, 30, 10, generator=gen, dtype=torch.float64)
    g2[:, :12] = 0  # zero rows: their h is irreducible residual
    assert np.abs(_relative_gaps(g2, h)).max() < 1e-9
    zero = torch.zeros(4, 6, 3, dtype=torch.float64)
    assert (nnls(zero, torch.randn(4, 6, dtype=torch.float64)) == 0).all()


@pytest.mark.parametrize("g_scale,b_scale", [(1e-8, 1.0), (1e2, 1e-6), (1e5, 1e-6), (1e10, 1.0)])
def test_dual_never_stops_at_zero_while_violated(g_scale, b_scale):
    """JMA's dual min_{lam>=0} 1/2 ||G^T lam||^2 + b^T lam: its primal delta = -G^T lam must satisfy
    G delta <= b (all constraints violated at delta = 0 here), in both forms; equals scipy's NNLS on the
    equivalent least squares min ||G^T lam - h|| with G h = -b."""
    gen = _gen(11)
    g = torch.randn(64, 8, 50, generator=gen, dtype=torch.float64) * g_scale  # Q = G G^T ~ g_scale^2
    b = -torch.rand(64, 8, generator=gen, dtype=torch.float64) * b_scale - 0.1 * b_scale
    for lam in (solve_min_norm_dual(g, b), solve_nonneg_qp(g @ g.transpose(1, 2), b)):
        assert (lam >= 0).all() and (lam.abs().sum(1) > 0).all()
        delta = -(lam.unsqueeze(1) @ g).squeeze(1)
        viol = ((g @ delta.unsqueeze(2)).squeeze(2) - b) / b.abs()
        assert viol.max() < 1e-8
    lam = solve_min_norm_dual(g, b)
    for i in range(8):
        h = -(torch.linalg.pinv(g[i]) @ b[i])
        ref, _ = scipy.optimize.nnls(g[i].t().numpy(), h.numpy())
        np.testing.assert_allclose(lam[i].numpy(), ref, rtol=1e-6, atol=1e-12 * np.abs(ref).max())


def test_dual_unreachable_constraint_is_left_out():
    """A constraint whose row of G is zero cannot be moved by any delta: the rest is still solved."""
    gen = _gen(5)
    g = torch.randn(4, 3, 20, generator=gen, dtype=torch.float64)
    g[:, 2] = 0
    b = -torch.ones(4, 3, dtype=torch.float64)
    lam = solve_min_norm_dual(g, b)
    assert torch.isfinite(lam).all() and (lam[:, 2] == 0).all()
    ref = solve_min_norm_dual(g[:, :2], b[:, :2])
    torch.testing.assert_close(lam[:, :2], ref)
    with pytest.raises(ValueError, match="G \\[B,k,m\\]"):
        solve_min_norm_dual(g[0], b[0])
