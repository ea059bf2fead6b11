"""SemanticAdv tables from run folders (``pipeline=semantic_adv``), ``advlab-report --layout semanticadv``:

    advlab-report RUNS_FOLDER --layout semanticadv [--out DIR]

Reads every ``results.json`` under the folder and writes

- ``semanticadv_fig3_<run>.png``: the paper's Figure 3 for each run, per-attribute ASR as grouped bars (one
  panel per test FPR, one bar colour per generating FPR);
- ``semanticadv_asr.md`` / ``.csv``: per run, ASR and instance-wise ASR for every G-FPR x T-FPR;
- ``semanticadv_transfer.md`` / ``.csv``: the transfer tables (Table 1, G, H) in the paper's layout: columns =
  the model the examples were generated on (``pipeline.victim_label``), rows = the model they are tested on
  (each transfer target by its label, the generating model itself on the diagonal), C&W in brackets, one table
  per (G-FPR, T-FPR).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from advlab.utils import atomic_write_bytes, atomic_write_text


def load_runs(root: Path) -> list[dict]:
    runs = []
    for path in sorted(root.rglob("results.json")):
        data = json.loads(path.read_text())
        if "semantic_adv" not in data:
            continue
        data["_run"] = str(path.parent.relative_to(root)) or "."
        runs.append(data)
    return runs


def run_label(run: dict) -> str:
    sa = run["semantic_adv"]
    how = sa["attack"] if sa["attack"] != "semantic_adv" else f"semanticadv-{sa['interpolation']}"
    return f"{run.get('victim', {}).get('name', '?')} {how} ({run['_run']})"


def figure3(run: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    sa = run["semantic_adv"]
    tags = list(sa["asr"])
    attrs = sa["attributes"]
    colours = ["#87ceeb", "#1f4e9c", "#6a5acd", "#2e8b57"]
    fig, axes = plt.subplots(1, len(tags), figsize=(max(6, 0.5 * len(attrs)) * len(tags), 3.6), squeeze=False)
    x = np.arange(len(attrs))
    width = 0.8 / len(tags)
    for col, t_tag in enumerate(tags):
        ax = axes[0, col]
        for i, g_tag in enumerate(tags):
            vals = [100 * sa["asr_per_attribute"][a][f"g{g_tag}_t{t_tag}"] for a in attrs]
            ax.bar(
                x + (i - (len(tags) - 1) / 2) * width,
                vals,
                width,
                label=f"G-FPR {g_tag}",
                color=colours[i % 4],
            )
        ax.set_xticks(x)
        ax.set_xticklabels(attrs, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("attack success rate (%)")
        ax.set_title(f"T-FPR {t_tag}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(run_label(run), fontsize=9)
    fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)
    return path


def asr_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "victim", "attack", "G-FPR", "T-FPR", "ASR (%)", "instance ASR (%)", "worst ASR (%)"]
    rows = []
    for r in runs:
        sa = r["semantic_adv"]
        how = sa["attack"] if sa["attack"] != "semantic_adv" else f"semantic_adv/{sa['interpolation']}"
        for g, per_t in sa["asr"].items():
            for t, v in per_t.items():
                rows.append(
                    [
                        r["_run"],
                        r.get("victim", {}).get("name", "?"),
                        how,
                        g,
                        t,
                        f"{100 * v:.2f}",
                        f"{100 * sa['asr_instance'][g][t]:.2f}",
                        f"{100 * sa['asr_worst'][g][t]:.2f}" if "asr_worst" in sa else "",
                    ]
                )
    return header, rows


TABLE_C_ROWS = [
    ("x0", "reference", "source"),
    ("G(x0, c)", "reference", "recon"),
    ("G(x0, c_new) (Best)", "reference", "edit_best"),
    ("SemanticAdv (Best)", "asr_instance", None),
    ("SemanticAdv (Worst)", "asr_worst", None),
    ("SemanticAdv (Average)", "asr", None),
    ("CW", "asr", None),
]


def table_c(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Table C's layout: per G-FPR (= T-FPR) the reference rows and SemanticAdv's Best / Worst / Average, and
    C&W, in %, one column per generating model."""
    columns: list[str] = []
    values: dict[tuple[str, str, str], float] = {}
    for r in runs:
        sa = r["semantic_adv"]
        col = model_label(r)
        columns += [col] if col not in columns else []
        is_cw = sa["attack"] == "cw_l2"
        for g in sa["asr"]:
            for label, table, field in TABLE_C_ROWS:
                if (label == "CW") != is_cw or (field is not None and is_cw):
                    continue
                if field is None:
                    v = sa.get(table, {}).get(g, {}).get(g)
                else:
                    v = sa.get(table, {}).get(g, {}).get(field)
                if v is not None:
                    values[(g, label, col)] = v
    tags = sorted({g for g, _, _ in values}, key=float, reverse=True)
    rows = []
    for g in tags:
        for label, _, _ in TABLE_C_ROWS:
            if any((g, label, c) in values for c in columns):
                rows.append(
                    [
                        g,
                        label,
                        *[
                            f"{100 * values[(g, label, c)]:.2f}" if (g, label, c) in values else ""
                            for c in columns
                        ],
                    ]
                )
    return ["G-FPR", "metric / M", *columns], rows


