"""precision / channels_last / compile (advlab.victims.acceleration): the victim's forward runs under autocast
and returns float32; attack iterates, bounds and the evaluate loop's outcomes stay float32, so every bound
holds and every reported success is an fp32 success in every precision; channels_last changes no output;
compile works or falls back to the eager forward with a warning. All on CPU (bf16 and fp16 autocast run
there)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import make_cfg
from omegaconf import OmegaConf
from oracle_helpers import digits_tensors, tiny_victim
from torch import nn

from advlab.attacks.base import ATTACKS
from advlab.attacks.perturbation import lp_norm
from advlab.errors import ConfigError
from advlab.loops.evaluate import EvalConfig, evaluate
from advlab.validation import check_config
from advlab.victims.acceleration import accelerate, compile_victim, full_precision, grad_scaler
from advlab.victims.base import Victim
from advlab.victims.configs import Acceleration

CPU = torch.device("cpu")
N = 24


@pytest.fixture(scope="module")
def tiny():
    net, task, x, y = tiny_victim()
    return net, task, x[:N], y[:N]


def victim_of(net: nn.Module, acceleration: Acceleration) -> Victim:
    return accelerate(Victim(net, (0.0,), (1.0,)), acceleration)  # identity normalisation: victim == net


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_forward_returns_float32_and_full_precision_is_the_fp32_forward(tiny, precision):
    net, _, x, _ = tiny
    victim = victim_of(net, Acceleration(precision=precision))
    with torch.no_grad():
        exact = net(x)
        low = victim(x)
        with full_precision(victim):
            full = victim(x)
    assert low.dtype == torch.float32 and torch.equal(full, exact)
    assert 0 < (low - exact).abs().max() < 0.1  # the forward did run in 16 bits, and close to fp32


ATTACK_PARAMS = {
    "fgsm": {"eps": 0.1},
    "pgd": {"eps": 0.1, "steps": 5},
    "pgd_l2": {"eps": 1.0, "steps": 5, "norm": "l2"},
    "mi_fgsm": {"eps": 0.1, "steps": 5},
    "apgd": {"eps": 0.1, "steps": 10},
    "square": {"eps": 0.1, "queries": 30},
    "fab": {"eps": 0.1, "steps": 10},
}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("name", sorted(ATTACK_PARAMS))
def test_bounds_hold_in_low_precision(tiny, name, precision):
    net, task, x, y = tiny
    params = dict(ATTACK_PARAMS[name])
    victim = victim_of(net, Acceleration(precision=precision))
    attack = ATTACKS.create("pgd" if name == "pgd_l2" else name, task, **params)
    torch.manual_seed(0)
    x_adv = attack(victim, x, y)
    norm, eps = params.get("norm", "linf"), params["eps"]
    assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    if name != "fab":  # FAB is minimal-norm: its eps only decides what counts as a success
        assert lp_norm(x_adv - x, norm).max() <= eps + 1e-6
    with torch.no_grad():
        flipped = (net(x_adv).argmax(1) != y).float().mean()
    assert flipped > 0  # the low-precision attack still attacks (a zero gradient would leave x unchanged)


class _Data:
    """The digits test split at 16 px as a data module (what the evaluate loop reads)."""

    def __init__(self):
        from advlab.data.base import DATASETS
        from advlab.registry import parse_config

        cfg = parse_config(DATASETS.get("digits").Config, {"name": "digits", "size": 16}, "d")
        self.module = DATASETS.build(cfg, 0)


def near_tie(net: nn.Module) -> nn.Module:
    """``net`` followed by ``z -> 2048 + z / 100``: the same argmax in fp32, but in 16 bits (spacing 2 or 16 at
    2048) most logits round to ties, so a low-precision forward classifies very differently."""
    head = nn.Linear(10, 10)
    with torch.no_grad():
        head.weight.copy_(torch.eye(10) / 100)
        head.bias.fill_(2048.0)
    return nn.Sequential(net, head).eval().requires_grad_(False)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_evaluate_decides_outcomes_in_fp32(tiny, precision):
    """clean/acc, adv/acc and attack/asr are the fp32 victim's on the attack's images, whatever the attack's
    precision; attack/linf_max is the bound."""
    net, task, _, _ = tiny
    net = near_tie(net)
    data = _Data().module
    victim = victim_of(net, Acceleration(precision=precision)).eval()
    attack = ATTACKS.create(
        "fgsm", task, eps=0.1
    )  # deterministic: the direct computation sees the same images
    r = evaluate(victim, task, data, attack, EvalConfig(batch_size=40, num_examples=80), CPU, 0, False)
    x, y = data.dataset("test").tensors
    x, y = x[:80], y[:80]
    x_adv = torch.cat([attack(victim, x[i : i + 40], y[i : i + 40]) for i in (0, 40)])
    with torch.no_grad():
        clean, adv = net(x).argmax(1), net(x_adv).argmax(1)
        assert (victim(x).argmax(1) != clean).float().mean() > 0.3  # the 16-bit forward decides differently
    correct = clean == y
    assert r.metrics["clean/acc"] == pytest.approx(correct.float().mean().item(), abs=1e-7)
    assert r.metrics["adv/acc"] == pytest.approx((adv == y).float().mean().item(), abs=1e-7)
    flipped = (correct & (adv != y)).sum().item() / correct.sum().item()
    assert r.metrics["attack/asr"] == pytest.approx(flipped, abs=1e-7)
    assert r.metrics["attack/linf_max"] <= 0.1 + 1e-6


def test_fp16_training_scales_the_loss_and_learns():
    from advlab.data.base import DATASETS
    from advlab.defenses.base import DEFENSES
    from advlab.loops.configs import TrainConfig
    from advlab.loops.fit import fit
    from advlab.registry import parse_config
    from advlab.tasks.base import TASKS

    data = DATASETS.build(parse_config(DATASETS.get("digits").Config, {"name": "digits", "size": 16}, "d"), 0)
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), data.info
    )
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(256, 32), nn.ReLU(), nn.Linear(32, 10))
    victim = victim_of(net, Acceleration(precision="fp16"))
    assert (
        grad_scaler(victim, CPU).is_enabled()
        and not grad_scaler(Victim(net, (0.0,), (1.0,)), CPU).is_enabled()
    )
    fit(
        victim,
        task,
        data,
        TrainConfig(epochs=2, lr=1e-2),
        DEFENSES.create("none", task),
        CPU,
        0,
        progress=False,
    )
    assert all(p.dtype == torch.float32 for p in victim.parameters())  # fp32 master weights
    x, y = data.dataset("test").tensors
    with torch.no_grad():
        assert (net(x).argmax(1) == y).float().mean() > 0.8


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()  # fmt: skip


def test_channels_last_gives_the_same_outputs_and_input_gradients():
    x = digits_tensors(16)[2][:16]
    plain = Victim(conv_net(), (0.5,), (0.25,))
    cl = accelerate(Victim(conv_net(), (0.5,), (0.25,)), Acceleration(channels_last=True))
    assert cl.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    outs, grads = [], []
    for victim in (plain, cl):
        xi = x.clone().requires_grad_(True)
        out = victim(xi)
        (grad,) = torch.autograd.grad(out.logsumexp(1).sum(), xi)
        outs.append(out)
        grads.append(grad)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)


def test_jacobians_under_torch_func_run_in_fp32():
    """JMA's vectorised Jacobian (vjp + vmap) through a bf16 victim: the forward runs in fp32 there (autocast's
    batched backward fails for conv + batch norm), giving the fp32 Jacobian exactly."""
    from advlab.attacks.jma import output_jacobian

    x = digits_tensors(16)[2][:4]
    plain = Victim(conv_net(), (0.5,), (0.25,))
    low = accelerate(Victim(conv_net(), (0.5,), (0.25,)), Acceleration(precision="bf16"))
    f_low, jac_low = output_jacobian(low, x)
    f, jac = output_jacobian(plain, x)
    assert torch.equal(f_low, f) and torch.equal(jac_low, jac)


def test_compile_works_with_a_backend(monkeypatch):
    """The victim's call goes through torch.compile (dynamo with the eager backend: no C++ build in a test)."""
    compiled = []
    real = torch.compile

    def eager_compile(fn, *args, **kwargs):
        compiled.append(kwargs.get("mode"))
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    x = digits_tensors(16)[2][:8]
    expected = Victim(conv_net(), (0.5,), (0.25,))(x)
    victim = compile_victim(accelerate(Victim(conv_net(), (0.5,), (0.25,)), Acceleration(compile="default")))
    compile_victim(victim)  # compiled once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = victim(x)
    assert compiled == ["default"] and victim._compiled_call_impl is not None
    torch.testing.assert_close(out, expected)
    assert set(victim.state_dict()) == set(Victim(conv_net(), (0.5,), (0.25,)).state_dict())


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    def failing_backend(gm, example_inputs):
        raise RuntimeError("no compiler on this platform")

    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: real(fn, backend=failing_backend))
    x = digits_tensors(16)[2][:8]
    expected = Victim(conv_net(), (0.5,), (0.25,))(x)
    victim = compile_victim(
        accelerate(Victim(conv_net(), (0.5,), (0.25,)), Acceleration(compile="max-autotune"))
    )
    with pytest.warns(RuntimeWarning, match="compile=max-autotune: torch.compile of the victim failed"):
        out = victim(x)
    torch.testing.assert_close(out, expected)
    assert victim._compiled_call_impl is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; eager from now on
        torch.testing.assert_close(victim(x), expected)


