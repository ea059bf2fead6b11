"""PAT issue: perceptual distances and attacks (PPGD, LPA, Fast-LPA), unseen attacks (APGD, StAdv,
ReColorAdv, JPEG-Linf), each checked against its definition."""

from __future__ import annotations

import copy

import pytest
import torch

from advlab.attacks.base import ATTACKS
from advlab.attacks.jpeg_linf import dct_matrix, from_coefficients, jpeg_coefficients
from advlab.attacks.recoloradv import to_luv
from advlab.attacks.stadv import warp
from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.perceptual.lpips_distance import LPIPSConfig, LPIPSDistance, normalize_flatten
from advlab.registry import parse_config
from advlab.tasks.base import TASKS
from advlab.victims.base import Victim
from advlab.victims.smallcnn import small_cnn


def build(name: str, task, **params):
    return ATTACKS.create(name, task, **params)


@pytest.fixture(scope="module")
def rgb_setup():
    """A random 3-channel victim on colourful 16 px images (for bounds, no training needed)."""
    info = DataInfo(10, (3, 16, 16), [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), info
    )
    torch.manual_seed(0)
    model = Victim(small_cnn(3, 10, 16, 8, 32), info.mean, info.std).eval().requires_grad_(False)
    x = torch.rand(12, 3, 16, 16)
    with torch.no_grad():
        y = model(x).argmax(1)  # the model's own predictions: every example starts correct
    return model, task, x, y


def test_normalised_features_follow_the_definition():
    f = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    phi = normalize_flatten(f)
    assert phi.shape == (2, 3 * 16 + 5 * 4)
    # each layer: unit channel norm at each position, / sqrt(HW) -> squared norm of the layer part = 1
    assert torch.allclose(phi[:, :48].pow(2).sum(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(phi[:, 48:].pow(2).sum(1), torch.ones(2), atol=1e-5)
    # the distance ignores per-position feature scale
    scaled = [f[0] * torch.rand(2, 1, 4, 4).add(0.5), f[1]]
    assert torch.allclose(normalize_flatten(scaled), phi, atol=1e-5)


def test_lpips_self_is_zero_symmetric_and_grows_with_noise(digits_setup, digits_batch):
    model = digits_setup[0]
    x = digits_batch[0][:32]
    d = LPIPSDistance(LPIPSConfig(model="self"), model)
    assert d.layers == ["net.2", "net.5", "net.9", "net.12"]  # the four conv-stage activations
    assert torch.equal(d(x, x), torch.zeros(32))
    g = torch.Generator().manual_seed(0)
    noisy = [(x + s * torch.randn(x.shape, generator=g)).clamp(0, 1) for s in (0.02, 0.08, 0.3)]
    assert torch.allclose(d(x, noisy[0]), d(noisy[0], x), atol=1e-6)
    means = [float(d(x, n).mean()) for n in noisy]
    assert 0 < means[0] < means[1] < means[2]
    per_example = torch.stack([d(x, n) for n in noisy])
    assert (per_example[1:] > per_example[:-1]).float().mean() > 0.95


def test_linearised_lpips_matches_the_distance_for_small_steps(digits_setup, digits_batch):
    model = copy.deepcopy(digits_setup[0]).double()  # float64: tiny steps without rounding noise
    x = digits_batch[0][:4].clamp(0.05, 0.95).double()
    d = LPIPSDistance(LPIPSConfig(model="self"), model)
    gen = torch.Generator().manual_seed(0)  # the same direction whatever ran before (test order, xdist)
    # ReLU kinks and the normalisation's curvature: the linearisation is exact only as v -> 0
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype) * 1e-8
    lin = d.linearised_norm(x, v)
    assert torch.allclose(lin, d(x, x + v), rtol=0.05)
    jtj = d.jtj_operator(x)(v)  # v . J^T J v = ||J v||^2
    assert torch.allclose((v * jtj).flatten(1).sum(1), lin**2, rtol=1e-3)


def test_alexnet_lpips_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="alexnet-owt-7be5be79.pth"):
        LPIPSDistance(LPIPSConfig(model="alexnet"))
    d = LPIPSDistance(LPIPSConfig(model="alexnet_random"))  # the same trunk, untrained (tests)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(d(x, x), torch.zeros(2)) and (d(x, x.flip(0)) > 0).all()


