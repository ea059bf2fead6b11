"""advlab-report: runs grouped by their preset's paper table, ``paper | measured | delta`` per metric (delta =
measured - paper in the block's units), report.md / report.csv / PNG plots next to the runs, the W&B table,
and the per-paper layouts."""

from __future__ import annotations

import csv
import hashlib
import json
import time

import pytest
import yaml
from conftest import run_cli

from advlab.reporting.report import main

BLOCK = {
    "cite": "asl_par",
    "table": "digital attack results",
    "row": "PETA",
    "source": "paper",
    "units": "percent",
    "numbers": {"clean/mA": 88.76, "adv/mA": 48.25},
    "rows": [{"row": "patch", "match": {"attack.mode": "patch"}, "numbers": {"adv/mA": 52.16}}],
}


def write_run(folder, metrics, config, overrides=(), attack="asl_par"):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    (folder / "results.json").write_text(json.dumps({"metrics": metrics, "config": config, "attack": attack}))


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_delta_is_measured_minus_paper_in_the_paper_units(tmp_path, capsys):
    """Percent blocks: the fraction advlab measured is shown x100; the row is the one the config matches;
    runs of two tables get two sections; a sweep gets metric-vs-parameter plots."""
    cfg = lambda mode: {
        "attack": {"name": "asl_par", "mode": mode},
        "logger": {"name": "none"},
        "paper": BLOCK,
    }  # noqa: E731
    write_run(tmp_path / "0", {"clean/mA": 0.8, "adv/mA": 0.5}, cfg("global"), ["attack.eps=0.02"])
    write_run(tmp_path / "1", {"clean/mA": 0.8, "adv/mA": 0.25}, cfg("patch"), ["attack.eps=0.04"])
    other = {**BLOCK, "cite": "jma", "table": "Table VII", "units": "fraction", "rows": [],
             "numbers": {"attack/asr": 0.95}}  # fmt: skip
    write_run(tmp_path / "2", {"attack/asr": 0.5}, {"attack": {"name": "jma"}, "paper": other})
    write_run(tmp_path / "3", {"attack/asr": 0.5}, {"attack": {"name": "jma"}})  # no block: listed
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## asl_par digital attack results" in out and "## jma Table VII" in out
    assert "| clean/mA paper | clean/mA measured | clean/mA delta |" in out
    assert "not compared): 3" in out
    rows = {(r["run"], r["metric"]): r for r in read_csv(tmp_path / "report.csv")}
    r = rows[("0", "adv/mA")]
    assert (r["row"], r["units"]) == ("PETA", "percent")
    assert float(r["measured"]) == pytest.approx(50.0) and float(r["delta"]) == pytest.approx(50.0 - 48.25)
    assert rows[("1", "adv/mA")]["row"] == "patch"
    assert float(rows[("1", "adv/mA")]["delta"]) == pytest.approx(25.0 - 52.16)
    assert ("1", "clean/mA") not in rows  # the patch row publishes adv/mA only
    assert float(rows[("2", "attack/asr")]["delta"]) == pytest.approx(0.5 - 0.95)
    for png in ("report_asl_par_digital_attack_results.png", "report_jma_table_vii.png",
                "report_asl_par_digital_attack_results_adv_ma_vs_attack_eps.png"):  # fmt: skip
        assert (tmp_path / png).stat().st_size > 5000, png