def test_default_victim_call_is_the_module_call():
    victim = accelerate(Victim(conv_net(), (0.5,), (0.25,)), Acceleration())
    assert victim._acceleration is None  # nn.Module's call, untouched


def test_bad_values_are_refused_before_torch_with_the_key_and_choices():
    cfg = OmegaConf.merge(make_cfg(), {"precision": "fp8", "channels_last": "yes", "compile": True})
    with pytest.raises(ConfigError) as exc:
        check_config(cfg)
    text = str(exc.value)
    assert "precision: must be one of fp32, bf16, fp16 (got 'fp8')" in text
    assert "channels_last: must be true or false (got 'yes')" in text
    assert "compile: must be false, default or max-autotune (got True)" in text
    spec = check_config(make_cfg("precision=bf16", "channels_last=true", "compile=max-autotune"))
    assert spec.acceleration == Acceleration("bf16", True, "max-autotune")
    assert check_config(make_cfg()).acceleration.is_default


@pytest.mark.slow
@pytest.mark.parametrize("override", ["precision=bf16", "channels_last=true"])
def test_run_keeps_the_bound(digits_setup, tmp_path, override):
    """The issue's check: ``advlab <override> eval.num_examples=64 logger=none`` runs on CPU with
    attack/linf_max <= eps (bf16 trains its own victim: one epoch here, to keep the test short)."""
    from advlab.runner import run

    extra = ["train.epochs=1"] if override.startswith("precision") else []
    cfg = make_cfg("device=cpu", override, "eval.num_examples=64", *extra)
    res = run(cfg, tmp_path / "run")
    m = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert m == res["metrics"] and m["eval/num_examples"] == 64
    assert m["attack/linf_max"] <= cfg.attack.eps + 1e-6 and m["clean/acc"] > 0.5
