"""End-to-end runs through the real entrypoint: results, W&B offline files, multirun with submitit, tables."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from advlab.loggers.wandb_offline import find_offline_runs, read_offline_run
from advlab.reporting.report import table_main


def test_default_run_writes_results_and_skips_training(digits_setup, tmp_path):
    proc = run_cli(f"hydra.run.dir={tmp_path}", "logger=none")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "loaded cached victim" in proc.stdout and "training smallcnn" not in proc.stdout
    res = json.loads((tmp_path / "results.json").read_text())
    m = res["metrics"]
    for key in ("clean/acc", "adv/acc", "attack/asr", "attack/linf", "attack/l2", "attack/time_per_image_s"):
        assert key in m, key
    assert m["clean/acc"] >= 0.95
    assert m["adv/acc"] <= m["clean/acc"]
    assert m["attack/linf_max"] <= res["config"]["attack"]["eps"] + 1e-6
    assert res["victim"]["source"] == "cache" and res["attack"] == "pgd" and res["elapsed_s"] > 0
    assert (tmp_path / "adv_examples.png").stat().st_size > 1000
    assert not (
        tmp_path / "eval_state.pt"
    ).exists()  # the evaluation checkpoint is removed once results exist
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["adv/acc"] == m["adv/acc"]
    assert "adv/acc" in proc.stdout  # the summary table


def test_wandb_offline_run_contains_logged_metrics(digits_setup, tmp_path):
    proc = run_cli(
        f"hydra.run.dir={tmp_path}",
        "logger=wandb",
        "eval.num_examples=64",
        "attack.steps=3",
        "logger.tags=[test]",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "results.json").read_text())["metrics"]
    files = find_offline_runs(tmp_path)
    assert len(files) == 1
    run = read_offline_run(files[0])
    logged = {k: v for row in run["history"] for k, v in row.items()}
    for key in ("clean/acc", "adv/acc", "attack/asr"):
        assert logged[key] == pytest.approx(metrics[key])
        assert run["summary"][key] == pytest.approx(metrics[key])
    assert logged["adv_examples/_type"] == "image-file"  # the example grid, as a wandb.Image
    cfg = run["config"]
    assert (
        cfg["attack"]["steps"] == 3 and cfg["attack"]["name"] == "pgd" and cfg["logger"]["tags"] == ["test"]
    )


@pytest.mark.slow
def test_submitit_local_sweep_and_table(digits_setup, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "attack.eps=0.01,0.1",
        "hydra/launcher=submitit_local",
        "logger=none",
        f"hydra.sweep.dir={sweep}",
        "eval.num_examples=128",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/results.json")}
    assert sorted(results) == ["0", "1"]
    eps = {k: r["config"]["attack"]["eps"] for k, r in results.items()}
    small, large = sorted(results, key=lambda k: eps[k])
    assert results[large]["metrics"]["adv/acc"] < results[small]["metrics"]["adv/acc"]
    assert table_main([str(sweep)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| run | attack.eps |") and "adv/acc" in lines[0]
    assert len(lines) == 3  # header + two runs
    assert "| 0.01 |" in out and "| 0.1 |" in out
    assert (sweep / "table.csv").read_text().count("\n") == 3


def test_basic_launcher_sweep_finishes_one_wandb_run_per_job(digits_setup, tmp_path):
    """The basic launcher runs jobs in one process: each job must get (and finish) its own W&B run."""
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "attack.eps=0.02,0.2",
        "logger=wandb",
        f"hydra.sweep.dir={sweep}",
        "eval.num_examples=64",
        "attack.steps=3",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "results.json").read_text())["metrics"]
        files = find_offline_runs(sweep / job)
        assert len(files) == 1
        run = read_offline_run(files[0])
        assert run["summary"]["adv/acc"] == pytest.approx(metrics["adv/acc"])
        assert run["config"]["attack"]["eps"] == {"0": 0.02, "1": 0.2}[job]
