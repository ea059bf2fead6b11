"""``advlab-report``: does my run match the paper? One command for every table advlab reproduces.

    advlab-report DIR... [--layout paper|sweep|jma|transfer|asl_par|semanticadv] [--out DIR]

Each DIR is a run folder or a folder of runs (a sweep); every ``results.json`` under it is one run, its
config read from ``.hydra/config.yaml`` (the preset's ``paper:`` block, :mod:`advlab.reporting.paper`) and
``results.json``. Layouts:

- ``paper`` (default): runs grouped by the table their block names (``paper.cite`` + ``paper.table``); per
  table one line per run (the table row its config matches) with ``paper | measured | delta`` for every
  published metric, ``delta = measured - paper`` in the block's units (``reference`` instead of ``paper``
  for advlab's own reference numbers). Writes ``report.md``, ``report.csv`` (one line per run and metric)
  and PNG plots: paper vs measured bars per table, metric vs swept parameter per attack (a sweep), the
  transfer matrix with the paper's values, per-attribute bars (ASL-PAR, SemanticAdv Figure 3). When a run
  logged to W&B (``logger=wandb``), the table goes to W&B as a ``wandb.Table`` too (a ``report`` run in the
  same project, same mode: offline runs land in ``<out>/report_wandb/wandb/``).
- ``sweep``: the swept parameters against every metric (``table.md`` / ``.csv``; ``--metrics``,
  ``--all-params``); ``jma``: JMA's table layout (rows attack + parameters; ASR, bASR, MSE, SSIM, n_it,
  time); ``transfer``: the EOT patch paper's source x target matrix (``transfer_matrix.md/.csv/.png``,
  ``--metric``); ``asl_par``: ASL-PAR's clean / attacked / defended rows; ``semanticadv``: SemanticAdv's
  Figure 3, ASR, Table C and Tables 1 / G / H.

Files go into DIR (one DIR), the DIRs' common folder (several), or ``--out``; written atomically, next to
the runs: a finished run's own files are never rewritten.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from advlab.errors import AdvlabError
from advlab.reporting.paper import PaperBlock, parse_paper_block
from advlab.reporting.table import _natural_key, to_markdown

LAYOUTS = ("paper", "sweep", "jma", "transfer", "asl_par", "semanticadv")


# ---- reading runs ------------------------------------------------------------------------------------------
def load_runs(root: Path) -> list[dict[str, Any]]:
    """One dict per ``results.json`` under ``root`` (natural order): run (relative folder), folder, metrics,
    config (resolved, from results.json; else ``.hydra/config.yaml``), paper (the block, or None), params
    (the command-line overrides), attack, results (the whole file)."""
    runs = []
    paths = sorted(root.rglob("results.json"), key=lambda p: _natural_key(p.parent.relative_to(root)))
    for path in paths:
        data = json.loads(path.read_text())
        folder = path.parent
        hydra_cfg_file = folder / ".hydra" / "config.yaml"
        hydra_cfg = yaml.safe_load(hydra_cfg_file.read_text()) if hydra_cfg_file.is_file() else None
        config = data.get("config") or hydra_cfg or {}
        block = (hydra_cfg or {}).get("paper") or config.get("paper")
        paper = None
        if block is not None:
            try:
                paper = parse_paper_block(block, f"{folder}: paper")
            except AdvlabError as exc:
                raise AdvlabError(*exc.messages) from None
        params: dict[str, str] = {}
        overrides = folder / ".hydra" / "overrides.yaml"
        if overrides.is_file():
            for item in yaml.safe_load(overrides.read_text()) or []:
                key, _, value = str(item).partition("=")
                params[key.lstrip("+~")] = value
        runs.append(
            {
                "run": str(folder.relative_to(root)) if folder != root else folder.name,
                "folder": folder,
                "metrics": data.get("metrics", {}),
                "config": config,
                "paper": paper,
                "params": params,
                "attack": data.get("attack") or params.get("attack", ""),
                "results": data,
            }
        )
    return runs


# ---- the paper layout --------------------------------------------------------------------------------------
def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Group runs by their block's table: ``[{"block": PaperBlock, "title", "slug", "metrics": [...],
    "rows": [{"label", "run", "paper", "measured", "delta", "config", "attack", "params"}]}]``; values in the
    block's units, ``delta = measured - paper``."""
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in runs:
        block: PaperBlock | None = r["paper"]
        if block is None or not block.rows:
            continue
        key = (block.page, block.table, block.source)
        g = groups.setdefault(
            key,
            {
                "block": block,
                "title": f"{block.cite} {block.table}"
                + (" (advlab reference)" if block.source == "advlab" else ""),
                "slug": slug(f"{block.cite}_{block.table}"),
                "metrics": [],
                "rows": [],
            },
        )
        prow = block.row_for(r["config"])
        g["metrics"] += [k for k in prow.numbers if k not in g["metrics"]]
        measured = {
            k: float(r["metrics"][k]) * block.scale
            for k in prow.numbers
            if isinstance(r["metrics"].get(k), (int, float)) and math.isfinite(r["metrics"][k])
        }
        g["rows"].append(
            {
                "label": prow.row,
                "run": r["run"],
                "paper": dict(prow.numbers),
                "measured": measured,
                "delta": {k: measured[k] - v for k, v in prow.numbers.items() if k in measured},
                "config": r["config"],
                "attack": r["attack"],
                "params": r["params"],
            }
        )
    return list(groups.values())


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return format(v, "+.4g" if signed else ".4g")


