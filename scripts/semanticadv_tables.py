"""SemanticAdv tables from run folders (``pipeline=semantic_adv``):

    python scripts/semanticadv_tables.py RUNS_FOLDER [--out DIR]

Reads every ``results.json`` under the folder and writes

- ``semanticadv_fig3_<run>.png``: the paper's Figure 3 for each run, per-attribute ASR as grouped bars (one
  panel per test FPR, one bar colour per generating FPR);
- ``semanticadv_asr.md`` / ``.csv``: per run, ASR and instance-wise ASR for every G-FPR x T-FPR;
- ``semanticadv_transfer.md`` / ``.csv``: the transfer table (Table 1): rows = the model the examples were
  generated on, columns = the model they are tested on, one table per (G-FPR, T-FPR).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


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
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def asr_rows(runs: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "victim", "attack", "G-FPR", "T-FPR", "ASR (%)", "instance ASR (%)"]
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
                    ]
                )
    return header, rows


def transfer_tables(runs: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    """One table per (G-FPR, T-FPR): source victim x target victim, entries in %."""
    cells: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    targets: list[str] = []
    for r in runs:
        sa = r["semantic_adv"]
        src = r.get("victim", {}).get("name", "?")
        for g, per_t in sa["asr"].items():
            for t, v in per_t.items():
                if g == t:  # white-box diagonal: the source model at the same FPR
                    cells.setdefault((g, t), {}).setdefault(src, {})[src] = v
            for tgt, entry in sa.get("transfer", {}).items():
                targets += [tgt] if tgt not in targets else []
                for t, v in entry["asr"].get(g, {}).items():
                    cells.setdefault((g, t), {}).setdefault(src, {})[tgt] = v
        targets += [src] if src not in targets else []
    out = []
    for (g, t), table in sorted(cells.items()):
        header = [f"G-FPR {g} / T-FPR {t}", *targets]
        rows = [
            [src, *[("" if tgt not in row else f"{100 * row[tgt]:.2f}") for tgt in targets]]
            for src, row in table.items()
        ]
        out.append((f"{g}_{t}", header, rows))
    return out


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = load_runs(args.folder)
    if not runs:
        print(f"no pipeline=semantic_adv results.json under {args.folder}", file=sys.stderr)
        return 1
    out = args.out or args.folder
    out.mkdir(parents=True, exist_ok=True)
    for r in runs:
        if r["semantic_adv"]["attack"] == "semantic_adv":
            p = figure3(r, out / f"semanticadv_fig3_{r['_run'].replace('/', '_')}.png")
            print(f"wrote {p}")
    header, rows = asr_rows(runs)
    md = markdown(header, rows)
    (out / "semanticadv_asr.md").write_text(md)
    write_csv(out / "semanticadv_asr.csv", header, rows)
    print(md)
    parts = []
    for tag, header, rows in transfer_tables(runs):
        parts.append(markdown(header, rows))
        write_csv(out / f"semanticadv_transfer_{tag}.csv", header, rows)
    (out / "semanticadv_transfer.md").write_text("\n".join(parts))
    print("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
