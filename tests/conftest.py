"""Shared fixtures. Every test session uses its own victim cache (ADVLAB_CACHE_DIR), so tests never read or
write the user's cache; the default digits victim is trained once per session and reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from advlab.config_files import compose_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("advlab-cache")
    old = os.environ.get("ADVLAB_CACHE_DIR")
    os.environ["ADVLAB_CACHE_DIR"] = str(cache)
    os.environ.setdefault("WANDB_SILENT", "true")
    yield cache
    if old is None:
        os.environ.pop("ADVLAB_CACHE_DIR", None)
    else:
        os.environ["ADVLAB_CACHE_DIR"] = old


def make_cfg(*overrides: str) -> DictConfig:
    """Compose the app's config like the CLI does (logger off and no progress bars unless overridden)."""
    return compose_config("logger=none", "progress=false", *overrides)


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m advlab ARGS`` in a subprocess (same interpreter, same env)."""
    return subprocess.run(
        [sys.executable, "-m", "advlab", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="session")
def digits_setup(isolated_cache):
    """(model, task, data, spec) for the default config: the small CNN trained on digits (cached)."""
    from advlab.context import build_spec, prepare_victim
    from advlab.data.base import DATASETS
    from advlab.defenses.base import DEFENSES
    from advlab.loggers.base import Tracker
    from advlab.recorder import RunRecorder
    from advlab.tasks.base import TASKS

    spec = build_spec(make_cfg("device=cpu"))
    data = DATASETS.build(spec.dataset, spec.seed)
    task = TASKS.build(spec.task, data.info)
    defense = DEFENSES.build(spec.defense, task)
    rec_dir = isolated_cache / "fixture-run"
    rec_dir.mkdir(exist_ok=True)
    model, info = prepare_victim(spec, data, task, defense, RunRecorder(rec_dir, Tracker(None)))
    model.eval().requires_grad_(False)
    return model, task, data, spec


@pytest.fixture(scope="session")
def digits_batch(digits_setup):
    """256 test images with labels, and the subset the model classifies correctly."""
    model, task, data, _ = digits_setup
    x, y = data.dataset("test").tensors
    x, y = x[:256], y[:256]
    with torch.no_grad():
        correct = task.correct(model(x), y)
    return x, y, correct


def fit_whole_and_resumed(make_attack, model, data, seed: int, tmp_path: Path):
    """A universal perturbation fitted for 2 epochs in one go, and the same fit killed after epoch 1 and resumed
    from its state file: returns (whole attack, resumed attack, the resumed run's epoch history)."""
    from advlab.loops.universal import fit_universal

    cpu = torch.device("cpu")
    whole = make_attack(2)
    fit_universal(whole, model, data, cpu, seed=seed, progress=False)
    resume = tmp_path / "state.pt"
    fit_universal(make_attack(1), model, data, cpu, seed=seed, resume_path=resume, progress=False)
    resumed = make_attack(2)
    history = fit_universal(resumed, model, data, cpu, seed=seed, resume_path=resume, progress=False)
    return whole, resumed, history
