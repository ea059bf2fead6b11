"""Oracle tests: advlab's attacks against the authors' implementations (torchattacks 3.5.1 carries the
AutoAttack authors' APGD, APGD-T, FAB, Square and AutoAttack; installed by ``make install`` from the
``oracle`` extra) on the same tiny digits victim, the same images and the same seeds.

Where both draw the same random numbers (APGD, APGD-T, FAB, Linf Square: the same CPU stream in the same
order) the per-example outcome must be the same. L2 Square draws one sign per example still attacked: it
matches the reference when the fooled examples leave the batch at every iteration (``compact_every=1``; the
default drops them every 16 iterations, which changes the number of signs drawn, not the distribution)."""

from __future__ import annotations

import pytest
import torch
from oracle_helpers import tiny_victim
from torch import nn

from advlab.attacks.base import ATTACKS

torchattacks = pytest.importorskip(
    "torchattacks", reason="the oracle extra (make install) provides torchattacks"
)

N = 64


@pytest.fixture(scope="module")
def victim():
    model, task, x, y = tiny_victim()
    with torch.no_grad():
        assert (model(x[:N]).argmax(1) == y[:N]).float().mean() > 0.8
    return model, task, x[:N], y[:N]


def robust(model, x_adv, y):
    with torch.no_grad():
        return model(x_adv).argmax(1) == y


def within(x_adv, x, norm, eps):
    d = (x_adv - x).flatten(1)
    n = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool((n <= eps * (1 + 1e-5) + 1e-6).all()) and x_adv.min() >= 0 and x_adv.max() <= 1


