from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.attacks.base import ATTACKS
from advlab.attacks.perturbation import lp_norm
from advlab.context import build_spec, prepare_victim
from advlab.data.base import DATASETS
from advlab.defenses.base import DEFENSES
from advlab.loggers.base import Tracker
from advlab.loops.evaluate import evaluate
from advlab.recorder import RunRecorder
from advlab.registry import parse_config
from advlab.tasks.base import TASKS

SMALL = (
    "dataset.size=16",
    "victim.width=16",
    "victim.hidden=64",
    "train.epochs=4",
    "device=cpu",
    "attack.eps=0.1",
    "attack.steps=10",
)


def test_adv_training_batch_is_inside_the_ball(digits_setup, digits_batch):
    model, task, _, _ = digits_setup
    x, y, _ = digits_batch
    cls = DEFENSES.get("adv_training")
    for norm, eps in (("linf", 0.1), ("l2", 1.0)):
        attack = {"name": "pgd", "norm": norm, "eps": eps, "steps": 3}
        params = parse_config(
            cls.Config, {"name": "adv_training", "attack": attack, "clean_fraction": 0.25}, "defense"
        )
        defense = cls(params, task)
        xb, yb = defense.training_batch(model, x[:32], y[:32])
        assert torch.equal(yb, y[:32]) and torch.equal(xb[:8], x[:8])  # a quarter stays clean
        assert lp_norm(xb - x[:32], norm).max() <= eps + 1e-6 and xb.min() >= 0 and xb.max() <= 1
        assert lp_norm(xb[8:] - x[8:32], norm).min() > 0


@pytest.mark.slow
def test_adversarial_training_makes_the_victim_robust(tmp_path):
    results = {}
    for defense in ("none", "adv_training"):
        extra = ["defense.attack.eps=0.1", "defense.attack.steps=5"] if defense != "none" else []
        spec = build_spec(make_cfg(*SMALL, f"defense={defense}", *extra))
        data = DATASETS.build(spec.dataset, spec.seed)
        task = TASKS.build(spec.task, data.info)
        d = DEFENSES.build(spec.defense, task)
        model, _ = prepare_victim(spec, data, task, d, RunRecorder(tmp_path, Tracker(None)))
        attack = ATTACKS.build(spec.attack, task)
        metrics = evaluate(model, task, data, attack, spec.eval, spec.device, 0, progress=False).metrics
        results[defense] = metrics
    assert results["none"]["adv/acc"] < 0.5
    assert results["adv_training"]["adv/acc"] > results["none"]["adv/acc"] + 0.3
    assert results["adv_training"]["clean/acc"] > 0.85


def test_adv_training_needs_an_untargeted_attack():
    from advlab.errors import ConfigError

    cls = DEFENSES.get("adv_training")
    with pytest.raises(ConfigError, match=r"defense\.attack: missing"):
        parse_config(cls.Config, {"name": "adv_training"}, "defense")
    with pytest.raises(ConfigError, match=r"defense\.attack\.name: adversarial training needs an attack"):
        parse_config(cls.Config, {"name": "adv_training", "attack": {"name": "none"}}, "defense")
    with pytest.raises(ConfigError, match=r"defense\.attack\.targeted"):
        parse_config(
            cls.Config, {"name": "adv_training", "attack": {"name": "fgsm", "targeted": True}}, "defense"
        )
    params = parse_config(
        cls.Config, {"name": "adv_training", "attack": {"name": "fgsm", "eps": 0.2}}, "defense"
    )
    assert params.attack == {"name": "fgsm", "targeted": False, "norm": "linf", "eps": 0.2}  # defaults filled
