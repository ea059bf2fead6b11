"""ASL-PAR tables (``advlab-report --layout asl_par``): every run under a folder (a single run, a multirun
sweep, several experiments) as the paper's rows — clean, attacked and (with the defense) defended — against
mA / Acc / Prec / Recall / F1 (in %).

    advlab-report multirun/2026-11-21/10-00-00 --layout asl_par [--out DIR]

Writes ``asl_par_table.md`` and ``asl_par_table.csv`` into the folder (or ``--out``) and prints the markdown.
"""

from __future__ import annotations

from pathlib import Path

from advlab.reporting.table import collect_runs, to_csv, to_markdown
from advlab.utils import atomic_write_text

PHASES = [
    ("clean", "clean"),
    ("attacked", "adv"),
    ("defended", "defended"),
    ("defended, clean", "defended_clean"),
]
COLUMNS = [("mA", "mA"), ("Acc", "instance_acc"), ("Prec", "precision"), ("Recall", "recall"), ("F1", "f1")]


def asl_par_rows(root: Path) -> tuple[list[str], list[list[str]]]:
    runs = collect_runs(root)
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r["params"] if k not in keys]
    if len(runs) > 1:
        keys = [k for k in keys if len({r["params"].get(k) for r in runs}) > 1]
    header = ["run", *keys, "phase", *[c for c, _ in COLUMNS], "linf"]
    cells = []
    for r in runs:
        m = r["metrics"]
        for label, prefix in PHASES:
            if f"{prefix}/mA" not in m:
                continue
            line = [r["run"], *[r["params"].get(k, "") for k in keys], label]
            line += [f"{100 * m[f'{prefix}/{key}']:.2f}" if m.get(f"{prefix}/{key}") is not None else ""
                     for _, key in COLUMNS]  # fmt: skip
            linf = m.get("attack/linf_max")
            line.append(f"{linf * 255:.1f}/255" if prefix in ("adv", "defended") and linf is not None else "")
            cells.append(line)
    return header, cells


def write(root: Path, out: Path) -> str | None:
    """Write the table into ``out``; return its markdown (None: no ASL-PAR run under ``root``)."""
    header, cells = asl_par_rows(root)
    if not cells:
        return None
    md = to_markdown(header, cells)
    atomic_write_text(out / "asl_par_table.md", md)
    atomic_write_text(out / "asl_par_table.csv", to_csv(header, cells))
    return md
