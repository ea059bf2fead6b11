"""The JMA baselines through the runner (as ``python -m advlab`` runs them, logger off, tiny settings): MLA-LP
and SemA-ML on the embedded multi-label experiment, the ECOC attack on the embedded digits ECOC task; the
attack metrics are written and within their ranges."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_cfg

from advlab.runner import run

# the victim settings of test_jma_runs' end-to-end test (same cache key: trained once per session)
SMALL_ML = ["dataset.num_train=600", "train.epochs=2", "eval.num_examples=8", "eval.batch_size=8"]
KEYS = ("attack/asr", "attack/basr", "attack/iters", "attack/time_per_image_s", "attack/linf_max")


def metrics_of(run_dir) -> dict[str, float]:
    return json.loads((run_dir / "results.json").read_text())["metrics"]


def check_common(m: dict[str, float], keys=KEYS) -> None:
    for key in keys:
        assert key in m, key
    assert 0.0 <= m["attack/asr"] <= 1.0
    assert m["attack/time_per_image_s"] > 0
    assert m["eval/num_examples"] == 8
    assert 0.0 <= m.get("attack/linf_max", 0.0) <= 1.0


@pytest.mark.slow
def test_mla_lp_and_sema_ml_through_the_runner(tmp_path):
    mla = tmp_path / "mla_lp"
    run(make_cfg("experiment=jma_digits_multilabel", "attack=mla_lp", "attack.max_iters=30", *SMALL_ML), mla)
    m = metrics_of(mla)
    check_common(m)
    assert 0.0 <= m["attack/basr"] <= 1.0 and m["attack/basr"] >= m["attack/asr"] - 1e-9
    assert 0.0 <= m["attack/iters"] <= 30
    if m["attack/asr"] > 0:
        assert m["attack/mse"] > 0

    sema = tmp_path / "sema_ml"
    overrides = [
        "attack=sema_ml",
        "attack.graph_path=digits_synthetic",
        "attack.eps=0.3",
        "attack.step_size=0.02",
    ]
    run(make_cfg("experiment=jma_digits_multilabel", *overrides, "attack.max_iters=60", *SMALL_ML), sema)
    m = metrics_of(sema)
    check_common(m, (*KEYS, "attack/target_changed"))
    assert m["attack/linf_max"] <= 0.3 + 1e-5  # the Linf bound
    assert 0.0 <= m["attack/iters"] <= 60
    assert 0.0 <= m["attack/target_changed"] <= 1.0 and 0.0 <= m["attack/consistent_reached"] <= 1.0
    # success against the requested target needs the consistent target to be the requested one
    assert m["attack/asr"] <= 1.0 - m["attack/target_changed"] + 1e-9
    targets = torch.load(sema / "targets.pt")
    assert torch.equal(targets, torch.load(mla / "targets.pt"))  # the same seeded requested targets


@pytest.mark.slow
def test_ecoc_attack_through_the_runner(tmp_path):
    out = tmp_path / "ecoc"
    run(
        make_cfg(
            "dataset=digits",
            "task.name=ecoc",
            "+task.code_length=16",
            "train.epochs=2",
            "attack=ecoc_attack",
            "attack.steps=50",
            "attack.binary_search_steps=2",
            "eval.num_examples=8",
            "eval.batch_size=8",
        ),
        out,
    )
    m = metrics_of(out)
    check_common(m, ("attack/asr", "attack/iters", "attack/iters_total", "attack/time_per_image_s"))
    assert 0 <= m["attack/iters"] <= m["attack/iters_total"] <= 2 * 50
    assert "clean/acc" in m
    targets = torch.load(out / "targets.pt")
    assert targets.shape == (8,) and targets.dtype == torch.long
