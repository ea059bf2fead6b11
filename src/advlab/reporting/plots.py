"""The report's PNG plots (matplotlib, Agg backend; every file written atomically):

- :func:`comparison_bars`: paper (or advlab reference) vs measured, per metric, per row of one table;
- :func:`sweep_lines`: a metric against a swept numeric parameter, one line per attack, the paper's values as
  hollow markers at the same parameter;
- :func:`attribute_bars`: per-attribute values (ASL-PAR's mA per attribute, SemanticAdv's Figure 3 ASR per
  attribute), one bar per measured phase and the paper's bars beside them when the block gives them.

The transfer-matrix heatmap with the paper's values is :func:`advlab.reporting.transfer_table.heatmap`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from advlab.utils import atomic_write_bytes

PAPER_COLOUR, MEASURED_COLOUR = "#9e9e9e", "#1f77b4"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 110, layout: bool = True) -> Path:
    if layout:
        fig.tight_layout()
    atomic_write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    _plt().close(fig)
    return path


def comparison_bars(
    title: str, metrics: list[str], rows: list[dict[str, Any]], units: str, reference: str, path: Path
) -> Path:
    """One panel per metric; per row a reference bar and a measured bar. ``rows``: ``{"label", "paper":
    {metric: v}, "measured": {metric: v}}`` in the block's units."""
    import numpy as np

    plt = _plt()
    ncols = min(4, len(metrics))
    nrows = -(-len(metrics) // ncols)
    width = max(3.2, 0.9 * len(rows) + 1.8)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.4 * nrows + 0.6), squeeze=False)
    for ax in axes.flat[len(metrics) :]:
        ax.set_visible(False)
    x = np.arange(len(rows))
    for ax, metric in zip(axes.flat, metrics):
        paper = [r["paper"].get(metric, np.nan) for r in rows]
        measured = [r["measured"].get(metric, np.nan) for r in rows]
        ax.bar(x - 0.2, paper, 0.4, label=reference, color=PAPER_COLOUR)
        ax.bar(x + 0.2, measured, 0.4, label="measured (advlab)", color=MEASURED_COLOUR)
        labels = [textwrap.fill(r["label"], 18) for r in rows]
        many = len(rows) > 2
        ax.set_xticks(x, labels, rotation=30 if many else 0, ha="right" if many else "center", fontsize=7)
        ax.set_title(metric, fontsize=9)
        ax.set_ylabel(f"{metric} ({units})" if units == "percent" else metric)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=2)  # one legend, above the panels
    fig.suptitle(title, fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (3.4 * nrows + 0.6)))
    return _save(fig, path, layout=False)


def sweep_lines(
    param: str,
    metric: str,
    series: dict[str, list[tuple[float, float, float | None]]],
    units: str,
    path: Path,
) -> Path:
    """``series``: attack -> [(parameter value, measured, paper or None)], values in the block's units."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for i, (attack, points) in enumerate(sorted(series.items())):
        points = sorted(points)
        colour = f"C{i % 10}"
        ax.plot(
            [p[0] for p in points], [p[1] for p in points], "o-", color=colour, label=f"{attack} (measured)"
        )
        paper = [(p[0], p[2]) for p in points if p[2] is not None]
        if paper:
            ax.plot(
                [p[0] for p in paper], [p[1] for p in paper], "s--", mfc="none", color=colour,
                label=f"{attack} (paper)",
            )  # fmt: skip
    ax.set_xlabel(param)
    ax.set_ylabel(f"{metric} ({units})" if units == "percent" else metric)
    ax.set_title(f"{metric} vs {param}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def attribute_bars(
    title: str,
    attributes: list[str],
    phases: dict[str, dict[str, float]],
    paper: dict[str, float] | None,
    ylabel: str,
    path: Path,
) -> Path:
    """Grouped bars per attribute: one bar per measured phase (e.g. clean / attacked / defended), the paper's
    bar beside them (hatched, grey) where known."""
    import numpy as np

    plt = _plt()
    groups = [*phases.items(), *((("paper", paper),) if paper else ())]
    fig, ax = plt.subplots(figsize=(min(24.0, max(6.0, 0.13 * len(attributes) * len(groups) + 3)), 4.2))
    x = np.arange(len(attributes))
    width = 0.8 / len(groups)
    for i, (name, values) in enumerate(groups):
        is_paper = name == "paper"
        ax.bar(
            x + (i - (len(groups) - 1) / 2) * width,
            [values.get(a, np.nan) for a in attributes],
            width,
            label=name,
            color=PAPER_COLOUR if is_paper else f"C{i % 10}",
            hatch="//" if is_paper else None,
        )
    ax.set_xticks(x, attributes, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path, dpi=120)
