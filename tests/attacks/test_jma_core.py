"""JMA issue: NNLS solver, JMA's linearised step, ECOC/multi-label tasks, targets and attack metrics, checked
against definitions (scipy, closed forms, hand-computed values)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from jma_helpers import Linear, attack, task
from torch import nn

from advlab.attacks.jma import JMA, min_norm_step, output_jacobian
from advlab.attacks.ml_cw import MLCW
from advlab.attacks.nnls import nnls, solve_nonneg_qp
from advlab.errors import ConfigError
from advlab.metrics.distortion import image_quality
from advlab.metrics.meter import Meter
from advlab.registry import parse_config
from advlab.tasks.ecoc import hadamard, hadamard_codebook
from advlab.tasks.multilabel import MultiLabelMeter, asymmetric_loss


# ---- NNLS ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,k", [(30, 10), (40, 20), (20, 20), (8, 16), (3, 12)])
def test_nnls_matches_scipy(m, k):
    gen = torch.Generator().manual_seed(m * 100 + k)
    g = torch.randn(64, m, k, generator=gen, dtype=torch.float64)
    h = torch.randn(64, m, generator=gen, dtype=torch.float64)
    x = nnls(g, h)
    assert (x >= 0).all()
    for i in range(g.shape[0]):
        ref, rnorm = scipy.optimize.nnls(g[i].numpy(), h[i].numpy())
        ours = float(torch.linalg.vector_norm(g[i] @ x[i] - h[i]))
        assert ours == pytest.approx(rnorm, rel=1e-7, abs=1e-9)
        if m >= k:  # full column rank: the minimiser is unique
            np.testing.assert_allclose(x[i].numpy(), ref, atol=1e-7)


def test_nonneg_qp_kkt_and_trivial_cases():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(32, 6, 6, generator=gen, dtype=torch.float64)
    q = a @ a.transpose(1, 2) + 0.1 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(32, 6, generator=gen, dtype=torch.float64)
    lam = solve_nonneg_qp(q, b)
    grad = (q @ lam.unsqueeze(2)).squeeze(2) + b
    assert (lam >= 0).all() and (grad >= -1e-9).all() and (lam * grad).abs().max() < 1e-9
    # b >= 0: lam = 0 is optimal (the constraints are already satisfied, JMA's step is zero)
    assert solve_nonneg_qp(q, b.abs()).abs().max() == 0
    with pytest.raises(ValueError, match="Q \\[B,k,k\\]"):
        solve_nonneg_qp(q[0], b[0])


# ---- JMA's step on linear models ---------------------------------------------------------------------
def test_jma_one_shot_minimal_norm_on_linear_multilabel_model():
    """Orthonormal rows: the minimal-norm perturbation moving label j to t_j*conf is W^T d with
    d_j = t_j * max(0, conf - t_j z_j); JMA must take exactly that step and stop after one iteration."""
    n, m, conf = 6, 64, 0.3
    gen = torch.Generator().manual_seed(0)
    w = torch.linalg.qr(torch.randn(m, n, generator=gen))[0].t().contiguous()  # orthonormal rows
    model = Linear(w, -0.5 * w.sum(1)).eval()  # z = W (x - 0.5)
    x = 0.5 + 0.05 * torch.randn(4, 1, 8, 8, generator=gen)
    z = model(x).detach()
    y = (z > 0).float()
    t = task("multilabel", n, shape=(1, 8, 8), flip_bits=3)
    target = t.sample_targets(y, torch.Generator().manual_seed(3))
    s = t.signs(target)
    d = s * torch.relu(conf - s * z)
    closed = (d @ w).view_as(x)
    assert ((x + closed) > 0).all() and ((x + closed) < 1).all()  # no clipping involved
    jma = attack(JMA, t, confidence=conf, binary_search_steps=0, max_iters=5)
    x_adv = jma(model, x, y, target)
    assert torch.allclose(x_adv - x, closed, atol=1e-5)
    assert t.success(model(x_adv), y, target).all()
    assert (jma.batch_stats["iters"] == 0).all()  # n_it = (v - 1) + n_bs with v = 1, n_bs = 0
    # with the binary search: still one loop, n_it = n_bs, and the perturbation is a shrunk copy of the step
    jma6 = attack(JMA, t, confidence=conf, binary_search_steps=6)
    x6 = jma6(model, x, y, target)
    assert (jma6.batch_stats["iters"] == 6).all()
    assert t.success(model(x6), y, target).all()
    ratio = (x6 - x).flatten(1).norm(dim=1) / closed.flatten(1).norm(dim=1)
    # the smallest successful scale of the step on this linear model, and the 6-step bisection's resolution
    dz = closed.flatten(1) @ w.t()
    need = torch.where(s * z < 0, -z / dz, torch.zeros_like(z)).amax(dim=1)
    assert ((ratio >= need - 1e-6) & (ratio <= need + 1 / 2**6 + 1e-6)).all()
    cos = torch.nn.functional.cosine_similarity((x6 - x).flatten(1), closed.flatten(1))
    assert (cos > 1 - 1e-5).all()


@pytest.mark.parametrize("name,n_out,n_cls", [("ecoc", 8, 5), ("classification", 6, 6), ("multilabel", 5, 5)])
def test_jma_step_solves_the_linearised_problem(name, n_out, n_cls):
    """For a general linear model the step must equal argmin ||delta|| s.t. A W delta <= b (SLSQP oracle)."""
    m, conf = 10, 0.2
    gen = torch.Generator().manual_seed(7)
    w = torch.randn(n_out, m, generator=gen, dtype=torch.float64)
    x = torch.rand(3, m, generator=gen, dtype=torch.float64)
    extra = {"code_length": n_out} if name == "ecoc" else {}
    t = task(name, n_cls, shape=(1, 1, m), **extra)
    z = x @ w.t()
    y = t.predict(z)
    target = t.sample_targets(y, torch.Generator().manual_seed(1))
    feats, jac = output_jacobian(lambda v: v @ w.t(), x)
    assert torch.allclose(jac, w.expand(3, -1, -1))
    delta = min_norm_step(t, feats, jac, target, conf)
    a, b = t.target_constraints(z, target, conf)
    for i in range(3):
        ai, bi = (a[i] @ w).numpy(), b[i].numpy()
        res = scipy.optimize.minimize(
            lambda d: 0.5 * d @ d,
            np.zeros(m),
            jac=lambda d: d,
            constraints=[
                {"type": "ineq", "fun": lambda d, ai=ai, bi=bi: bi - ai @ d, "jac": lambda d, ai=ai: -ai}
            ],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        assert res.success
        np.testing.assert_allclose(delta[i].numpy(), res.x, atol=1e-5)
        # the linearised model reaches the target with the asked margin
        assert (a[i] @ (w @ delta[i]) <= b[i] + 1e-8).all()


def test_jma_and_mlcw_reach_targets_on_a_small_mlp():
    torch.manual_seed(0)
    n, m = 8, 48
    model = nn.Sequential(nn.Flatten(), nn.Linear(m, 32), nn.Tanh(), nn.Linear(32, n)).eval()
    x = torch.rand(16, 3, 4, 4)
    y = (model(x) > 0).float().detach()
    t = task("multilabel", n, shape=(3, 4, 4), flip_bits=2)
    target = t.sample_targets(y, torch.Generator().manual_seed(0))
    jma = attack(JMA, t, step=0.1, max_iters=50)
    x_adv = jma(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert t.success(model(x_adv), y, target).float().mean() >= 0.9
    cw = attack(MLCW, t, steps=200, binary_search_steps=3, initial_const=1.0, lr=0.05)
    x_cw = cw(model, x, y, target)
    assert x_cw.min() >= 0 and x_cw.max() <= 1
    ok = t.success(model(x_cw), y, target)
    assert ok.float().mean() >= 0.5
    assert (cw.batch_stats["iters"] >= 1).all()


# ---- ECOC ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [4, 16, 32])
def test_hadamard_codebook_properties(length):
    h = hadamard(length)
    assert torch.equal(h @ h.t(), length * torch.eye(length))
    assert set(h.unique().tolist()) == {-1.0, 1.0}
    classes = min(10, length - 1)
    code = hadamard_codebook(classes, length)
    assert code.shape == (classes, length)
    assert not (code == 1).all(dim=1).any()  # the uninformative all-ones row is skipped when there is room
    dist = (code[:, None, :] != code[None, :, :]).sum(-1)
    off = dist[~torch.eye(classes, dtype=torch.bool)]
    assert (off == length // 2).all()  # every pair of codewords differs in exactly half the bits
    assert hadamard_codebook(length, length).shape == (length, length)


def test_hadamard_bad_lengths():
    with pytest.raises(ConfigError, match="power of two"):
        hadamard(12)
    with pytest.raises(ConfigError, match="code_length >= 16"):
        hadamard_codebook(10, 8)


@pytest.mark.parametrize("decode", ["logits", "tanh"])
def test_ecoc_decoding(decode):
    t = task("ecoc", 10, code_length=16, decode=decode)
    code = t.codebook
    assert torch.equal(t.predict(3.0 * code), torch.arange(10))
    noisy = 3.0 * code.clone()
    noisy[:, :3] *= -1  # 3 wrong bits < half the distance (8/2): still decoded correctly
    assert torch.equal(t.predict(noisy), torch.arange(10))
    # hand-computed: decision = argmax_k s.c_k
    z = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    s = torch.tanh(z) if decode == "tanh" else z
    assert torch.equal(t.predict(z), (s @ code.t()).argmax(1))
    # margin negative exactly when the target is decoded
    target = (t.predict(z) + 1) % 10
    assert torch.equal(t.margin(3 * code[target], None, target) < 0, torch.ones(5, dtype=torch.bool))
    assert (t.margin(z, None, target) > 0).all()
    assert t.num_outputs == 16
    # hinge loss of a saturated correct output is ~0, of an inverted one ~2 per bit
    y = torch.arange(10)
    assert t.loss(20 * code, y) < 1e-3
    assert t.loss(-20 * code, y) == pytest.approx(2 * 16, rel=1e-3)


# ---- targets, metrics, bad input -----------------------------------------------------------------------
def test_multilabel_targets_and_validation():
    t = task("multilabel", 10, flip_bits=4)
    y = (torch.rand(50, 10, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    t1 = t.sample_targets(y, torch.Generator().manual_seed(5))
    t2 = t.sample_targets(y, torch.Generator().manual_seed(5))
    assert torch.equal(t1, t2)  # seeded
    assert ((t1 != y).sum(1) == 4).all()  # exactly k bits flipped
    with pytest.raises(ConfigError, match="flip_bits"):
        task("multilabel", 10, flip_bits=11)
    tz = task("multilabel", 10, target_mode="all_zero")
    assert (tz.sample_targets(y[y.sum(1) > 0], torch.Generator()) == 0).all()
    with pytest.raises(ValueError, match="no label"):
        tz.sample_targets(torch.zeros(2, 10), torch.Generator())
    tt = task("multilabel", 10, target_mode="train")
    pool = (torch.rand(30, 10, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    tt.set_train_vectors(pool)
    tr = tt.sample_targets(pool[:20], torch.Generator().manual_seed(2))
    assert (tr != pool[:20]).any(1).all()
    assert all(any(torch.equal(v, p) for p in pool) for v in tr)
    # bad targets fail with a clear message
    with pytest.raises(ValueError, match="equals the ground-truth"):
        t.check_target(y, y.clone())
    with pytest.raises(ValueError, match="shape"):
        t.check_target(y, t1[:, :5])
    with pytest.raises(ValueError, match="only 0 and 1"):
        t.check_target(y, t1 * 2)
    jma = attack(JMA, t)
    with pytest.raises(ValueError, match="equals the ground-truth"):
        jma(nn.Flatten(), torch.rand(50, 10), y, y.clone())
    e = task("ecoc", 10)
    with pytest.raises(ValueError, match="equals the ground-truth"):
        e.check_target(torch.tensor([1, 2]), torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="class indices"):
        e.check_target(torch.tensor([1, 2]), torch.rand(2, 10))
    with pytest.raises(ConfigError, match="targeted"):
        parse_config(JMA.Config, {"name": "jma", "targeted": False}, "attack")


def test_asr_and_basr_by_hand():
    t = task("multilabel", 4)
    y = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0]])
    target = torch.tensor([[0.0, 1, 1, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    # adversarial predictions: sample 0 reaches its target; sample 1 flips 1 of its 2 asked bits; sample 2 none
    adv_pred = torch.tensor([[0.0, 1, 1, 0], [0, 0, 1, 0], [1, 1, 0, 0]])
    adv_out = adv_pred * 2 - 1
    meter = Meter()
    t.update_attack_metrics(meter, y * 2 - 1, adv_out, y, target)
    out = meter.compute()
    assert out["asr"] == pytest.approx(1 / 3)
    assert out["basr"] == pytest.approx((1 + 0.5 + 0) / 3)
    e = task("ecoc", 4, code_length=4)
    c = e.codebook  # 3 codewords of 4 bits... (4 classes -> all rows incl. all-ones)
    ye, te = torch.tensor([0, 1]), torch.tensor([1, 2])
    adv = torch.stack([c[1], c[0]])  # sample 0 reaches class 1; sample 1 stays at class 0
    m2 = Meter()
    e.update_attack_metrics(m2, c[ye], adv, ye, te)
    r = m2.compute()
    assert r["asr"] == pytest.approx(0.5)
    # bits asked: where c_t != c_y; sample 1 output c_0 vs target c_2: the asked bits are those c_2 != c_1
    asked1 = c[2] != c[1]
    done1 = ((c[0] > 0) == (c[2] > 0)) & asked1
    assert r["basr"] == pytest.approx((1 + done1.sum().item() / asked1.sum().item()) / 2)


def test_multilabel_metrics_by_hand():
    from sklearn.metrics import average_precision_score

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(40, 5, generator=gen)
    labels = (torch.rand(40, 5, generator=gen) > 0.5).float()
    t = task("multilabel", 5)
    meter = t.meter()
    assert isinstance(meter, MultiLabelMeter)
    t.update_metrics(meter, scores[:25], labels[:25])
    t.update_metrics(meter, scores[25:], labels[25:])
    out = meter.compute()
    ref = np.mean([average_precision_score(labels[:, j], scores[:, j]) for j in range(5)])
    assert out["mAP"] == pytest.approx(ref, abs=1e-6)
    pred = (scores > 0).float()
    assert out["hamming"] == pytest.approx((pred != labels).float().mean().item(), abs=1e-6)
    assert out["exact_match"] == pytest.approx((pred == labels).all(1).float().mean().item())
    # ASL with no focusing and no clipping is BCE (summed over labels)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(scores, labels, reduction="sum") / 40
    assert asymmetric_loss(scores, labels, 0.0, 0.0, 0.0) == pytest.approx(bce.item(), rel=1e-5)
    assert t.loss(scores, labels) == pytest.approx(bce.item(), rel=1e-5)


def test_image_quality_by_hand():
    x = torch.full((2, 3, 16, 16), 0.5)
    x_adv = x.clone()
    x_adv[0] += 0.1
    x_adv[1, :, :8] -= 0.2
    q = image_quality(x, x_adv)
    assert q["mse"][0] == pytest.approx(0.01, rel=1e-5)
    assert q["mse"][1] == pytest.approx(0.04 / 2, rel=1e-5)
    assert q["psnr"][0] == pytest.approx(20.0, rel=1e-5)
    assert image_quality(x, x)["ssim"] == pytest.approx(torch.ones(2))
    assert (q["ssim"] < 1).all()


def test_output_jacobian_of_a_transformer_is_batched(recwarn):
    """A ViT's Jacobian (attention inside): equal to autograd's row by row, and computed without vmap's
    per-output fallback loop (the fused attention backward has no batching rule; JMA uses the math form)."""
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    net = VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=128, num_classes=7
    ).eval()
    x = torch.rand(2, 3, 32, 32)
    feats, jac = output_jacobian(net, x)
    expected = torch.stack(
        [torch.autograd.functional.jacobian(net, x[i : i + 1])[0, :, 0].flatten(1) for i in range(2)]
    )
    assert torch.allclose(feats, net(x), atol=1e-6)
    assert torch.allclose(jac, expected, atol=1e-5)
    assert not [w for w in recwarn if "performance drop" in str(w.message)]
