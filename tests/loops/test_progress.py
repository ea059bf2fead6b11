"""Progress off a TTY: one log line at most every ``progress_interval_s`` with done/total, rate and ETA; the
loops report through it (and a tqdm bar only on a TTY)."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import make_cfg, run_cli

from advlab import progress
from advlab.errors import ConfigError
from advlab.progress import Progress, format_duration, track

SMALL = ("dataset.size=16", "victim.width=8", "victim.hidden=32", "device=cpu")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(progress.time, "perf_counter", fake)
    return fake


def test_lines_at_most_every_interval_with_rate_and_eta(clock, caplog):
    caplog.set_level(logging.INFO, logger="advlab.progress")
    bar = Progress(10, "attack cw", tty=False, interval=30.0)
    for _ in range(10):
        clock.now += 7.0  # one batch every 7 s: lines after 5 batches (35 s) and 10 (70 s)
        bar.update()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "attack cw 0/10 batches (0%), ? batches/s, elapsed 0:00:00, ETA ?",  # the stage has begun
        "attack cw 5/10 batches (50%), 7 s/batch, elapsed 0:00:35, ETA 0:00:35",
        "attack cw 10/10 batches (100%), 7 s/batch, elapsed 0:01:10, ETA 0:00:00",
    ]


def test_resumed_loop_rates_only_the_work_done_now(clock, caplog):
    caplog.set_level(logging.INFO, logger="advlab.progress")
    bar = Progress(100, "StarGAN training", tty=False, interval=0.0, unit="iteration", initial=40)
    clock.now += 10.0
    bar.update(20)  # 20 iterations in 10 s -> 2/s, 40 left -> 20 s
    assert caplog.records[-1].getMessage() == (
        "StarGAN training 60/100 iterations (60%), 2 iterations/s, elapsed 0:00:10, ETA 0:00:20"
    )


def test_unknown_total_and_disabled(clock, caplog):
    caplog.set_level(logging.INFO, logger="advlab.progress")
    assert list(track(iter(range(3)), "stage", tty=False, interval=0.0, enabled=False)) == [0, 1, 2]
    assert not caplog.records

    def ticking():
        for i in range(2):
            clock.now += 0.5
            yield i

    list(track(ticking(), "stage", tty=False, interval=0.0))
    assert caplog.records[-1].getMessage() == "stage 2 batches, 2 batches/s, elapsed 0:00:01"


def test_format_duration_and_interval_validation():
    assert format_duration(3725.4) == "1:02:05" and format_duration(float("nan")) == "?"
    for bad in (-1, float("nan"), "often", True):
        with pytest.raises(ConfigError, match="progress_interval_s"):
            progress.configure(bad)
    progress.configure(5)
    assert progress.interval_s() == 5.0
    progress.configure()


def test_component_loops_follow_the_run_setting(clock, caplog):
    """``enabled=None`` (an attack's own loop): reports only when the run enabled progress."""
    caplog.set_level(logging.INFO, logger="advlab.progress")
    try:
        progress.configure(0, enabled=False)
        list(track(range(2), "inner", enabled=None, tty=False))
        assert not caplog.records
        progress.configure(0, enabled=True)
        list(track(range(2), "inner", enabled=None, tty=False))
        assert [r.getMessage().split(",")[0] for r in caplog.records] == [
            "inner 0/2 batches (0%)",
            "inner 1/2 batches (50%)",
            "inner 2/2 batches (100%)",
        ]
    finally:
        progress.configure()


def test_fit_and_evaluate_log_progress_off_tty(caplog):
    """The real loops, stderr not a TTY (pytest captures it), interval 0: one line per batch."""
    from advlab.attacks.base import ATTACKS
    from advlab.context import build_spec
    from advlab.data.base import DATASETS
    from advlab.defenses.base import DEFENSES
    from advlab.loops.evaluate import EvalConfig, evaluate
    from advlab.loops.fit import fit
    from advlab.tasks.base import TASKS
    from advlab.victims.base import VICTIMS

    caplog.set_level(logging.INFO, logger="advlab.progress")
    spec = build_spec(make_cfg(*SMALL, "train.epochs=1", "train.batch_size=512"))
    data = DATASETS.build(spec.dataset, spec.seed)
    task = TASKS.build(spec.task, data.info)
    model = VICTIMS.build(spec.victim).build(data.info, task.num_outputs)
    progress.configure(0)
    try:
        fit(model, task, data, spec.train, DEFENSES.build(spec.defense, task), spec.device, 0, progress=True)
        attack = ATTACKS.create("fgsm", task, eps=0.1)
        evaluate(model, task, data, attack, EvalConfig(batch_size=16, num_examples=64), spec.device, 0, True)
    finally:
        progress.configure()
    lines = [r.getMessage() for r in caplog.records]
    n_train = len(data.dataset("train"))
    steps = -(-n_train // 512)
    assert [line.split(" batches")[0] for line in lines if line.startswith("train")] == [
        f"train epoch 1/1 {i}/{steps}" for i in range(0, steps + 1)
    ]
    attack_lines = [line for line in lines if line.startswith("attack fgsm")]
    assert [line.split(" batches")[0] for line in attack_lines] == [f"attack fgsm {i}/4" for i in range(0, 5)]
    assert re.search(
        r"\(100%\), [0-9.e+]+ (batches/s|s/batch), elapsed \d:\d\d:\d\d, ETA 0:00:00$", attack_lines[-1]
    )


@pytest.mark.slow
def test_cli_piped_shows_evaluation_progress(tmp_path):
    """``advlab attack=cw_l2 ... 2>&1 | cat``: stderr/stdout are pipes, the C&W evaluation logs progress."""
    proc = run_cli(
        *SMALL,
        "train.epochs=1",
        "attack=cw_l2",
        "attack.steps=5",
        "attack.binary_search_steps=1",
        "eval.num_examples=64",
        "eval.batch_size=16",
        "logger=none",
        "progress_interval_s=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    for i in range(1, 5):
        assert f"attack cw_l2 {i}/4 batches" in out, out[-3000:]
    assert "train epoch 1/1" in out
    assert "cw_l2 binary search 1/1 steps" in out  # inside one batch: the attack's own loop reports too
