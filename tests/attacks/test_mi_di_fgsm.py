"""MI-FGSM and M-DI2-FGSM against their definitions (Dong et al. 2018; Xie et al. 2019), and on the default
digits composition."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.attacks.base import ATTACKS
from advlab.attacks.di_fgsm import resize_and_pad
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS

INFO = DataInfo(2, (1, 6, 6), ["a", "b"], (0.5,), (0.5,))


def classification(num_classes: int = 2):
    info = DataInfo(num_classes, (1, 6, 6), [str(i) for i in range(num_classes)], (0.5,), (0.5,))
    return TASKS.build(TASKS.parse({"name": "classification"}), info)


def nonlinear_model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.Tanh(), torch.nn.Linear(16, num_classes)
    ).eval()


def reference_mi_fgsm(model, task, x, y, eps, steps, mu):
    """The authors' update (their code normalises the gradient by its mean absolute value)."""
    alpha, g, x_adv = eps / steps, torch.zeros_like(x), x.clone()
    for _ in range(steps):
        xa = x_adv.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(task.attack_loss(model(xa), y, None).sum(), xa)
        g = mu * g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True)
        x_adv = torch.min(torch.max(x_adv + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return x_adv


def test_constant_gradient_moves_exactly_eps_along_its_sign():
    # a linear 2-class model: the cross-entropy gradient in x is a positive multiple of (w_1 - w_0) for y = 0
    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 2)).eval()
    x = 0.25 + 0.5 * torch.rand(4, 1, 6, 6)
    y = torch.zeros(4, dtype=torch.long)
    eps = 0.1
    x_adv = ATTACKS.create("mi_fgsm", classification(), eps=eps, steps=7)(lin, x, y)
    direction = (lin[1].weight[1] - lin[1].weight[0]).sign().view(1, 1, 6, 6)
    assert torch.allclose(x_adv, x + eps * direction, atol=1e-6)


@pytest.mark.parametrize("mu", [0.0, 0.5, 1.0])
def test_mi_fgsm_matches_the_authors_update(mu):
    model, task = nonlinear_model(), classification(3)
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    ours = ATTACKS.create("mi_fgsm", task, eps=0.2, steps=6, decay=mu)(model, x, y)
    assert torch.allclose(ours, reference_mi_fgsm(model, task, x, y, 0.2, 6, mu), atol=1e-6)
    assert (ours - x).abs().max() <= 0.2 + 1e-6 and ours.min() >= 0 and ours.max() <= 1


def test_momentum_changes_the_path():
    model, task = nonlinear_model(), classification(3)
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    a = ATTACKS.create("mi_fgsm", task, eps=0.3, steps=10, decay=0.0)(model, x, y)
    b = ATTACKS.create("mi_fgsm", task, eps=0.3, steps=10, decay=1.0)(model, x, y)
    assert not torch.allclose(a, b)


def test_resize_and_pad_places_the_resized_image():
    x = torch.ones(1, 1, 4, 4)
    out = resize_and_pad(x, side=5, padded=7, top=1, left=2)
    assert out.shape == (1, 1, 7, 7) and out.sum() == 25
    assert torch.equal(out[0, 0, 1:6, 2:7], torch.ones(5, 5)) and out[0, 0, 0].sum() == 0


def test_di_fgsm_without_diversity_is_mi_fgsm_and_with_it_differs():
    model, task = nonlinear_model(), classification(3)
    x, y = torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 0, 1])
    mi = ATTACKS.create("mi_fgsm", task, eps=0.2, steps=5)(model, x, y)
    di0 = ATTACKS.create("di_fgsm", task, eps=0.2, steps=5, diversity_prob=0.0)(model, x, y)
    assert torch.equal(mi, di0)
    torch.manual_seed(1)
    di1 = ATTACKS.create("di_fgsm", task, eps=0.2, steps=5, diversity_prob=1.0, resize_rate=1.5)(model, x, y)
    assert not torch.equal(mi, di1) and (di1 - x).abs().max() <= 0.2 + 1e-6


def test_config_errors():
    with pytest.raises(ConfigError, match="attack.decay"):
        ATTACKS.create("mi_fgsm", classification(), decay=-1)
    with pytest.raises(ConfigError, match="attack.diversity_prob"):
        ATTACKS.create("di_fgsm", classification(), diversity_prob=2)
    with pytest.raises(ConfigError, match="attack.resize_rate"):
        ATTACKS.create("di_fgsm", classification(), resize_rate=0.5)


@pytest.mark.slow
def test_mi_and_di_fgsm_run_on_the_default_digits_composition(tmp_path):
    from advlab.runner import run

    tiny = ("device=cpu", "dataset.size=16", "train.epochs=1", "victim.width=8", "victim.hidden=32",
            "eval.num_examples=48", "eval.grid_examples=0")  # fmt: skip
    for name in ("mi_fgsm", "di_fgsm"):
        m = run(make_cfg(*tiny, f"attack={name}", "attack.eps=0.1"), tmp_path / name)["metrics"]
        assert m["adv/acc"] <= m["clean/acc"] and m["attack/linf"] <= 0.1 + 1e-5
