from __future__ import annotations

import json

import yaml

from advlab.reporting.report import table_main as main
from advlab.reporting.table import build_table, collect_runs, to_markdown


def write_run(folder, overrides, metrics):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / "results.json").write_text(json.dumps({"metrics": metrics}))


def test_table_shows_swept_params_against_metrics(tmp_path):
    write_run(tmp_path / "0", ["attack.eps=0.01", "logger=none"], {"clean/acc": 0.99, "adv/acc": 0.9})
    write_run(tmp_path / "1", ["attack.eps=0.1", "logger=none"], {"clean/acc": 0.99, "adv/acc": 0.2})
    write_run(tmp_path / "10", ["attack.eps=1.0", "logger=none"], {"clean/acc": 0.99, "adv/acc": 0.0})
    rows = collect_runs(tmp_path)
    assert [r["run"] for r in rows] == ["0", "1", "10"]  # natural order
    header, cells = build_table(rows)
    assert header == ["run", "attack.eps", "clean/acc", "adv/acc"]  # logger=none does not vary: hidden
    assert cells[1] == ["1", "0.1", "0.9900", "0.2000"]
    md = to_markdown(header, cells)
    assert md.splitlines()[1] == "|---|---|---|---|"
    assert main([str(tmp_path), "--metrics", "adv/acc"]) == 0
    assert (tmp_path / "table_adv_acc_vs_attack_eps.png").stat().st_size > 5000  # adv/acc against the sweep
    assert (tmp_path / "table.csv").read_text().splitlines() == [
        "run,attack.eps,adv/acc",
        "0,0.01,0.9000",
        "1,0.1,0.2000",
        "10,1.0,0.0000",
    ]


def test_table_errors(tmp_path):
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(tmp_path)]) == 1