def test_transfer_heatmap_and_attribute_bars_carry_the_paper_values(tmp_path):
    transfer = {"cite": "eot_patch", "table": "Table I", "source": "paper", "units": "fraction",
                "numbers": {"transfer/a/clean/mIoU": 0.9, "transfer/a/a/adv/mIoU": 0.8}}  # fmt: skip
    metrics = {"transfer/a/clean/mIoU": 0.91, "transfer/b/clean/mIoU": 0.7, "transfer/a/a/adv/mIoU": 0.6,
               "transfer/a/b/adv/mIoU": 0.69}  # fmt: skip
    write_run(tmp_path / "t", metrics, {"paper": transfer})
    (tmp_path / "t" / "attributes.md").write_text(
        "## victim clean (`clean/*`)\n\nmA 0.8\n\n| attribute | mA | pos recall | neg recall | positives |\n"
        "|---|---|---|---|---|\n| hat | 0.9000 | 0.8 | 1.0 | 3 |\n| bag | 0.7000 | 0.5 | 0.9 | 2 |\n"
    )
    assert main([str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "report_transfer_t.png").stat().st_size > 5000
    assert (tmp_path / "t" / "report_attributes_t.png").stat().st_size > 5000
    rows = read_csv(tmp_path / "t" / "report.csv")
    assert {r["metric"]: float(r["delta"]) for r in rows} == pytest.approx(
        {"transfer/a/clean/mIoU": 0.91 - 0.9, "transfer/a/a/adv/mIoU": 0.6 - 0.8}
    )


def test_the_table_goes_to_wandb_when_the_run_used_it(tmp_path):
    """logger=wandb (offline): a ``report`` run with one wandb.Table per paper table, beside the run's own W&B
    folder (which is left as it was)."""
    from advlab.loggers.wandb_offline import find_offline_runs, read_offline_run

    cfg = {"logger": {"name": "wandb", "mode": "offline", "project": "advlab-test"}, "paper": BLOCK}
    write_run(tmp_path, {"clean/mA": 0.8, "adv/mA": 0.5}, cfg)
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "wandb").exists()
    (run_file,) = find_offline_runs(tmp_path / "report_wandb")
    for _ in range(60):  # W&B's service may still be writing the offline file when finish() returns
        if read_offline_run(run_file)["history"]:
            break
        time.sleep(0.5)
    (row,) = [
        h for h in read_offline_run(run_file)["history"] if "report/asl_par_digital_attack_results/_type" in h
    ]
    assert row["report/asl_par_digital_attack_results/_type"] == "table-file"
    table = json.loads(
        (run_file.parent / "files" / row["report/asl_par_digital_attack_results/path"]).read_text()
    )
    assert table["columns"][:5] == ["row", "run", "clean/mA paper", "clean/mA measured", "clean/mA delta"]
    assert table["data"][0][:5] == ["PETA", tmp_path.name, "88.76", "80", "-8.76"]


def test_a_table_of_many_metrics_is_one_line_per_metric(tmp_path, capsys):
    numbers = {f"clean/{m}": 50.0 for m in ("mA", "instance_acc", "precision", "recall", "f1")}
    numbers |= {"adv/mA": 40.0, "adv/f1": 30.0}  # 7 > WIDE_MAX_METRICS
    block = {**BLOCK, "numbers": numbers, "rows": []}
    write_run(tmp_path, {"clean/mA": 0.5, "adv/f1": 0.25}, {"paper": block})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| row | run | metric | paper | measured | delta |" in out
    assert f"| PETA | {tmp_path.name} | adv/f1 | 30 | 25 | -5 |" in out
    assert f"| PETA | {tmp_path.name} | clean/recall | 50 | - | - |" in out


def test_report_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 1
    write_run(tmp_path / "r", {"clean/acc": 0.9}, {"logger": {"name": "none"}})
    assert main([str(tmp_path)]) == 1
    assert "no run has a paper: block" in capsys.readouterr().err
    assert main([str(tmp_path), "--layout", "sweep"]) == 0  # any runs tabulate
    write_run(tmp_path / "bad", {"clean/acc": 0.9}, {"paper": {**BLOCK, "numbers": {"clean/miou": 0.5}}})
    assert main([str(tmp_path)]) == 2
    assert "paper.numbers.clean/miou: not an advlab metric key" in capsys.readouterr().err


@pytest.mark.slow
def test_report_of_a_tiny_embedded_run_is_a_regression_check(tmp_path, capsys):
    """experiment=jma_digits_multilabel, CPU-tiny: its block (advlab's documented reference) is saved with the
    run's config; the report's delta column is measured - reference for every published metric; every key the
    run wrote is an advlab metric key; the run's own files are not touched."""
    from advlab.reporting.metric_keys import is_metric_key

    run = tmp_path / "run"
    tiny = ["dataset.num_train=100", "train.epochs=1", "eval.num_examples=4", "eval.batch_size=4"]
    res = run_cli(
        "experiment=jma_digits_multilabel",
        f"hydra.run.dir={run}",
        "logger=none",
        "attack.max_iters=5",
        *tiny,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    saved = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["paper"]
    assert saved["source"] == "advlab" and saved["numbers"]["attack/iters"] == 11.9
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}
    assert main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "| attack/asr reference | attack/asr measured | attack/asr delta |" in out
    metrics = json.loads((run / "results.json").read_text())["metrics"]
    assert all(is_metric_key(k) for k in metrics), [k for k in metrics if not is_metric_key(k)]
    rows = read_csv(run / "report.csv")
    assert {r["metric"] for r in rows} == set(saved["numbers"])
    for r in rows:
        ref = saved["numbers"][r["metric"]]
        assert float(r["paper"]) == ref
        if r["metric"] in metrics:
            assert float(r["measured"]) == metrics[r["metric"]]
            assert float(r["delta"]) == pytest.approx(metrics[r["metric"]] - ref, abs=1e-12)
        else:  # e.g. no success -> no MSE: the cell stays empty
            assert r["measured"] == r["delta"] == ""
    assert (run / "report.md").is_file() and list(run.glob("report_*.png"))
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert after == before
