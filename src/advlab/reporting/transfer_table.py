"""Transfer matrix builder: source model (the patch was trained on) x target model (it is applied to), as
Table I of the EOT patch paper. Reads the ``transfer/<source>/<target>/adv/<metric>`` and
``transfer/<target>/clean/<metric>`` metrics of one transfer run, or of every run under a (multirun) folder,
and writes ``<name>.md``, ``<name>.csv`` and a heatmap ``<name>.png``.

    advlab-report RUN_OR_MULTIRUN_FOLDER --layout transfer [--metric mIoU] [--out DIR]
    (advlab-transfer-table FOLDER ... is the same command)

The diagonal is each model under its own patch; the ``clean`` row holds the targets' clean values.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from advlab.utils import atomic_write_bytes, atomic_write_text


def matrix_from_metrics(
    metrics: dict[str, Any], metric: str = "mIoU"
) -> tuple[list[str], list[str], dict[tuple[str, str], float], dict[str, float]]:
    """(sources, targets, {(source, target): adv value}, {target: clean value})."""
    adv, clean, sources, targets = {}, {}, [], []
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] != "transfer" or not isinstance(value, (int, float)):
            continue
        if len(parts) == 5 and parts[3] == "adv" and parts[4] == metric:
            source, target = parts[1], parts[2]
            adv[(source, target)] = float(value)
            sources += [source] if source not in sources else []
            targets += [target] if target not in targets else []
        elif len(parts) == 4 and parts[2] == "clean" and parts[3] == metric:
            clean[parts[1]] = float(value)
            targets += [parts[1]] if parts[1] not in targets else []
    # sources that are also targets first, in target order (the paper's square table)
    sources = [t for t in targets if t in sources] + [s for s in sources if s not in targets]
    return sources, targets, adv, clean


def render(sources, targets, adv, clean, metric: str) -> tuple[list[str], list[list[str]]]:
    header = [f"source \\ target ({metric})", *targets]
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    cells = [["clean", *[fmt(clean.get(t)) for t in targets]]]
    cells += [[s, *[fmt(adv.get((s, t))) for t in targets]] for s in sources]
    return header, cells


def heatmap(sources, targets, adv, clean, metric: str, path: Path, paper_adv=None, paper_clean=None) -> Path:
    """The matrix as a heatmap, each cell annotated with its value and, where given (``paper_adv``:
    {(source, target): v}, ``paper_clean``: {target: v}, in the metric's own scale), the paper's below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = ["clean", *sources]
    values = np.array(
        [[clean.get(t, np.nan) for t in targets]]
        + [[adv.get((s, t), np.nan) for t in targets] for s in sources]
    )
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2.5, 0.6 * len(rows) + 1.8))
    im = ax.imshow(
        values, cmap="viridis", vmin=np.nanmin(values) if np.isfinite(values).any() else 0, vmax=1.0
    )
    ax.set_xticks(range(len(targets)), targets, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("target model")
    ax.set_ylabel("patch source")
    for i in range(len(rows)):
        for j in range(len(targets)):
            paper = (
                (paper_clean or {}).get(targets[j])
                if i == 0
                else (paper_adv or {}).get((rows[i], targets[j]))
            )
            text = f"{values[i, j]:.3f}" if np.isfinite(values[i, j]) else "-"
            if paper is not None:
                text += f"\n(paper {paper:.4g})"
            if np.isfinite(values[i, j]) or paper is not None:
                ax.text(j, i, text, ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(im, ax=ax, label=f"{metric} (measured)")
    if paper_adv or paper_clean:
        ax.set_title("measured (paper's value in brackets)", fontsize=9)
    fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)
    return path


def write_matrix(
    run: dict[str, Any], out: Path, metric: str = "mIoU", title: str = "transfer_matrix"
) -> dict:
    return write_matrix_rows([run], out, metric, title)


def write_matrix_rows(runs: list[dict[str, Any]], out: Path, metric: str, title: str) -> dict[str, Path]:
    merged: dict[str, Any] = {}
    for r in runs:
        merged.update(r["metrics"])
    sources, targets, adv, clean = matrix_from_metrics(merged, metric)
    if not targets:
        return {}
    header, cells = render(sources, targets, adv, clean, metric)
    out.mkdir(parents=True, exist_ok=True)
    md = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in cells]
    files = {"md": out / f"{title}.md", "csv": out / f"{title}.csv", "png": out / f"{title}.png"}
    atomic_write_text(files["md"], "\n".join(md) + "\n")
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *cells])
    atomic_write_text(files["csv"], buf.getvalue())
    heatmap(sources, targets, adv, clean, metric, files["png"])
    return files
