"""The evaluate loop's metrics equal the definitions computed directly on the same adversarial images."""

from __future__ import annotations

import pytest
import torch

from advlab.attacks.base import ATTACKS
from advlab.attacks.perturbation import lp_norm
from advlab.loops.evaluate import EvalConfig, evaluate
from advlab.registry import parse_config


def test_evaluate_metrics_match_direct_computation(digits_setup):
    model, task, data, _ = digits_setup
    cls = ATTACKS.get("fgsm")  # deterministic, so the direct computation sees the same images
    attack = cls(parse_config(cls.Config, {"name": "fgsm", "eps": 0.05}, "attack"), task)
    params = EvalConfig(batch_size=50, num_examples=120, grid_examples=4)
    r = evaluate(model, task, data, attack, params, torch.device("cpu"), 0, False)
    metrics, examples, targets = r.metrics, r.examples, r.targets
    x, y = data.dataset("test").tensors
    x, y = x[:120], y[:120]
    x_adv = attack(model, x, y)
    with torch.no_grad():
        clean_pred, adv_pred = model(x).argmax(1), model(x_adv).argmax(1)
    correct = clean_pred == y
    flipped = correct & (adv_pred != y)
    assert metrics["eval/num_examples"] == 120 and targets is None
    assert abs(metrics["clean/acc"] - correct.float().mean().item()) < 1e-6
    assert abs(metrics["adv/acc"] - (adv_pred == y).float().mean().item()) < 1e-6
    assert abs(metrics["attack/asr"] - flipped.sum().item() / correct.sum().item()) < 1e-6
    l2 = lp_norm(x_adv - x, "l2")
    assert abs(metrics["attack/l2"] - l2[flipped].mean().item()) < 1e-4
    assert abs(metrics["attack/linf_max"] - 0.05) < 1e-6
    assert metrics["attack/time_per_image_s"] > 0
    assert examples.x.shape[0] == 4 and torch.equal(examples.adv_pred, adv_pred[:4])


def test_targeted_evaluation_records_targets(digits_setup):
    model, task, data, _ = digits_setup
    cls = ATTACKS.get("pgd")
    attack = cls(
        parse_config(cls.Config, {"name": "pgd", "eps": 0.3, "steps": 20, "targeted": True}, "attack"), task
    )
    r = evaluate(model, task, data, attack, EvalConfig(num_examples=64), torch.device("cpu"), 0, False)
    metrics, targets = r.metrics, r.targets
    _, y = data.dataset("test").tensors
    assert targets.shape == (64,) and torch.all(targets != y[:64])
    assert metrics["attack/asr"] >= 0.9


def test_clean_only_evaluation(digits_setup):
    model, task, data, _ = digits_setup
    attack = ATTACKS.create("none", task)
    r = evaluate(model, task, data, attack, EvalConfig(), torch.device("cpu"), 0, False)
    metrics, examples = r.metrics, r.examples
    assert set(metrics) == {"clean/acc", "eval/num_examples"} and examples.x_adv is None
    assert metrics["eval/num_examples"] == len(data.dataset("test"))


def test_interrupted_evaluation_resumes_to_the_same_result(digits_setup, tmp_path):
    model, task, data, _ = digits_setup
    cls = ATTACKS.get("pgd")  # random start: the resumed run must restore the RNG to match
    attack = cls(
        parse_config(cls.Config, {"name": "pgd", "eps": 0.05, "steps": 3, "targeted": True}, "attack"), task
    )
    params = EvalConfig(batch_size=32, num_examples=160)
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    r = evaluate(model, task, data, attack, params, cpu, 0, False)
    reference, ref_targets = r.metrics, r.targets

    class Killed(Exception):
        pass

    original, calls = attack.perturb, []

    def killed_on_third_batch(*args):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return original(*args)

    state = tmp_path / "eval_state.pt"
    attack.perturb = killed_on_third_batch
    torch.manual_seed(0)
    with pytest.raises(Killed):
        evaluate(model, task, data, attack, params, cpu, 0, False, resume_path=state, checkpoint_every_s=0)
    assert torch.load(state, weights_only=False)["fields"]["next_batch"] == 2
    attack.perturb = original
    torch.manual_seed(12345)  # a different process state: the checkpoint must restore what matters
    r = evaluate(model, task, data, attack, params, cpu, 0, False, resume_path=state)
    resumed, targets = r.metrics, r.targets
    assert torch.equal(targets, ref_targets)
    for key, value in reference.items():
        if key != "attack/time_per_image_s":
            assert resumed[key] == pytest.approx(value), key
