"""Experiment trackers. Every run also writes ``metrics.jsonl`` and ``results.json`` itself
(:class:`advlab.recorder.RunRecorder`); a tracker mirrors the same keys to an external service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from advlab.loggers.configs import TRACKERS  # noqa: F401
from advlab.registry import ComponentConfig


class Tracker:
    """No tracker (``logger=none``): metrics go to the run folder only; the base class of every tracker."""

    Config = ComponentConfig
    registered_name = "tracker"

    def __init__(self, params: Any):
        self.params = params

    def start(self, run_dir: Path, config: dict, run_name: str) -> None:
        pass

    def log(self, metrics: dict[str, float]) -> None:
        pass

    def log_image(self, key: str, path: Path, caption: str = "") -> None:
        pass

    def summary(self, metrics: dict[str, float]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


TRACKERS.register("none")(Tracker)
