"""JMA baselines MLA-LP and the ECOC attack, checked against definitions: MLA-LP's step is the LP optimum
(scipy.optimize.linprog on an independently written formulation, and a closed form), targets are reached on
small models, the image box holds."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from jma_helpers import Linear, attack, task
from torch import nn

from advlab.attacks import ATTACKS
from advlab.attacks.ecoc_attack import ECOCAttack
from advlab.attacks.mla_lp import MLALP, min_linf_step
from advlab.errors import ConfigError


def softplus(v):
    return np.logaddexp(0.0, v)


def reference_lp_linf(w, c, x, t, kappa):
    """Independent statement of MLA-LP's LP for f(x) = W x + c: per-label BCE losses
    L_j = log(1 + exp(-t_j z_j)), gradient g_j = -t_j sigma(-t_j z_j) w_j; minimise s over (r, s) with
    L + G r <= log(1 + exp(-kappa)), |r_i| <= s, 0 <= x + r <= 1. Written with dense matrices and the
    variables ordered (s, r)."""
    z = w @ x + c
    sig = 1.0 / (1.0 + np.exp(t * z))
    g = (-t * sig)[:, None] * w
    slack = softplus(-kappa) - softplus(-t * z)
    m = x.size
    a_ub = np.vstack(
        [
            np.hstack([np.zeros((len(t), 1)), g]),
            np.hstack([-np.ones((m, 1)), np.eye(m)]),
            np.hstack([-np.ones((m, 1)), -np.eye(m)]),
        ]
    )
    b_ub = np.concatenate([slack, np.zeros(2 * m)])
    cost = np.r_[1.0, np.zeros(m)]
    bounds = [(None, None)] + [(-xi, 1 - xi) for xi in x]
    res = scipy.optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    assert res.status == 0
    return res.fun, g, slack


def test_registered_and_validated():
    assert ATTACKS.get("mla_lp") is MLALP and ATTACKS.get("ecoc_attack") is ECOCAttack
    t = task("multilabel", 4)
    with pytest.raises(ConfigError, match="max_iters"):
        attack(MLALP, t, max_iters=0)
    with pytest.raises(ConfigError, match="eta"):
        attack(ECOCAttack, t, eta=0.0)
    with pytest.raises(ConfigError, match="targeted"):
        attack(MLALP, t, targeted=False)


def test_min_linf_step_single_constraint_closed_form():
    """One constraint g.r <= h < 0 without an active box: the minimal Linf step is |h| / ||g||_1, along
    -sign(g)."""
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(5, 1, 20, generator=gen, dtype=torch.float64)
    h = -torch.rand(5, 1, generator=gen, dtype=torch.float64) * 0.1
    r, ok = min_linf_step(g, h, torch.full((5, 20), -10.0), torch.full((5, 20), 10.0))
    assert ok.all()
    expect = h.abs().squeeze(1) / g.abs().sum(dim=(1, 2))
    np.testing.assert_allclose(r.abs().amax(dim=1).numpy(), expect.numpy(), rtol=1e-7)
    assert ((g @ r.unsqueeze(2)).squeeze(2) <= h + 1e-9).all()
    # infeasible: the box forbids the needed step
    r_bad, ok_bad = min_linf_step(g, h - 1e3, torch.zeros(5, 20), torch.zeros(5, 20) + 1e-3)
    assert not ok_bad.any() and (r_bad == 0).all()


def test_mla_lp_step_is_the_lp_optimum_on_a_linear_model(monkeypatch):
    """One MLA-LP iteration on f(x) = W x + c: the LP the attack builds (loss gradients, slacks) is the one
    written independently here, its step's Linf norm equals the linprog optimum, the step satisfies the
    linearised loss constraints, and the returned image is either clean or clip(x + step)."""
    import advlab.attacks.mla_lp as mla_lp

    seen = {}

    def recording(grad, slack, lower, upper):
        r, ok = min_linf_step(grad, slack, lower, upper)
        seen.update(grad=grad, slack=slack, r=r, ok=ok)
        return r, ok

    monkeypatch.setattr(mla_lp, "min_linf_step", recording)
    gen = torch.Generator().manual_seed(3)
    n, m, b = 5, 24, 6
    w = torch.randn(n, m, generator=gen, dtype=torch.float64) * 0.5
    c = torch.randn(n, generator=gen, dtype=torch.float64) * 0.2
    model = Linear(w, c).eval()
    x = torch.rand(b, 1, 4, 6, generator=gen, dtype=torch.float64) * 0.6 + 0.2
    y = (model(x) > 0).double()
    t = task("multilabel", n, shape=(1, 4, 6))
    target = y.clone()
    target[:, 0] = 1 - target[:, 0]
    target[:, 3] = 1 - target[:, 3]
    mla = attack(MLALP, t, max_iters=1, confidence=0.5)
    x_adv = mla(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (mla.batch_stats["iters"] == 1).all() and seen["ok"].all()
    for i in range(b):
        tt = (target[i] * 2 - 1).numpy()
        xi = x[i].flatten().numpy()
        ref, g, slack = reference_lp_linf(w.numpy(), c.numpy(), xi, tt, 0.5)
        np.testing.assert_allclose(seen["grad"][i].numpy(), g, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(seen["slack"][i].numpy(), slack, rtol=1e-10, atol=1e-12)
        r = seen["r"][i].numpy()
        assert np.abs(r).max() == pytest.approx(ref, rel=1e-6, abs=1e-10)
        assert (g @ r <= slack + 1e-7).all()
        assert (xi + r >= -1e-9).all() and (xi + r <= 1 + 1e-9).all()
        out = x_adv[i].flatten().numpy()
        assert np.allclose(out, xi) or np.allclose(out, np.clip(xi + r, 0, 1))


def test_mla_lp_reaches_multilabel_targets_on_a_small_mlp():
    torch.manual_seed(0)
    n = 8
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.Tanh(), nn.Linear(32, n)).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    x = torch.rand(12, 3, 4, 4)
    y = (model(x) > 0).float()
    t = task("multilabel", n, shape=(3, 4, 4), flip_bits=2)
    target = t.sample_targets(y, torch.Generator().manual_seed(0))
    mla = attack(MLALP, t, max_iters=30)
    x_adv = mla(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ok = t.success(model(x_adv), y, target)
    assert ok.float().mean() >= 0.8
    iters = mla.batch_stats["iters"]
    assert (iters[ok] >= 1).all() and (iters <= 30).all()
    # an already-reached target costs nothing and leaves the image unchanged
    x_same = mla(model, x[:2], y[:2] * 0 + (1 - y[:2]), y[:2])
    assert torch.equal(x_same, x[:2]) and (mla.batch_stats["iters"] == 0).all()


def ecoc_setup():
    torch.manual_seed(1)
    classes, length = 4, 8
    t = task("ecoc", classes, shape=(1, 8, 8), code_length=length)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, length)).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    x = torch.rand(10, 1, 8, 8)
    y = t.predict(model(x))
    target = t.sample_targets(y, torch.Generator().manual_seed(0))
    return t, model, x, y, target


def test_ecoc_attack_reaches_targets_and_penalty_is_worst_bit():
    t, model, x, y, target = ecoc_setup()
    atk = attack(ECOCAttack, t, steps=200, binary_search_steps=4, initial_const=1.0, lr=0.05, eta=0.1)
    # the penalty is max(0, eta - min_i c_ti s_i), by hand on a fixed output
    out = torch.tensor([[0.5, -0.2, 0.3, 1.0, -1.0, 0.05, 0.2, -0.7]])
    code = t.output_code(torch.tensor([2]))
    expect = max(0.0, 0.1 - float((code * out).min()))
    assert float(atk.penalty(out, code)) == pytest.approx(expect)
    x_adv = atk(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ok = t.success(model(x_adv), y, target)
    assert ok.float().mean() >= 0.9
    assert (atk.batch_stats["iters"][ok] >= 1).all()
    # the returned image is the smallest-L2 success: the attack may stop before every bit agrees
    assert (t.predict(model(x_adv[ok])) == target[ok]).all()
    assert ((x_adv - x).flatten(1).norm(dim=1)[ok] > 0).all()


def test_mla_lp_on_ecoc_element_wise():
    """rho = 0, element-wise: MLA-LP drives every bit to the target codeword and succeeds by the task's
    decoding."""
    t, model, x, y, target = ecoc_setup()
    mla = attack(MLALP, t, max_iters=60)
    x_adv = mla(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ok = t.success(model(x_adv), y, target)
    assert ok.float().mean() >= 0.8
    assert (mla.batch_stats["iters"][ok] >= 1).all()