#: up to this many metrics a table is wide (the paper's layout: a line per row, paper | measured | delta per
#: metric); with more, one line per row and metric
WIDE_MAX_METRICS = 6


def group_table(g: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    ref = "paper" if g["block"].source == "paper" else "reference"
    if len(g["metrics"]) > WIDE_MAX_METRICS:
        cells = [
            [row["label"], row["run"], m, _fmt(row["paper"].get(m)), _fmt(row["measured"].get(m)),
             _fmt(row["delta"].get(m), True)]
            for row in g["rows"]
            for m in g["metrics"]
            if m in row["paper"]
        ]  # fmt: skip
        return ["row", "run", "metric", ref, "measured", "delta"], cells
    header = ["row", "run"]
    for m in g["metrics"]:
        header += [f"{m} {ref}", f"{m} measured", f"{m} delta"]
    cells = []
    for row in g["rows"]:
        line = [row["label"], row["run"]]
        for m in g["metrics"]:
            line += [_fmt(row["paper"].get(m)), _fmt(row["measured"].get(m)), _fmt(row["delta"].get(m), True)]
        cells.append(line)
    return header, cells


def report_markdown(groups: list[dict[str, Any]], unmatched: list[str]) -> str:
    parts = []
    for g in groups:
        b = g["block"]
        source = "the paper" if b.source == "paper" else "advlab's documented run (source: advlab)"
        parts.append(
            f"## {g['title']}\n\nreference: {source}; units: {b.units}; delta = measured - "
            f"{'paper' if b.source == 'paper' else 'reference'}\n\n" + to_markdown(*group_table(g))
        )
    if unmatched:
        parts.append("runs without a `paper:` block (not compared): " + ", ".join(unmatched) + "\n")
    return "\n".join(parts)


def report_csv(groups: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["cite", "table", "source", "units", "row", "run", "metric", "paper", "measured", "delta"])
    for g in groups:
        b = g["block"]
        for row in g["rows"]:
            for m in g["metrics"]:
                if m not in row["paper"]:
                    continue
                w.writerow(
                    [b.cite, b.table, b.source, b.units, row["label"], row["run"], m,
                     repr(row["paper"][m]), repr(row["measured"][m]) if m in row["measured"] else "",
                     repr(row["delta"][m]) if m in row["delta"] else ""]
                )  # fmt: skip
    return buf.getvalue()


def swept_numeric(rows: list[dict[str, Any]]) -> list[str]:
    """The overrides that vary across the rows and are numbers in every row."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r["params"] if k not in keys]
    out = []
    for k in keys:
        values = [r["params"].get(k) for r in rows]
        if len(set(values)) < 2:
            continue
        try:
            [float(v) for v in values]
        except (TypeError, ValueError):
            continue
        out.append(k)
    return out


def write_plots(groups: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path) -> list[Path]:
    from advlab.reporting import plots

    files = []
    for g in groups:
        b = g["block"]
        ref = "paper" if b.source == "paper" else "advlab reference"
        plain = [m for m in g["metrics"] if not m.startswith("transfer/")]
        if plain:
            rows = [{**r, "label": f"{r['label']} [{r['run']}]"} for r in g["rows"]]
            files.append(
                plots.comparison_bars(g["title"], plain, rows, b.units, ref, out / f"report_{g['slug']}.png")
            )
        for param in swept_numeric(g["rows"]):
            for m in plain:
                series: dict[str, list] = {}
                for r in g["rows"]:
                    if m in r["measured"]:
                        series.setdefault(r["attack"] or "run", []).append(
                            (float(r["params"][param]), r["measured"][m], r["paper"].get(m))
                        )
                if series:
                    path = out / f"report_{g['slug']}_{slug(m)}_vs_{slug(param)}.png"
                    files.append(plots.sweep_lines(param, m, series, b.units, path))
    files += transfer_plots(groups, runs, out)
    files += attribute_plots(runs, out)
    return files


def transfer_plots(groups: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path) -> list[Path]:
    """The source x target matrix of every transfer run, annotated with the paper's value of each cell."""
    from advlab.reporting.transfer_table import heatmap, matrix_from_metrics

    files = []
    for r in runs:
        if not any(k.startswith("transfer/") and k.count("/") == 4 for k in r["metrics"]):
            continue
        block = r["paper"]
        numbers = block.row_for(r["config"]).numbers if block else {}
        scale = block.scale if block else 1.0
        metric = next((k.split("/")[-1] for k in numbers if k.startswith("transfer/")), "mIoU")
        sources, targets, adv, clean = matrix_from_metrics(r["metrics"], metric)
        paper_adv, paper_clean = {}, {}
        for k, v in numbers.items():
            parts = k.split("/")
            if len(parts) == 5 and parts[0] == "transfer" and parts[4] == metric:
                paper_adv[(parts[1], parts[2])] = v / scale
            elif len(parts) == 4 and parts[0] == "transfer" and parts[3] == metric:
                paper_clean[parts[1]] = v / scale
        path = out / f"report_transfer_{slug(r['run'])}.png"
        files.append(heatmap(sources, targets, adv, clean, metric, path, paper_adv, paper_clean))
    return files


def _asl_par_attributes(folder: Path) -> dict[str, dict[str, float]]:
    """``attributes.md`` of a ``pipeline=asl_par`` run: phase -> attribute -> mA."""
    path = folder / "attributes.md"
    if not path.is_file():
        return {}
    out: dict[str, dict[str, float]] = {}
    for section in path.read_text().split("## ")[1:]:
        name = section.splitlines()[0].split(" (`")[0]
        rows = [line.split("|") for line in section.splitlines() if line.startswith("| ")][1:]
        out[name] = {c[1].strip(): float(c[2]) for c in rows if len(c) > 3}
    return out


def attribute_plots(runs: list[dict[str, Any]], out: Path) -> list[Path]:
    from advlab.reporting import plots

    files = []
    for r in runs:
        block = r["paper"]
        numbers = block.row_for(r["config"]).numbers if block else {}
        scale = block.scale if block else 1.0
        sa = r["results"].get("semantic_adv")
        if sa and sa.get("attributes"):  # SemanticAdv Figure 3: ASR per attribute at G-FPR = T-FPR
            attrs = sa["attributes"]
            phases = {}
            for g in sa.get("asr", {}):
                per = {a: 100 * sa["asr_per_attribute"][a].get(f"g{g}_t{g}", math.nan) for a in attrs}
                phases[f"measured, G-FPR = T-FPR = {g}"] = per
            paper = {
                a: numbers[f"attack/asr_{a}"] * 100 / scale for a in attrs if f"attack/asr_{a}" in numbers
            }
            path = out / f"report_attributes_{slug(r['run'])}.png"
            files.append(
                plots.attribute_bars(
                    f"SemanticAdv Figure 3 layout: {r['run']}", attrs, phases, paper or None,
                    "attack success rate (%)", path,
                )
            )  # fmt: skip
        tables = _asl_par_attributes(r["folder"])
        if tables:
            attrs = list(next(iter(tables.values())))
            phases = {name: {a: 100 * v for a, v in t.items()} for name, t in tables.items()}
            path = out / f"report_attributes_{slug(r['run'])}.png"
            files.append(
                plots.attribute_bars(
                    f"ASL-PAR per-attribute mA: {r['run']}", attrs, phases, None, "mA (%)", path
                )
            )
    return files


def log_to_wandb(groups: list[dict[str, Any]], runs: list[dict[str, Any]], out: Path) -> Path | None:
    """Log every table as a ``wandb.Table`` into a ``report`` run of the first W&B-logged run's project and
    mode; return the W&B run folder (None: no run used W&B)."""
    logger = next(
        (
            r["config"]["logger"]
            for r in runs
            if isinstance(r["config"].get("logger"), dict)
            and r["config"]["logger"].get("name") == "wandb"
            and r["config"]["logger"].get("mode", "offline") != "disabled"
        ),
        None,
    )
    if logger is None or not groups:
        return None
    import wandb

    where = (
        out / "report_wandb"
    )  # not the run's own wandb/ folder: its logs and latest-run link stay as they are
    where.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=logger.get("project", "advlab"),
        entity=logger.get("entity"),
        mode=logger.get("mode", "offline"),
        group=logger.get("group"),
        job_type="report",
        name=f"report {out.name}",
        dir=str(where),
        reinit="finish_previous",
        settings=wandb.Settings(console="off", silent=True),
    )
    for g in groups:
        header, cells = group_table(g)
        run.log({f"report/{g['slug']}": wandb.Table(columns=header, data=cells)})
    folder = Path(run.dir).parent
    run.finish()
    return folder


