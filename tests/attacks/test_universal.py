"""The universal-perturbation seam: the standard pipeline optimises a universal attack on the training split,
saves it, applies it to the test split, resumes after a kill, and reloads a saved perturbation."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import fit_whole_and_resumed, make_cfg

from advlab.attacks.base import ATTACKS
from advlab.context import build_spec
from advlab.errors import ConfigError
from advlab.runner import run

EPS = 0.1
UNIVERSAL = ["device=cpu", "attack=universal_linf", f"attack.eps={EPS}", "attack.lr=0.01", "attack.epochs=2",
             "attack.max_batches_per_epoch=12", "eval.num_examples=256"]  # fmt: skip


def test_universal_noise_run_lowers_accuracy_within_its_bound(digits_setup, tmp_path):
    results = run(make_cfg(*UNIVERSAL), tmp_path / "run")
    m = results["metrics"]
    noise = torch.load(tmp_path / "run" / "perturbation.pt", weights_only=True)["noise"]
    _, _, data, _ = digits_setup
    assert noise.shape == data.info.image_shape
    assert noise.abs().max() <= EPS + 1e-6
    assert m["attack/linf_max"] <= EPS + 1e-6
    assert m["adv/acc"] < m["clean/acc"] - 0.05  # one noise for all images still hurts the digits model
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["universal/epoch"] for r in rows if "universal/epoch" in r] == [1, 2]
    assert not (tmp_path / "run" / "universal_state.pt").exists()  # cleaned up once the run finished

    # the saved perturbation applied by a second run gives the same numbers, without optimising
    again = run(make_cfg(*UNIVERSAL, f"attack.perturbation_path={tmp_path / 'run' / 'perturbation.pt'}"),
                tmp_path / "again")  # fmt: skip
    assert again["metrics"]["adv/acc"] == m["adv/acc"]
    assert not (tmp_path / "again" / "perturbation.pt").exists()


def test_killed_universal_optimisation_resumes_to_the_same_perturbation(digits_setup, tmp_path):
    model, task, data, _ = digits_setup

    def attack(epochs):
        spec = build_spec(make_cfg(*UNIVERSAL, f"attack.epochs={epochs}"))
        return ATTACKS.build(spec.attack, task)

    whole, resumed, history = fit_whole_and_resumed(attack, model, data, 3, tmp_path)
    assert [h["universal/epoch"] for h in history] == [1, 2]
    torch.testing.assert_close(resumed.state_dict()["noise"], whole.state_dict()["noise"])
    assert whole.state_dict()["noise"].abs().max() > 0


def test_unknown_pipeline_names_the_key():
    with pytest.raises(ConfigError, match="pipeline.name: unknown pipeline 'nope'. Available: .*standard"):
        build_spec(make_cfg("pipeline.name=nope"))


def test_missing_perturbation_file_fails_fast(tmp_path):
    with pytest.raises(ConfigError, match="attack.perturbation_path: file .* does not exist"):
        build_spec(make_cfg(*UNIVERSAL, f"attack.perturbation_path={tmp_path / 'missing.pt'}"))