@pytest.mark.parametrize(
    "name,params",
    [
        ("ppgd", {"steps": 5, "bound": 0.5}),
        ("lpa", {"steps": 5, "binary_steps": 2, "bound": 0.5}),
    ],
)
def test_perceptual_attacks_respect_the_lpips_bound_and_the_box(digits_setup, digits_batch, name, params):
    model, task = digits_setup[0], digits_setup[1]
    x, y, _ = digits_batch
    x, y = x[:32], y[:32]
    attack = build(name, task, **params)
    x_adv = attack(model, x, y)
    d = LPIPSDistance(LPIPSConfig(model="self"), model)
    dist = d(x, x_adv)
    assert dist.max() <= params["bound"] + 1e-4
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        acc_clean = task.correct(model(x), y).float().mean()
        acc_adv = task.correct(model(x_adv), y).float().mean()
    assert acc_adv < acc_clean - 0.3  # the attack works within the bound
    assert dist.mean() > 0.05 * params["bound"]


def test_fast_lpa_moves_towards_the_bound_and_fools_the_model(digits_setup, digits_batch):
    model, task = digits_setup[0], digits_setup[1]
    x, y, _ = digits_batch
    x, y = x[:32], y[:32]
    # with a capped margin (kappa 1) the penalty keeps it near the bound (no projection); the authors' default,
    # an uncapped margin, trades LPIPS for margin (tests/attacks/test_oracles.py compares it with their code)
    x_adv = build("fast_lpa", task, steps=10, bound=0.5, kappa=1.0)(model, x, y)
    dist = LPIPSDistance(LPIPSConfig(model="self"), model)(x, x_adv)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert dist.median() < 0.5 * 1.5
    with torch.no_grad():
        assert task.correct(model(x_adv), y).float().mean() < 0.5


def test_apgd_lowers_accuracy_at_least_as_much_as_pgd_with_the_same_budget(digits_setup, digits_batch):
    model, task = digits_setup[0], digits_setup[1]
    x, y, _ = digits_batch
    x, y = x[:96], y[:96]
    eps, steps = 0.06, 20
    accs = {}
    for name, params in (
        ("pgd", {"eps": eps, "steps": steps}),
        ("apgd", {"eps": eps, "steps": steps}),
        ("apgd_ce_t", {"eps": eps, "steps": steps, "n_target_classes": 2}),
    ):
        torch.manual_seed(0)  # the same random start for APGD and APGD-CE-T's APGD-CE stage
        x_adv = build(name, task, **params)(model, x, y)
        assert (x_adv - x).abs().max() <= eps + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        with torch.no_grad():
            accs[name] = float(task.correct(model(x_adv), y).float().mean())
    assert accs["apgd"] <= accs["pgd"]
    assert accs["apgd_ce_t"] <= accs["apgd"]  # the worst case over APGD-CE (same start) and APGD-T
    assert accs["pgd"] < 0.95  # the budget matters


def test_apgd_l2_stays_in_the_ball(digits_setup, digits_batch):
    model, task = digits_setup[0], digits_setup[1]
    x, y, _ = digits_batch
    x_adv = build("apgd_t", task, norm="l2", eps=1.0, steps=10, n_target_classes=2)(model, x[:32], y[:32])
    assert (x_adv - x[:32]).flatten(1).norm(dim=1).max() <= 1.0 + 1e-5


def test_stadv_flow_respects_its_bound_and_defines_the_image(rgb_setup):
    model, task, x, y = rgb_setup
    attack = build("stadv", task, steps=10, bound=0.05)
    x_adv = attack(model, x, y)
    flow = attack.last_flow
    assert flow.shape == (12, 2, 16, 16) and flow.abs().max() <= 0.05 + 1e-7
    assert torch.allclose(warp(x, flow), x_adv, atol=1e-6)
    assert torch.allclose(warp(x, torch.zeros_like(flow)), x, atol=1e-6)  # zero flow = identity
    # a 0.05 flow moves a pixel at most 0.05 * W / 2 = 0.4 px: neighbours bound the change
    assert (x_adv - x).abs().max() < 1


