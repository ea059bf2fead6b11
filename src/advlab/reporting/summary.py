"""The summary table a finished run prints on the console."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def print_summary(title: str, metrics: dict[str, float], run_dir: Path) -> None:
    table = Table(title="advlab results", caption=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.startswith("train/"):
            continue
        v = metrics[key]
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console = Console()
    console.print(table)
    console.print(f"run folder: {run_dir}")