CASES = {
    # name: (advlab attack, its params, torchattacks constructor)
    "apgd_ce_linf": ("apgd", {"eps": 0.1, "steps": 10}, lambda m: torchattacks.APGD(m, eps=0.1, steps=10)),
    "apgd_ce_l2": (
        "apgd",
        {"norm": "l2", "eps": 1.0, "steps": 10, "restarts": 2},
        lambda m: torchattacks.APGD(m, norm="L2", eps=1.0, steps=10, n_restarts=2),
    ),
    "apgd_t_linf": (
        "apgd_t",
        {"eps": 0.1, "steps": 10, "n_target_classes": 3},
        lambda m: torchattacks.APGDT(m, eps=0.1, steps=10, n_classes=4),
    ),
    "fab_t_linf": (
        "fab_t",
        {"eps": 0.1, "steps": 10, "n_target_classes": 3},
        lambda m: torchattacks.FAB(m, eps=0.1, steps=10, multi_targeted=True, n_classes=4),
    ),
    "fab_l2": (
        "fab",
        {"norm": "l2", "eps": 1.0, "steps": 10, "restarts": 2},
        lambda m: torchattacks.FAB(m, norm="L2", eps=1.0, steps=10, n_restarts=2),
    ),
    "square_l2": (
        "square",
        {"norm": "l2", "eps": 1.0, "queries": 200, "compact_every": 1},
        lambda m: torchattacks.Square(m, norm="L2", eps=1.0, n_queries=200, resc_schedule=False),
    ),
    "square_linf": (
        "square",
        {"eps": 0.1, "queries": 200},
        lambda m: torchattacks.Square(m, eps=0.1, n_queries=200, resc_schedule=False),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_attack_matches_the_reference_example_by_example(victim, case):
    model, task, x, y = victim
    name, params, reference = CASES[case]
    norm = params.get("norm", "linf")
    for seed in (0, 1):
        torch.manual_seed(seed)
        ours = ATTACKS.create(name, task, **params)(model, x, y)
        ref_attack = reference(model)
        ref_attack.seed = seed
        theirs = ref_attack(x, y)
        assert within(ours, x, norm, params["eps"])
        r_ours, r_theirs = robust(model, ours, y), robust(model, theirs, y)
        assert 0 < int(r_ours.sum()) < int(robust(model, x, y).sum())  # the case is not trivial
        assert torch.equal(r_ours, r_theirs), (case, seed, int(r_ours.sum()), int(r_theirs.sum()))


def test_autoattack_standard_matches_the_reference(victim):
    """torchattacks' AutoAttack standard runs its components with their defaults (10 iterations for APGD and
    FAB) and re-seeds each stage; advlab's with the same settings and ``seed`` gives the same examples."""
    model, task, x, y = victim
    n_classes = 10
    aa = ATTACKS.create("autoattack", task, eps=0.1, steps=10, queries=5000, seed=0)
    ours = aa(model, x, y)
    theirs = torchattacks.AutoAttack(model, eps=0.1, n_classes=n_classes, seed=0)(x, y)
    assert within(ours, x, "linf", 0.1)
    r_ours, r_theirs = robust(model, ours, y), robust(model, theirs, y)
    assert torch.equal(r_ours, r_theirs), (int(r_ours.sum()), int(r_theirs.sum()))
    stages = [
        float(aa.batch_stats[f"autoattack/{s}/acc"].mean()) for s in ("apgd_ce", "apgd_t", "fab_t", "square")
    ]
    assert stages == sorted(stages, reverse=True) and stages[-1] == pytest.approx(
        float(r_ours.float().mean())
    )


@pytest.fixture(scope="module")
def rgb_digits():
    return tiny_victim(channels=3)


@pytest.fixture(scope="module")
def rgb_victim(rgb_digits):
    model, task, x, y = rgb_digits
    return model, task, x[:16], y[:16]


def test_recoloradv_matches_the_authors_code_and_stays_within_its_bound(rgb_victim):
    """PAT's ReColorAdvAttack (perceptual_advex 0.2.6 on recoloradv 0.0.1) and advlab's, same settings."""
    from oracle_helpers import stub_perceptual_advex_imports

    from advlab.attacks.recoloradv import colour_offsets, to_luv

    stub_perceptual_advex_imports()
    pa = pytest.importorskip("perceptual_advex.attacks")
    model, task, x, y = rgb_victim
    steps = 10
    attack = ATTACKS.create("recoloradv", task, steps=steps)
    ours = attack(model, x, y)
    theirs = pa.ReColorAdvAttack(model, bound=0.06, num_iterations=steps)(x, y).detach()
    # the bound, exactly, where it is defined: the grid offsets and so every pixel's colour offset
    assert attack.last_grid.abs().max() <= 0.06 + 1e-6
    assert colour_offsets(to_luv(x), attack.last_grid).abs().max() <= 0.06 + 1e-6
    # what reaches the image is no larger than what the authors' code produces on the same images
    luv = lambda xa: (to_luv(xa) - to_luv(x)).abs().amax(1)  # noqa: E731
    assert luv(ours).max() <= luv(theirs).max() + 1e-3
    assert (ours - x).abs().max() <= (theirs - x).abs().max() + 1e-3 and (ours - x).abs().max() < 0.5
    asr = lambda xa: float((~robust(model, xa, y)).float().mean())  # noqa: E731
    assert abs(asr(ours) - asr(theirs)) <= 0.05 + 1e-9


def test_stadv_matches_the_authors_code_and_stays_within_its_bound(rgb_victim):
    """PAT's StAdvAttack and advlab's StAdv (Adam, 4-neighbour smoothness 0.0025/bound, zero padding)."""
    from oracle_helpers import stub_perceptual_advex_imports

    from advlab.attacks.stadv import warp

    stub_perceptual_advex_imports()
    pa = pytest.importorskip("perceptual_advex.attacks")
    model, task, x, y = rgb_victim
    attack = ATTACKS.create("stadv", task, steps=10)
    ours = attack(model, x, y)
    theirs = pa.StAdvAttack(model, bound=0.05, num_iterations=10)(x, y).detach()
    assert attack.last_flow.abs().max() <= 0.05 + 1e-7
    assert torch.allclose(warp(x, attack.last_flow).clamp(0, 1), ours, atol=1e-6)
    asr = lambda xa: float((~robust(model, xa, y)).float().mean())  # noqa: E731
    assert 0 < asr(theirs) < 1  # the comparison is not trivial
    assert abs(asr(ours) - asr(theirs)) <= 0.05 + 1e-9
    assert (ours - theirs).abs().max() < 0.05  # the same images, up to float rounding in the optimiser path


class _MidRange(nn.Module):
    """The victim on images squeezed into [0.375, 0.625] (``lo + span * x``): it sees what the victim sees on
    ``x``, and JPEG perturbations of these images are not clipped, so the re-encoded bound is exact."""

    lo, span = 0.375, 0.25

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, z):
        return self.model((z - self.lo) / self.span)


def test_jpeg_linf_matches_the_authors_code_and_moves_each_coefficient_by_half_eps(rgb_digits, monkeypatch):
    """The UAR authors' JPEGAttack (advex_uar 0.0.6.dev0, run on the CPU) called as PAT's JPEGLinfAttack calls
    it (``eps_max`` = PAT's bound, step bound/sqrt(iterations), pixels 0-255 through their AttackWrapper and
    PAT's UARModel) and advlab's jpeg_linf, same eps, steps and step size, on 16 px images (their 4:2:0 code
    needs sides divisible by 16). The bound as the authors define it: every quantised coefficient (Y, and
    Cb/Cr after 4:2:0), re-encoded with their encoder, moves by at most eps/2 quantisation steps."""
    from oracle_helpers import stub_perceptual_advex_imports, uar_jpeg_steps, uar_on_cpu

    pytest.importorskip("advex_uar", reason="the oracle extra (make install) provides advex_uar")
    uar_on_cpu(monkeypatch)
    stub_perceptual_advex_imports()
    pa = pytest.importorskip("perceptual_advex.attacks")
    from advex_uar.attacks.jpeg_attack import JPEGAttack
    from perceptual_advex.utilities import LambdaLayer

    model, task, x, y = rgb_digits
    model, x, y = _MidRange(model).eval(), _MidRange.lo + _MidRange.span * x[:N], y[:N]
    eps, steps = 0.125, 10
    torch.manual_seed(0)
    authors = JPEGAttack(steps, eps, eps / steps**0.5, x.shape[-1], scale_each=1, opt="linf")
    authors.transform, authors.inverse_transform = (
        LambdaLayer(lambda z: z / 255),
        LambdaLayer(lambda z: z * 255),
    )
    theirs = authors(pa.UARModel(model), x, y, scale_eps=False, avoid_target=True).detach()
    ours = ATTACKS.create("jpeg_linf", task, eps=eps, steps=steps)(model, x, y)
    for x_adv in (ours, theirs):
        assert x_adv.min() > 0 and x_adv.max() < 1  # nothing clipped: the re-encoding measures the change
    moved_ours, moved_theirs = uar_jpeg_steps(x, ours), uar_jpeg_steps(x, theirs)
    # eps / 2 quantisation steps per coefficient in both (advlab's eps is the authors' eps_max), reached
    for moved in (moved_ours, moved_theirs):
        assert 0.9 * eps / 2 < moved.max() <= eps / 2 + 1e-4
    assert abs(float(moved_ours.mean() - moved_theirs.mean())) < 0.02 * eps / 2
    at_bound = lambda moved: float((moved > 0.9 * eps / 2).float().mean())  # noqa: E731
    assert abs(at_bound(moved_ours) - at_bound(moved_theirs)) < 0.02
    asr = lambda xa: float((~robust(model, xa, y)).float().mean())  # noqa: E731
    assert 0 < asr(theirs) < 1  # the comparison is not trivial
    assert abs(asr(ours) - asr(theirs)) <= 0.05 + 1e-9


# MI-FGSM and DI-FGSM are deterministic with the diversity off: the same images, not only the same outcome.
# torchattacks divides the gradient by its mean |.|, advlab (as the paper) by its sum: the momentum differs by
# the constant number of pixels, so its sign, and with it every step, is the same.
MOMENTUM_CASES = {
    "mi_fgsm": (
        {"eps": 0.1, "steps": 10, "decay": 1.0},
        lambda m: torchattacks.MIFGSM(m, eps=0.1, alpha=0.01, steps=10, decay=1.0),
    ),
    "di_fgsm": (
        {"eps": 0.1, "steps": 10, "decay": 1.0, "diversity_prob": 0.0},
        lambda m: torchattacks.DIFGSM(m, eps=0.1, alpha=0.01, steps=10, decay=1.0, diversity_prob=0.0),
    ),
}


@pytest.mark.parametrize("name", list(MOMENTUM_CASES))
def test_momentum_fgsm_gives_the_reference_images(victim, name):
    model, task, x, y = victim
    params, reference = MOMENTUM_CASES[name]
    ours = ATTACKS.create(name, task, **params)(model, x, y)
    theirs = reference(model)(x, y)
    assert within(ours, x, "linf", params["eps"])
    assert 0 < int(robust(model, ours, y).sum()) < int(robust(model, x, y).sum())  # not trivial
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert torch.equal(robust(model, ours, y), robust(model, theirs, y))


# PPGD, LPA and Fast-LPA against the PAT authors' PerceptualPGDAttack, LagrangePerceptualAttack and
# FastLagrangePerceptualAttack (perceptual_advex 0.2.6). The same LPIPS network for both: the authors' CIFAR
# AlexNet architecture (CifarAlexNet inside their AlexNetFeatureModel, seeded weights, no download), written in
# their alexnet_cifar.pt layout and read by advlab as lpips.model=alexnet_cifar, so that both attacks bound the
# same distance (checked first). The victim sees 3-channel 16 px digits (CifarAlexNet's trunk runs on 16 px).
PERCEPTUAL_N = 64


@pytest.fixture(scope="module")
def perceptual_oracle(tmp_path_factory, rgb_digits):
    from oracle_helpers import stub_perceptual_advex_imports

    stub_perceptual_advex_imports()
    pa = pytest.importorskip("perceptual_advex.perceptual_attacks")
    from perceptual_advex.models import AlexNetFeatureModel, CifarAlexNet

    model, task, x, y = rgb_digits
    torch.manual_seed(0)
    features = AlexNetFeatureModel(CifarAlexNet())
    features.eval()
    path = tmp_path_factory.mktemp("lpips") / "alexnet_cifar.pt"
    torch.save({"model": features.state_dict()}, path)  # the layout of the authors' alexnet_cifar.pt
    lpips = {"model": "alexnet_cifar", "weights": str(path)}
    return pa, features, model, task, x[:PERCEPTUAL_N], y[:PERCEPTUAL_N], lpips


def test_advlab_and_the_authors_measure_the_same_lpips_distance(perceptual_oracle):
    from advlab.perceptual.lpips_distance import LPIPSConfig, LPIPSDistance

    pa, features, model, _, x, _, lpips = perceptual_oracle
    g = torch.Generator().manual_seed(0)
    noisy = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        ours = LPIPSDistance(LPIPSConfig(**lpips)).bind(model)(x, noisy)
        theirs = pa.LPIPSDistance(features)(x, noisy)
    assert ours.min() > 0.05 and torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def _outcome(pa, features, model, x, y, x_adv):
    """(success rate, LPIPS distances to x as the authors measure them)."""
    with torch.no_grad():
        return float((model(x_adv).argmax(1) != y).float().mean()), pa.LPIPSDistance(features)(x, x_adv)


def test_fast_lpa_matches_the_authors_code(perceptual_oracle):
    """The authors' Fast-LPA (kappa = inf, lambda 10 * 0.1 ** (1 - t / T), no projection) and advlab's
    defaults: the same success rate and the same LPIPS distribution (no projection: beyond the bound too)."""
    pa, features, model, task, x, y, lpips = perceptual_oracle
    bound, steps = 0.1, 5
    torch.manual_seed(0)
    ours = ATTACKS.create("fast_lpa", task, bound=bound, steps=steps, lpips=lpips)(model, x, y)
    torch.manual_seed(0)
    theirs = pa.FastLagrangePerceptualAttack(model, bound=bound, num_iterations=steps, lpips_model=features)(
        x, y
    ).detach()
    (asr_o, d_o), (asr_t, d_t) = (_outcome(pa, features, model, x, y, a) for a in (ours, theirs))
    assert 0.1 < asr_t < 0.9  # not trivial
    assert abs(asr_o - asr_t) <= 0.05 + 1e-9
    assert abs(float(d_o.mean() - d_t.mean())) < 0.01 and abs(float(d_o.max() - d_t.max())) < 0.03
    assert ours.min() >= 0 and ours.max() <= 1


def test_lpa_matches_the_authors_code_and_its_default_is_no_weaker(perceptual_oracle):
    """The authors' LPA (early freezing, their Newton projection) and advlab's LPA with their two code details
    (``freeze: after_step``, ``projection: authors``): success within 5 points, every example
    within the bound, LPIPS means close. advlab's defaults (keep the iterate found adversarial; project onto
    the boundary) succeed at least as often."""
    pa, features, model, task, x, y, lpips = perceptual_oracle
    bound, steps, rounds = 0.2, 5, 3
    common = {"bound": bound, "steps": steps, "binary_steps": rounds, "lpips": lpips}
    torch.manual_seed(0)
    theirs = pa.LagrangePerceptualAttack(
        model,
        bound=bound,
        num_iterations=steps,
        binary_steps=rounds,
        lpips_model=features,
        projection="newtons",
    )(x, y).detach()
    torch.manual_seed(0)
    as_theirs = ATTACKS.create("lpa", task, freeze="after_step", projection="authors", **common)(model, x, y)
    torch.manual_seed(0)
    default = ATTACKS.create("lpa", task, **common)(model, x, y)
    (asr_t, d_t), (asr_a, d_a), (asr_d, d_d) = (
        _outcome(pa, features, model, x, y, a) for a in (theirs, as_theirs, default)
    )
    assert 0.1 < asr_t < 0.9  # not trivial
    assert abs(asr_a - asr_t) <= 0.05 + 1e-9
    assert abs(float(d_a.mean() - d_t.mean())) < 0.02
    assert d_t.max() <= bound + 1e-4 and d_a.max() <= bound + 1e-4 and d_d.max() <= bound + 1e-4
    assert asr_d >= asr_t - 1e-9


def test_ppgd_matches_the_authors_code_and_its_default_is_no_weaker(perceptual_oracle):
    """The authors' PPGD and advlab's with their two code details (``projection: authors``: their Newton
    projection; ``finite_difference_h: 1e-3``: their finite-difference J v): success within 5 points, both
    within the bound, the same mean LPIPS. advlab's defaults (project onto the boundary, exact J v) succeed at
    least as often."""
    pa, features, model, task, x, y, lpips = perceptual_oracle
    x, y = x[:32], y[:32]
    common = {"bound": 0.2, "steps": 5, "lpips": lpips}
    torch.manual_seed(0)
    theirs = pa.PerceptualPGDAttack(
        model, bound=0.2, num_iterations=5, lpips_model=features, projection="newtons"
    )(x, y).detach()
    torch.manual_seed(0)
    as_theirs = ATTACKS.create("ppgd", task, projection="authors", finite_difference_h=1e-3, **common)(
        model, x, y
    )
    torch.manual_seed(0)
    default = ATTACKS.create("ppgd", task, **common)(model, x, y)
    (asr_t, d_t), (asr_a, d_a), (asr_d, d_d) = (
        _outcome(pa, features, model, x, y, a) for a in (theirs, as_theirs, default)
    )
    assert 0.1 < asr_t < 0.9  # not trivial
    assert abs(asr_a - asr_t) <= 0.05 + 1e-9
    assert abs(float(d_a.mean() - d_t.mean())) < 0.02
    assert d_t.max() <= 0.2 + 1e-4 and d_a.max() <= 0.2 + 1e-4 and d_d.max() <= 0.2 + 1e-4
    assert asr_d >= asr_t - 1e-9