def model_label(run: dict) -> str:
    """The generating model's id: ``pipeline.victim_label`` (recorded as ``victim_label``), else its name."""
    return run["semantic_adv"].get("victim_label") or run.get("victim", {}).get("name", "?")


def transfer_cells(run: dict) -> dict[tuple[str, str], dict[str, float]]:
    """``{(G tag, T tag): {tested model id: rate}}`` of one run, its own column included."""
    sa = run["semantic_adv"]
    own = sa.get("self_transfer") or {
        g: {t: v for t, v in per.items() if t == g} for g, per in sa["asr"].items()
    }
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for g, per_t in own.items():
        for t, v in per_t.items():
            cells.setdefault((g, t), {})[model_label(run)] = v
    for tid, entry in sa.get("transfer", {}).items():
        for g, per_t in entry["asr"].items():
            for t, v in per_t.items():
                cells.setdefault((g, t), {})[tid] = v
    return cells


def transfer_tables(runs: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Table 1 / G / H in the paper's layout, one table per (G-FPR, T-FPR): cell (i, j) is the success rate on
    model i (rows, M_test) of the examples generated against model j (columns, M_opt) that succeeded there;
    C&W runs of the same generating model in brackets, as in the paper."""
    main: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    cw: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    columns: list[str] = []
    rows: list[str] = []
    for r in runs:
        sa = r["semantic_adv"]
        into = cw if sa["attack"] == "cw_l2" else main
        col = model_label(r)
        columns += [col] if col not in columns else []
        for key, per_model in transfer_cells(r).items():
            for tested, v in per_model.items():
                rows += [tested] if tested not in rows else []
                into.setdefault(key, {}).setdefault(col, {})[tested] = v
    order = [c for c in rows if c in columns] + [c for c in rows if c not in columns]
    out = []
    for key in sorted(set(main) | set(cw)):
        g, t = key

        def cell(tested: str, col: str, key: tuple[str, str] = key) -> str:
            a = main.get(key, {}).get(col, {}).get(tested)
            b = cw.get(key, {}).get(col, {}).get(tested)
            text = "" if a is None else f"{a:.3f}"
            return f"{text} ({b:.3f})".strip() if b is not None else text

        header = [f"M_test / M_opt (G-FPR {g}, T-FPR {t})", *columns]
        out.append((f"{g}_{t}", header, [[tested, *[cell(tested, c) for c in columns]] for tested in order]))
    return out


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write(root: Path, out: Path) -> str | None:
    """Write Figure 3 per run and the tables into ``out``; return the markdown (None: no such run)."""
    runs = load_runs(root)
    if not runs:
        return None
    out.mkdir(parents=True, exist_ok=True)
    printed = []
    for r in runs:
        if r["semantic_adv"]["attack"] == "semantic_adv":
            p = figure3(r, out / f"semanticadv_fig3_{r['_run'].replace('/', '_')}.png")
            printed.append(f"wrote {p}")
    header, rows = asr_rows(runs)
    md = markdown(header, rows)
    atomic_write_text(out / "semanticadv_asr.md", md)
    write_csv(out / "semanticadv_asr.csv", header, rows)
    printed.append(md)
    header, rows = table_c(runs)
    md = markdown(header, rows)
    atomic_write_text(out / "semanticadv_table_c.md", md)
    write_csv(out / "semanticadv_table_c.csv", header, rows)
    printed.append(md)
    parts = []
    for tag, header, rows in transfer_tables(runs):
        parts.append(markdown(header, rows))
        write_csv(out / f"semanticadv_transfer_{tag}.csv", header, rows)
    atomic_write_text(out / "semanticadv_transfer.md", "\n".join(parts))
    printed.append("\n".join(parts))
    return "\n".join(printed)
