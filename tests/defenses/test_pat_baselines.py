"""PAT Table 2 baselines as defenses: TRADES, adversarial training against StAdv / ReColorAdv, "AT all"
(random / average / max over threat models); the fit loop's gradient-value clipping."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cfg
from pat_helpers import small_info

from advlab.defenses.base import DEFENSES
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS
from advlab.victims.base import Victim
from advlab.victims.smallcnn import small_cnn


@pytest.fixture(scope="module")
def setup():
    info = small_info(16)
    task = TASKS.create("classification", info)
    torch.manual_seed(0)
    model = Victim(small_cnn(3, 10, 16, 8, 32), info.mean, info.std)
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 10
    return model, task, x, y


def kl(p_logits, q_logits):
    """sum_c p_c (log p_c - log q_c), per example."""
    p = p_logits.softmax(1)
    return (p * (p.log() - q_logits.log_softmax(1))).sum(1)


def test_trades_inner_maximisation_stays_in_the_ball_and_raises_the_kl(setup):
    model, task, x, y = setup
    trades = DEFENSES.create("trades", task, eps=0.05, step_size=0.02, steps=5)
    torch.manual_seed(3)
    model.train()
    x_adv = trades.inner_maximisation(model, x)
    assert model.training and all(p.requires_grad for p in model.parameters())  # restored after the attack
    assert (x_adv - x).abs().max() <= 0.05 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()
    with torch.no_grad():
        start = kl(model(x), model((x + 0.001 * torch.randn_like(x)).clamp(0, 1)))
        assert kl(model(x), model(x_adv)).mean() > 10 * start.mean()


def test_trades_loss_is_clean_cross_entropy_plus_beta_kl(setup):
    model, task, x, y = setup
    trades = DEFENSES.create("trades", task, beta=3.0, steps=2)
    batch, labels = trades.training_batch(model, x, y)
    assert batch.shape[0] == 2 * x.shape[0] and torch.equal(batch[: x.shape[0]], x)
    model.eval()  # (deterministic BN for the comparison)
    outputs, loss = trades.training_loss(model, batch, labels)
    clean, adv = model(batch[:8]), model(batch[8:])
    expected = F.cross_entropy(clean, y) + 3.0 * kl(clean, adv).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(outputs, adv)
    loss.backward()  # gradients flow through both distributions
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_trades_refuses_a_task_without_class_distributions():
    task = TASKS.create("multilabel", small_info(16))
    with pytest.raises(ConfigError, match="defense=trades"):
        DEFENSES.create("trades", task)


def _fgsm(eps):
    return {"name": "fgsm", "eps": eps}


def test_at_all_average_and_max_follow_their_definitions(setup):
    model, task, x, y = setup
    attacks = {"a": _fgsm(0.02), "b": _fgsm(0.1)}
    model.eval()
    per = []
    for eps in (0.02, 0.1):
        single = DEFENSES.create("multi_adv_training", task, attacks={"only": _fgsm(eps)}, mode="average")
        xa, _ = single.training_batch(model, x, y)
        per.append(F.cross_entropy(model(xa), y, reduction="none"))
    per = torch.stack(per)
    for mode, expected in (("average", per.mean()), ("max", per.max(0).values.mean())):
        defense = DEFENSES.create("multi_adv_training", task, attacks=attacks, mode=mode)
        batch, labels = defense.training_batch(model, x, y)
        assert batch.shape[0] == 2 * x.shape[0] and torch.equal(labels, y.repeat(2))
        _, loss = defense.training_loss(model, batch, labels)
        torch.testing.assert_close(loss, expected)


def test_at_all_random_trains_each_batch_on_one_uniformly_drawn_attack(setup):
    model, task, x, y = setup
    model.eval()
    defense = DEFENSES.create("multi_adv_training", task, attacks={"a": _fgsm(0.02), "b": _fgsm(0.1)})
    sizes = []
    for _ in range(40):
        batch, labels = defense.training_batch(model, x, y)
        assert batch.shape == x.shape and torch.equal(labels, y)
        sizes.append(round(float((batch - x).abs().max()), 3))
    assert set(sizes) == {0.02, 0.1} and 8 <= sizes.count(0.02) <= 32


def test_multi_adv_training_config_errors_name_their_key(setup):
    _, task, _, _ = setup
    with pytest.raises(ConfigError, match="defense.mode"):
        DEFENSES.parse({"name": "multi_adv_training", "attacks": {"a": _fgsm(0.1)}, "mode": "min"})
    with pytest.raises(ConfigError, match="defense.attacks.a"):
        DEFENSES.parse({"name": "multi_adv_training", "attacks": {"a": {"name": "none"}}})
    with pytest.raises(ConfigError, match="train.grad_clip_value"):
        from advlab.context import build_spec

        build_spec(make_cfg("train.grad_clip_value=-1"))


def test_gradient_value_clipping_bounds_every_entry():
    from advlab.loops.fit import TrainConfig

    assert TrainConfig().grad_clip_value is None
    p = torch.nn.Parameter(torch.zeros(5))
    (p * torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0])).sum().backward()
    torch.nn.utils.clip_grad_value_([p], 1.0)
    assert torch.equal(p.grad, torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))


TINY = (
    "dataset.test_fraction=0.9", "dataset.size=16", "victim.width=8", "victim.hidden=32", "train.epochs=1",
    "attack=none", "eval.num_examples=16", "eval.grid_examples=0", "device=cpu",
)  # fmt: skip
PRESETS = {
    "trades": ("defense.steps=2",),
    "at_stadv": ("defense.attack.steps=2",),
    "at_recoloradv": ("dataset.channels=3", "defense.attack.steps=2"),
    "at_all_random": ("dataset.channels=3", *(f"defense.attacks.{a}.steps=1" for a in ("linf", "l2", "stadv", "recoloradv"))),
    "at_all_average": ("dataset.channels=3", *(f"defense.attacks.{a}.steps=1" for a in ("linf", "l2", "stadv", "recoloradv"))),
    "at_all_max": ("dataset.channels=3", *(f"defense.attacks.{a}.steps=1" for a in ("linf", "l2", "stadv", "recoloradv"))),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(PRESETS))
def test_baseline_defense_presets_train_on_the_digits_composition(tmp_path, preset):
    from advlab.runner import run

    res = run(
        make_cfg(f"defense={preset}", "train.grad_clip_value=1.0", *TINY, *PRESETS[preset]), tmp_path / "r"
    )
    assert res["victim"]["source"] == "trained"
    assert 0.0 <= res["metrics"]["clean/acc"] <= 1.0
    assert res["config"]["defense"]["name"] in ("trades", "adv_training", "multi_adv_training")
