"""AutoAttack and its components (APGD, FAB, Square), each checked against its definition: the reference's
step-size checkpoints, FAB's hyperplane-box projection against scipy, Square's schedule of p and its bounds,
AutoAttack's stages (each on the examples still robust, the per-stage robust accuracy, restarts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_cfg, run_cli
from oracle_helpers import tiny_victim
from scipy.optimize import linprog, minimize

from advlab.attacks.apgd import APGD, checkpoints
from advlab.attacks.base import ATTACKS
from advlab.attacks.fab import project_hyperplane_box
from advlab.attacks.square import p_schedule, square_pattern
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.registry import parse_config
from advlab.tasks.base import TASKS


@pytest.fixture(scope="module")
def victim():
    model, task, x, y = tiny_victim()
    return model, task, x[:48], y[:48]


def reference_schedule(n: int) -> list[int]:
    """The reference's loop, written out: a check every k steps, k from int(0.22 n) down by int(0.03 n)
    to int(0.06 n) (each at least 1)."""
    k, decr, floor = max(int(0.22 * n), 1), max(int(0.03 * n), 1), max(int(0.06 * n), 1)
    out, counter = [], 0
    for i in range(n):
        counter += 1
        if counter == k:
            out.append(i + 1)
            counter = 0
            k = max(k - decr, floor)
    return out


def test_apgd_checkpoints_are_the_reference_integer_schedule():
    assert checkpoints(100)[:3] == [22, 41, 57]
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(20) == [4, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]
    for n in (1, 5, 10, 37, 100, 250, 1000):
        assert checkpoints(n) == reference_schedule(n), n


def test_apgd_step_size_rule_is_the_references(victim):
    """The objective is programmed per example (zero gradient, so nothing moves) and the final step size is
    read back. 10 steps: checkpoints after steps 2, 3, ..., 10; rho = 0.5.

    * increasing at every step: never halved (2 eps);
    * A: 1 increase in the first 2 steps (the first step counts against the reference's zero-initialised
      history) -> 1 <= rho * 2 halves it once (the reference's ``<=``; ``<`` would not), then increasing;
    * B: constant 1.0: step 1 counts as an increase (1 > 0); 1 <= 0.5 * 2 halves at step 2, then every
      checkpoint halves again (0 increases): 9 halvings."""
    model, task, x, y = victim
    attack = ATTACKS.create("apgd", task, eps=0.5, steps=10, rho=0.5)
    table = torch.tensor(
        [
            [0.1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],  # increasing
            [0.1, 1, 0.5, 2, 3, 4, 5, 6, 7, 8, 9],  # A
            [1.0] * 11,  # B
        ]
    )
    calls = []

    def programmed(out):
        calls.append(1)
        return table[:, len(calls) - 1] + 0 * out.sum(1)

    attack._run(model, x[:3], programmed, lambda out: torch.zeros(out.shape[0], dtype=torch.bool))
    assert len(calls) == 11
    assert torch.allclose(attack.last_step_size, torch.tensor([1.0, 0.5, 1.0 / 2**9]))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_projection_is_the_min_norm_point_of_hyperplane_and_box(norm):
    g = torch.Generator().manual_seed(0)
    n = 7
    t = torch.rand(6, n, generator=g, dtype=torch.float64)
    w = torch.randn(6, n, generator=g, dtype=torch.float64)
    w[0, 2] = 0  # a coordinate the hyperplane does not involve
    b = (w * t).sum(1) + torch.randn(6, generator=g, dtype=torch.float64) * 0.5
    b[5] = (w[5] * t[5]).sum() + 1e3  # out of the box's reach: the nearest corner
    d = project_hyperplane_box(t, w, b, norm)
    assert ((t + d) >= -1e-12).all() and ((t + d) <= 1 + 1e-12).all()
    for i in range(5):
        ti, wi, bi = t[i].numpy(), w[i].numpy(), float(b[i])
        lo, hi = -ti, 1 - ti
        assert float((w[i] * (t[i] + d[i])).sum()) == pytest.approx(bi, abs=1e-9)
        if norm == "linf":  # min s s.t. -s <= d_j <= s, w.d = b - w.t, lo <= d <= hi
            c = np.r_[np.zeros(n), 1.0]
            a_ub = np.block([[np.eye(n), -np.ones((n, 1))], [-np.eye(n), -np.ones((n, 1))]])
            res = linprog(
                c,
                A_ub=a_ub,
                b_ub=np.zeros(2 * n),
                A_eq=np.r_[wi, 0.0][None],
                b_eq=[bi - wi @ ti],
                bounds=[(lo[j], hi[j]) for j in range(n)] + [(0, None)],
            )
            assert float(d[i].abs().max()) == pytest.approx(res.fun, abs=1e-7)
        else:
            res = minimize(
                lambda v: v @ v,
                np.zeros(n),
                jac=lambda v: 2 * v,
                method="SLSQP",
                constraints=[{"type": "eq", "fun": lambda v, wi=wi, r=bi - wi @ ti: wi @ v - r}],
                bounds=list(zip(lo, hi)),
                options={"ftol": 1e-14, "maxiter": 500},
            )
            assert np.allclose(d[i].numpy(), res.x, atol=1e-5)
    assert d[0, 2] == 0
    corner = torch.where(w[5] > 0, 1 - t[5], -t[5])  # towards increasing <w, .>
    assert torch.allclose(d[5], torch.where(w[5] == 0, torch.zeros_like(corner), corner))


def test_square_p_follows_the_reference_schedule():
    expected = {
        0: 0.8,
        10: 0.8,
        11: 0.4,
        50: 0.4,
        51: 0.2,
        200: 0.2,
        201: 0.1,
        501: 0.05,
        1001: 0.025,
        2001: 0.0125,
        4001: 0.00625,
        6001: 0.003125,
        8001: 0.0015625,
        9999: 0.0015625,
    }
    for i, p in expected.items():
        assert p_schedule(i, 0.8, 5000, rescale=False) == pytest.approx(p), i
    # rescaled to 1000 queries: iteration 100 is iteration 1000 of the 10000-query scale
    assert p_schedule(100, 0.8, 1000, rescale=True) == pytest.approx(0.05)
    assert p_schedule(101, 0.8, 1000, rescale=True) == pytest.approx(0.025)


def test_square_l2_pattern_is_two_opposite_unit_pyramids():
    for s in (3, 5, 8):
        pat = square_pattern(s, flip=False)
        assert pat.shape == (s, s) and pat.norm() == pytest.approx(1.0)
        assert (pat[: s // 2] > 0).all() and (pat[s // 2 :] < 0).all()
        assert torch.equal(square_pattern(s, flip=True), pat.t())


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_square_stays_in_the_ball_and_only_lowers_accuracy(victim, norm, eps):
    model, task, x, y = victim
    torch.manual_seed(0)
    x_adv = ATTACKS.create("square", task, norm=norm, eps=eps, queries=100)(model, x, y)
    d = (x_adv - x).flatten(1)
    assert (d.abs().amax(1) if norm == "linf" else d.norm(dim=1)).max() <= eps * (1 + 1e-5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        clean, adv = model(x).argmax(1) == y, model(x_adv).argmax(1) == y
    assert (adv <= clean).all() and adv.sum() < clean.sum()
    assert torch.equal(x_adv[adv], x[adv])  # the robust examples keep their clean image


def test_autoattack_stages_run_on_the_robust_examples_and_log_non_increasing_accuracy(victim, monkeypatch):
    model, task, x, y = victim
    aa = ATTACKS.create("autoattack", task, eps=0.08, steps=5, queries=50, n_target_classes=2)
    assert list(aa.stages) == ["apgd_ce", "apgd_t", "fab_t", "square"]
    seen = {}
    for name, stage in aa.stages.items():
        real = stage.perturb

        def spy(model_, xs, ys, t, real=real, name=name):
            seen[name] = xs.shape[0]
            return real(model_, xs, ys, t)

        monkeypatch.setattr(stage, "perturb", spy)
    torch.manual_seed(0)
    x_adv = aa(model, x, y)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
        final = model(x_adv).argmax(1) == y
    accs = [aa.batch_stats[f"autoattack/{s}/acc"] for s in ("apgd_ce", "apgd_t", "fab_t", "square")]
    assert seen["apgd_ce"] == int(clean.sum())  # stage 1 on the correctly classified examples
    assert seen["apgd_t"] == int(accs[0].sum()) and seen["fab_t"] == int(accs[1].sum())
    assert seen.get("square", 0) == int(accs[2].sum())
    for prev, cur in zip(accs, accs[1:]):
        assert (cur <= prev).all()  # per example: once fooled, stays fooled
    assert torch.equal(accs[-1].bool(), final)  # the worst case over the stages is what is returned
    assert (x_adv - x).abs().max() <= 0.08 + 1e-6


@pytest.mark.parametrize(
    "version,stages",
    [
        ("plus", ["apgd_ce", "apgd_dlr", "fab", "square", "apgd_t", "fab_t"]),
        ("rand", ["apgd_ce", "apgd_dlr"]),
    ],
)
def test_autoattack_versions_are_the_reference_ones(victim, version, stages):
    task = victim[1]
    aa = ATTACKS.create("autoattack", task, version=version)
    assert list(aa.stages) == stages
    restarts = {n: s.params.restarts for n, s in aa.stages.items()}
    if version == "plus":
        assert restarts == {"apgd_ce": 5, "apgd_dlr": 5, "fab": 5, "square": 1, "apgd_t": 1, "fab_t": 1}
    else:
        assert all(s.params.eot_iter == 20 for s in aa.stages.values()) and set(restarts.values()) == {1}


def test_restarts_are_honoured_in_every_stage(victim, monkeypatch):
    """``restarts`` = runs per stage (per target for the targeted ones) on the examples not yet fooled."""
    model, task, x, y = victim
    calls = []
    real = APGD._run

    def counting(self, *args, **kwargs):
        calls.append(self.registered_name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(APGD, "_run", counting)
    torch.manual_seed(0)
    ATTACKS.create("apgd", task, eps=0.001, steps=2, restarts=3)(model, x, y)  # nothing is fooled
    assert calls == ["apgd"] * 3
    calls.clear()
    aa = ATTACKS.create("autoattack", task, version="rand", eps=0.001, steps=2, restarts=2, eot_iter=1)
    assert [s.params.restarts for s in aa.stages.values()] == [2, 2]
    aa(model, x, y)
    assert len(calls) == 4


def test_class_logit_attacks_refuse_other_tasks_with_the_key_and_a_fix():
    info = DataInfo(10, (3, 8, 8), [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(parse_config(TASKS.get("multilabel").Config, {"name": "multilabel"}, "t"), info)
    for name in ("autoattack", "apgd_t", "fab", "fab_t"):
        with pytest.raises(ConfigError, match=f"attack.name={name}.*task=classification"):
            ATTACKS.create(name, task)
    with pytest.raises(ConfigError, match="attack.name=apgd"):
        ATTACKS.create("apgd", task, loss="dlr")
    ATTACKS.create("apgd", task)  # APGD-CE on the task's own objective is task-generic
    ATTACKS.create("square", task)  # and so is Square (the task's margin)
    with pytest.raises(ConfigError, match="attack.version"):
        parse_config(ATTACKS.get("autoattack").Config, {"name": "autoattack", "version": "fast"}, "attack")


@pytest.mark.slow
def test_cli_autoattack_logs_each_stage_in_order_and_adv_acc_is_the_last(digits_setup, tmp_path):
    proc = run_cli(
        "attack=autoattack_linf",
        "attack.eps=0.1",
        "eval.num_examples=64",
        "logger=none",
        f"hydra.run.dir={tmp_path}",
        # small iteration/query counts: the same code paths as the defaults, in seconds
        "attack.steps=5",
        "attack.n_target_classes=2",
        "attack.queries=100",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "results.json").read_text())["metrics"]
    keys = [k for k in m if k.startswith("attack/autoattack/")]
    assert keys == [f"attack/autoattack/{s}/acc" for s in ("apgd_ce", "apgd_t", "fab_t", "square")]
    accs = [m[k] for k in keys]
    assert accs == sorted(accs, reverse=True) and accs[0] <= m["clean/acc"]
    assert m["adv/acc"] == accs[-1]
    assert m["attack/linf_max"] <= 0.1 + 1e-6


@pytest.mark.parametrize(
    "preset,deviations",
    [
        ("autoattack_linf", {}),
        ("autoattack_l2", {"norm": "l2", "eps": 1.0}),
        ("apgd_ce_t", {}),
        ("fab_t", {}),
        ("square_linf", {}),
    ],
)
def test_presets_repeat_only_the_defaults(preset, deviations):
    import dataclasses

    cfg = make_cfg(f"attack={preset}")
    cls = ATTACKS.get(cfg.attack.name)
    parsed = parse_config(cls.Config, cfg.attack, "attack")
    default = cls.Config(name=cfg.attack.name)
    diff = {
        f.name: getattr(parsed, f.name)
        for f in dataclasses.fields(parsed)
        if getattr(parsed, f.name) != getattr(default, f.name)
    }
    assert diff == deviations