def test_recoloradv_colour_change_respects_its_bound(rgb_setup):
    model, task, x, y = rgb_setup
    attack = build("recoloradv", task, steps=10, bound=0.06, resolution=[8, 8, 8])
    x_adv = attack(model, x, y)
    assert attack.last_grid.abs().max() <= 0.06 + 1e-7
    change = (to_luv(x_adv) - to_luv(x)).abs().amax(1)
    unclipped = ((x_adv > 1e-4) & (x_adv < 1 - 1e-4)).all(1)  # pixels not clipped back into the RGB box
    assert change[unclipped].max() <= 0.06 + 1e-3
    assert change.max() > 0.01  # colours did change
    with pytest.raises(ValueError, match="RGB"):
        attack(model, x[:, :1].expand(-1, 3, -1, -1)[:, :1], y)


def test_jpeg_domain_roundtrip_and_bound(rgb_setup):
    model, task, x, y = rgb_setup
    d = dct_matrix()
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)  # orthonormal DCT-II
    assert torch.allclose(from_coefficients(jpeg_coefficients(x), 3), x, atol=1e-4)
    none = build("jpeg_linf", task, eps=0.0, steps=2, chroma_subsampling=False)(model, x, y)
    assert torch.allclose(none, x, atol=1e-4)
    # 4:2:0 (the authors'): with eps 0 the result is the chroma-subsampled round trip, not the image
    none = build("jpeg_linf", task, eps=0.0, steps=2)(model, x, y)
    assert torch.allclose(none, from_coefficients(jpeg_coefficients(x, subsample=True), 3), atol=1e-4)
    x_adv = build("jpeg_linf", task, eps=0.125, steps=5)(model, x, y)
    assert x_adv.min() >= 0 and x_adv.max() <= 1 and (x_adv - x).abs().max() > 0


def test_jpeg_coefficients_move_by_at_most_half_eps_quantisation_steps(rgb_setup):
    """The authors' bound: each quantised coefficient moves by at most eps/2 (measured on mid-range images,
    where no pixel is clipped, by re-encoding the attacked image)."""
    from advlab.attacks.jpeg_linf import quant_table

    model, task, _, y = rgb_setup
    x = 0.45 + 0.1 * torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    eps = 0.125
    attack = build("jpeg_linf", task, eps=eps, steps=5)
    x_adv = attack(model, x, y)
    assert x_adv.min() > 0 and x_adv.max() < 1
    (ly0, ch0), (ly1, ch1) = jpeg_coefficients(x, subsample=True), jpeg_coefficients(x_adv, subsample=True)
    steps_y = (ly1 - ly0) / quant_table(1, "cpu", torch.float32)
    steps_c = (ch1 - ch0) / quant_table(3, "cpu", torch.float32)[:, 1:]
    moved = torch.cat([steps_y.abs().flatten(), steps_c.abs().flatten()])
    assert moved.max() <= eps / 2 + 1e-3
    assert moved.max() > 0.9 * eps / 2  # signed steps reach the bound
    assert max(float(c.abs().max()) for c in attack.last_change) <= eps / 2 + 1e-7


def test_an_infinite_kappa_is_a_clear_error_and_null_is_the_uncapped_margin():
    from advlab.attacks.configs import FastLPAConfig, LPAConfig, PPGDConfig
    from advlab.errors import ConfigError

    assert FastLPAConfig().kappa is None  # the authors' Fast-LPA: kappa = inf
    assert LPAConfig().kappa == 1.0 and PPGDConfig().kappa == 1.0  # theirs: kappa 1
    with pytest.raises(ConfigError, match=r"attack\.kappa.*null"):
        ATTACKS.parse({"name": "fast_lpa", "kappa": float("inf")}, "attack")
    with pytest.raises(ConfigError, match=r"attack\.projection"):
        ATTACKS.parse({"name": "ppgd", "projection": "newtons"}, "attack")