def paper_layout(runs: list[dict[str, Any]], out: Path) -> tuple[str, list[Path]]:
    from advlab.utils import atomic_write_text

    groups = compare(runs)
    unmatched = [
        r["run"] + (f" ({r['paper'].note})" if r["paper"] is not None else "")
        for r in runs
        if r["paper"] is None or not r["paper"].rows
    ]
    md = report_markdown(groups, unmatched)
    files = [out / "report.md", out / "report.csv"]
    atomic_write_text(files[0], md)
    atomic_write_text(files[1], report_csv(groups))
    files += write_plots(groups, runs, out)
    wandb_dir = log_to_wandb(groups, runs, out)
    if wandb_dir is not None:
        files.append(wandb_dir)
    return md, files


# ---- the command -------------------------------------------------------------------------------------------
def output_folder(dirs: list[Path], out: Path | None) -> Path:
    if out is not None:
        return out
    if len(dirs) == 1:
        return dirs[0]
    return Path(os.path.commonpath([d.resolve() for d in dirs]))


def main(argv: list[str] | None = None, prog: str = "advlab-report") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="run folders or folders of runs")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="paper", help="the table layout (default: paper)"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    parser.add_argument("--metrics", nargs="+", default=None, help="sweep layout: metric keys to show")
    parser.add_argument("--all-params", action="store_true", help="sweep layout: also constant overrides")
    parser.add_argument("--metric", default="mIoU", help="transfer layout: the metric of the matrix")
    args = parser.parse_args(argv)
    for d in args.dirs:
        if not d.is_dir():
            print(f"{prog}: '{d}' is not a folder", file=sys.stderr)
            return 2
    out = output_folder(args.dirs, args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.layout == "paper":
        try:
            runs = [r for d in args.dirs for r in load_runs(d)]
        except AdvlabError as exc:
            print(f"{prog}: " + "\n".join(exc.messages), file=sys.stderr)
            return 2
        if not runs:
            print(
                f"{prog}: no results.json under {', '.join(map(str, args.dirs))} (did the runs finish?)",
                file=sys.stderr,
            )
            return 1
        if all(r["paper"] is None or not r["paper"].rows for r in runs):
            print(
                f"{prog}: no run has a paper: block (an experiment=<preset> run has one; --layout sweep "
                "tabulates any runs)",
                file=sys.stderr,
            )
            return 1
        md, files = paper_layout(runs, out)
        print(md, end="")
        print(f"\n[{len(runs)} runs] wrote " + ", ".join(str(f) for f in files))
        return 0
    status = 1
    for d in args.dirs:
        text = layout_tables(args.layout, d, args.out or d, args)
        if text is None:
            print(
                f"{prog}: no results for --layout {args.layout} under '{d}' (did the runs finish?)",
                file=sys.stderr,
            )
            continue
        print(text, end="" if text.endswith("\n") else "\n")
        status = 0
    return status


def table_main(argv: list[str] | None = None) -> int:
    """``advlab-table FOLDER [--layout jma] ...``: ``advlab-report FOLDER --layout sweep|jma ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--layout" not in argv:
        argv += ["--layout", "sweep"]
    return main(argv, "advlab-table")


def transfer_table_main(argv: list[str] | None = None) -> int:
    """``advlab-transfer-table FOLDER [--metric M] [--out DIR]``: ``advlab-report FOLDER --layout transfer``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main([*argv, "--layout", "transfer"], "advlab-transfer-table")


def sweep_plots(rows: list[dict[str, Any]], metrics: list[str] | None, out: Path) -> list[Path]:
    """A sweep's metrics (``--metrics``, else the attacked ones: ``adv/*``, ``attack/asr``) against each swept
    numeric override, one line per attack: ``table_<metric>_vs_<param>.png``."""
    from advlab.reporting import plots

    if metrics is None:
        common = set.intersection(*(set(r["metrics"]) for r in rows)) if rows else set()
        metrics = sorted(k for k in common if k.startswith("adv/") or k == "attack/asr")[:4]
    files = []
    for param in swept_numeric(rows):
        for m in metrics:
            series: dict[str, list] = {}
            for r in rows:
                v = r["metrics"].get(m)
                if isinstance(v, (int, float)):
                    series.setdefault(r.get("attack") or "run", []).append(
                        (float(r["params"][param]), v, None)
                    )
            if series:
                path = out / f"table_{slug(m)}_vs_{slug(param)}.png"
                files.append(plots.sweep_lines(param, m, series, "fraction", path))
    return files


def layout_tables(layout: str, root: Path, out: Path, args: argparse.Namespace) -> str | None:
    """The paper-specific table builders (one per paper) as layouts of the report command."""
    from advlab.utils import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    if layout in ("sweep", "jma"):
        from advlab.reporting.table import build_layout_table, build_table, collect_runs, to_csv

        rows = collect_runs(root)
        if not rows:
            return None
        if layout == "jma":
            header, cells = build_layout_table(rows, "jma")
        else:
            header, cells = build_table(rows, args.metrics, args.all_params)
        md = to_markdown(header, cells)
        atomic_write_text(out / "table.md", md)
        atomic_write_text(out / "table.csv", to_csv(header, cells))
        pngs = sweep_plots(rows, args.metrics, out)
        extra = "".join(f", {p}" for p in pngs)
        return md + f"\n[{len(rows)} runs] wrote {out / 'table.md'}, {out / 'table.csv'}{extra}\n"
    if layout == "transfer":
        from advlab.reporting.transfer_table import write_matrix_rows

        runs = [{"run": str(p.parent), "metrics": json.loads(p.read_text()).get("metrics", {})}
                for p in sorted(root.rglob("results.json"))]  # fmt: skip
        files = write_matrix_rows(runs, out, args.metric, "transfer_matrix")
        if not files:
            return None
        return files["md"].read_text() + f"\nwrote {files['md']}, {files['csv']} and {files['png']}\n"
    if layout == "asl_par":
        from advlab.reporting import asl_par_table

        return asl_par_table.write(root, out)
    from advlab.reporting import semanticadv_tables

    return semanticadv_tables.write(root, out)


if __name__ == "__main__":
    sys.exit(main())
