"""Table builder: turn a multirun folder (or any folder of runs) into a markdown + CSV table of the swept
parameters against the metrics.

    advlab-report multirun/2026-11-21/10-00-00 --layout sweep [--metrics clean/acc adv/acc] [--out DIR]
    advlab-report multirun/... --layout jma     (a paper's layout: rows = attack + parameters)
    (advlab-table FOLDER [--layout jma] ... is the same command, sweep layout by default)

Each run is a folder with ``results.json``; its swept parameters are read from Hydra's
``.hydra/overrides.yaml``. Writes ``table.md`` and ``table.csv`` into the folder (or ``--out``) and prints
the markdown.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml


def collect_runs(root: Path) -> list[dict[str, Any]]:
    """One row per ``results.json`` under ``root``: ``{"run": rel_path, "params": {...}, "metrics": {...}}``."""
    rows = []
    for results in sorted(root.rglob("results.json"), key=lambda p: _natural_key(p.parent.relative_to(root))):
        data = json.loads(results.read_text())
        overrides_file = results.parent / ".hydra" / "overrides.yaml"
        params: dict[str, str] = {}
        if overrides_file.is_file():
            for item in yaml.safe_load(overrides_file.read_text()) or []:
                key, _, value = str(item).partition("=")
                params[key.lstrip("+~")] = value
        rows.append(
            {
                "run": str(results.parent.relative_to(root)) or ".",
                "params": params,
                "metrics": data.get("metrics", {}),
                "attack": data.get("attack"),
            }
        )
    return rows


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in path.parts]


def build_table(
    rows: list[dict[str, Any]], metrics: list[str] | None = None, all_params: bool = False
) -> tuple[list[str], list[list[str]]]:
    """Header and cells. Parameter columns: those that vary across runs (or all with ``all_params``)."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["params"] if k not in keys]
    if not all_params and len(rows) > 1:
        keys = [k for k in keys if len({r["params"].get(k) for r in rows}) > 1]
    if metrics is None:
        metrics = []
        for r in rows:
            metrics += [
                k for k, v in r["metrics"].items() if k not in metrics and isinstance(v, (int, float))
            ]
        metrics.sort(key=lambda k: (k.split("/")[0] != "clean", k.split("/")[0] != "adv", k))
    header = ["run", *keys, *metrics]
    cells = []
    for r in rows:
        line = [r["run"], *[r["params"].get(k, "") for k in keys]]
        for m in metrics:
            v = r["metrics"].get(m)
            line.append("" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)))
        cells.append(line)
    return header, cells


#: paper table layouts: rows = the attack and its parameters, columns = (title, metric key, number format)
LAYOUTS: dict[str, list[tuple[str, str, str]]] = {
    "jma": [
        ("ASR", "attack/asr", ".2f"),
        ("bASR", "attack/basr", ".3f"),
        ("MSE", "attack/mse", ".1e"),
        ("SSIM", "attack/ssim", ".4f"),
        ("n_it", "attack/iters", ".2f"),
        ("Time(s)", "attack/time_per_image_s", ".3g"),
    ],
}


def build_layout_table(rows: list[dict[str, Any]], layout: str) -> tuple[list[str], list[list[str]]]:
    """The paper layout: one row per run, labelled by the attack and its ``attack.*`` overrides, sorted by
    attack then parameters; metric columns absent from every run are left out."""
    columns = [c for c in LAYOUTS[layout] if any(c[1] in r["metrics"] for r in rows)]
    header = ["Attack", "Parameters", *[c[0] for c in columns]]
    cells = []
    for r in rows:
        attack = r.get("attack") or r["params"].get("attack", "")
        params = ", ".join(
            f"{k.removeprefix('attack.')}={v}"
            for k, v in sorted(r["params"].items())
            if k.startswith("attack.")
        )
        line = [attack, params or "-"]
        for _, key, fmt in columns:
            v = r["metrics"].get(key)
            line.append("-" if v is None else format(v, fmt))
        cells.append(line)
    cells.sort(key=lambda c: (c[0], c[1]))
    return header, cells


def to_markdown(header: list[str], cells: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(out) + "\n"


def to_csv(header: list[str], cells: list[list[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(cells)
    return buf.getvalue()
