"""Attacks checked against their definitions on a trained digits model."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks.base import ATTACKS
from advlab.attacks.perturbation import lp_norm, project, random_start

TOL = 1e-6


def build(name: str, **params):
    return ATTACKS.create(name, None, **params)


def attack_with(task, name: str, **params):
    a = build(name, **params)
    a.task = task
    return a


BOUNDED = [
    ("fgsm", {"norm": "linf", "eps": 0.1}),
    ("fgsm", {"norm": "l2", "eps": 1.0}),
    ("pgd", {"norm": "linf", "eps": 0.1, "steps": 5}),
    ("pgd", {"norm": "l2", "eps": 1.0, "steps": 5}),
    ("pgd", {"norm": "linf", "eps": 0.05, "steps": 5, "restarts": 2, "targeted": True}),
    ("pgd", {"norm": "l2", "eps": 0.5, "steps": 5, "early_stop": False, "random_start": False}),
]


@pytest.mark.parametrize(
    "name,params", BOUNDED, ids=[f"{n}-{p['norm']}-{i}" for i, (n, p) in enumerate(BOUNDED)]
)
def test_bounded_attacks_respect_norm_and_box(digits_setup, digits_batch, name, params):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    attack = attack_with(task, name, **params)
    target = task.sample_targets(y, torch.Generator().manual_seed(0)) if attack.targeted else None
    x_adv = attack(model, x, y, target)
    delta = x_adv - x
    assert x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    eps = params["eps"]
    assert lp_norm(delta, params["norm"]).max() <= eps + TOL
    assert lp_norm(delta, params["norm"]).max() > 0.5 * eps  # the attack actually moved the images


def test_cw_stays_in_box(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    x_adv = attack_with(task, "cw_l2", steps=20, binary_search_steps=2, initial_const=1.0)(
        model, x[:32], y[:32]
    )
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_projection_and_random_start_are_in_the_ball():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(16, 3, 8, 8, generator=g) * 3
    for norm, eps in (("linf", 0.1), ("l2", 0.7)):
        p = project(d, norm, eps)
        assert torch.all(lp_norm(p, norm) <= eps + TOL)
        # points already inside the ball are unchanged
        small = d * (0.5 * eps / lp_norm(d, norm).max())
        assert torch.allclose(project(small, norm, eps), small)
        r = random_start(torch.zeros(64, 3, 8, 8), norm, eps)
        assert torch.all(lp_norm(r, norm) <= eps + TOL)


def test_pgd_linf_eps03_breaks_the_digits_model(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, correct = digits_batch
    assert correct.float().mean() > 0.95  # the victim is really trained
    x_adv = attack_with(task, "pgd", norm="linf", eps=0.3, steps=20)(model, x, y)
    with torch.no_grad():
        acc = task.correct(model(x_adv), y).float().mean().item()
    assert acc < 0.10


def test_targeted_pgd_reaches_targets(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    target = task.sample_targets(y, torch.Generator().manual_seed(1))
    assert torch.all(target != y) and target.min() >= 0 and target.max() <= 9
    x_adv = attack_with(task, "pgd", norm="linf", eps=0.3, steps=40, targeted=True)(model, x, y, target)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    assert (pred == target).float().mean().item() >= 0.95


def test_untargeted_attack_ignores_targets(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    attack = attack_with(task, "pgd", norm="linf", eps=0.05, steps=3, targeted=False)
    torch.manual_seed(0)
    a = attack(model, x[:16], y[:16])
    torch.manual_seed(0)
    b = attack(model, x[:16], y[:16], target=(y[:16] + 1) % 10)
    assert torch.equal(a, b)


def test_pgd_restarts_keep_successes(digits_setup, digits_batch):
    """Restarts only re-attack failures: successes of one run are a subset of successes with 3 restarts."""
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    params = dict(norm="linf", eps=0.06, steps=5)
    torch.manual_seed(0)
    one = attack_with(task, "pgd", restarts=1, **params)(model, x, y)
    torch.manual_seed(0)
    three = attack_with(task, "pgd", restarts=3, **params)(model, x, y)
    with torch.no_grad():
        s1 = task.success(model(one), y)
        s3 = task.success(model(three), y)
    assert torch.all(s3 | ~s1)
    assert s3.sum() >= s1.sum()


def test_pgd_early_stop_returns_successful_iterates(digits_setup, digits_batch):
    """With early stopping, every example the attack stopped on is adversarial on the returned image, and the
    success rate is not lower than without early stopping by more than noise."""
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    params = dict(norm="linf", eps=0.1, steps=10)
    torch.manual_seed(0)
    es = attack_with(task, "pgd", early_stop=True, **params)(model, x, y)
    torch.manual_seed(0)
    full = attack_with(task, "pgd", early_stop=False, **params)(model, x, y)
    with torch.no_grad():
        s_es = task.success(model(es), y).float().mean()
        s_full = task.success(model(full), y).float().mean()
    assert s_es >= s_full - 0.02


def test_victim_is_frozen_during_attack_and_restored(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    seen = {}

    def hook(module, inputs, output):
        seen["training"] = module.training
        seen["param_grad"] = any(p.requires_grad for p in module.parameters())

    grads_before = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    handle = model.register_forward_hook(hook)
    try:
        attack_with(task, "pgd", eps=0.03, steps=2)(model, x[:8], y[:8])
    finally:
        handle.remove()
    assert seen == {"training": False, "param_grad": False}
    assert model.training and all(p.requires_grad for p in model.parameters())
    # the attack took gradients w.r.t. the input only: parameter .grad is untouched
    for p, before in zip(model.parameters(), grads_before):
        assert (p.grad is None and before is None) or torch.equal(p.grad, before)
    model.eval().requires_grad_(False)


def test_cw_l2_succeeds_with_less_l2_than_pgd_needs(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, correct = digits_batch
    x, y = x[correct][:96], y[correct][:96]
    cw = attack_with(task, "cw_l2", steps=100, binary_search_steps=4, lr=0.05, initial_const=1.0)
    x_adv = cw(model, x, y)
    with torch.no_grad():
        success = task.success(model(x_adv), y)
    rate = success.float().mean().item()
    assert rate >= 0.95
    mean_l2 = lp_norm(x_adv - x, "l2")[success].mean().item()
    # PGD-L2 (40 steps) given C&W's mean L2 as its budget does not reach C&W's success rate, i.e. the eps
    # PGD-L2 needs for that rate is larger than C&W's mean L2 (PGD success grows with eps).
    torch.manual_seed(0)
    pgd = attack_with(task, "pgd", norm="l2", eps=mean_l2, steps=40)(model, x, y)
    with torch.no_grad():
        pgd_rate = task.success(model(pgd), y).float().mean().item()
    assert pgd_rate < rate, (mean_l2, pgd_rate, rate)
    assert cw.batch_stats["iters"].shape == (x.shape[0],)


def test_targeted_cw_reaches_targets(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    x, y = x[:48], y[:48]
    target = task.sample_targets(y, torch.Generator().manual_seed(3))
    x_adv = attack_with(
        task, "cw_l2", steps=100, binary_search_steps=3, lr=0.05, initial_const=1.0, targeted=True
    )(model, x, y, target)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) == target).float().mean().item() >= 0.95


def test_fgsm_is_one_signed_step():
    """On a linear model the FGSM image is exactly clip(x + eps * sign(grad of CE))."""
    from advlab.data.info import DataInfo
    from advlab.tasks.classification import Classification

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    task = Classification(None, DataInfo(3, (3, 2, 2), ["a", "b", "c"], (0.5,), (0.5,)))
    x = torch.rand(5, 3, 2, 2)
    y = torch.tensor([0, 1, 2, 0, 1])
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(lin(xg), y, reduction="sum").backward()
    expected = (x + 0.1 * xg.grad.sign()).clamp(0, 1)
    got = attack_with(task, "fgsm", eps=0.1)(lin, x, y)
    assert torch.allclose(got, expected)
