"""``advlab -m hydra/sweeper=optuna``: the Optuna sweeper runs as shipped (conf/hydra/sweeper/optuna.yaml) and
optimises the task's headline metric under attack, which the app returns for every trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

TINY = ("dataset.size=16", "victim.width=8", "victim.hidden=32", "train.epochs=1", "device=cpu")


@pytest.mark.slow  # one interpreter, a one-epoch tiny victim, three 32-image PGD evaluations
def test_three_optuna_trials_minimise_the_accuracy_under_attack(tmp_path):
    command = [
        "-m",
        "hydra/sweeper=optuna",
        "hydra.sweeper.n_trials=3",
        "eval.num_examples=32",
        "logger=none",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "advlab",
            *command,
            *TINY,
            f"cache_dir={tmp_path / 'cache'}",
            "progress=false",
        ],
        cwd=tmp_path,  # multirun/ lands here
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (sweep,) = (tmp_path / "multirun").glob("*/*")
    trials = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [p.name for p in trials] == ["0", "1", "2"]
    results = [json.loads((t / "results.json").read_text()) for t in trials]
    steps = [r["config"]["attack"]["step_size"] for r in results]
    assert len(set(steps)) == 3 and all(0.001 <= s <= 0.05 for s in steps)  # the default search space
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accuracies = [r["metrics"]["adv/acc"] for r in results]  # classification's headline metric, attacked
    assert best["best_value"] == min(accuracies)  # direction: minimize (the attacker's search)
    assert best["best_params"]["attack.step_size"] == steps[accuracies.index(min(accuracies))]


def test_the_search_presets_compose_with_their_direction():
    from hydra import compose, initialize_config_dir

    from advlab.config_files import config_dir, register_defaults

    register_defaults()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        for preset, direction, keys in [
            ("optuna", "minimize", {"attack.step_size"}),
            ("pgd_search", "minimize", {"attack.step_size", "attack.restarts"}),
            ("adv_training_search", "maximize", {"defense.attack.eps", "train.lr"}),
        ]:
            cfg = compose(
                "config", [f"hydra/sweeper={preset}", "defense=adv_training"], return_hydra_config=True
            )
            sweeper = cfg.hydra.sweeper
            assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == direction, preset
            assert set(sweeper.params) == keys, preset
            assert sweeper.sampler._target_ == "optuna.samplers.TPESampler" and sweeper.sampler.seed == 0
