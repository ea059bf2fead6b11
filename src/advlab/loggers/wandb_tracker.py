"""Weights & Biases tracker. ``mode: offline`` (default) needs no network: the run is written under the run
folder (``<run_dir>/wandb/offline-run-*``) and can be uploaded later with ``wandb sync``."""

from __future__ import annotations

from pathlib import Path

from advlab.loggers.base import TRACKERS, Tracker
from advlab.loggers.configs import WandbConfig  # noqa: F401


@TRACKERS.register("wandb")
class WandbTracker(Tracker):
    Config = WandbConfig

    def __init__(self, params):
        super().__init__(params)
        self.run = None

    def start(self, run_dir: Path, config: dict, run_name: str) -> None:
        import wandb

        p = self.params
        self.run = wandb.init(
            project=p.project,
            entity=p.entity,
            mode=p.mode,
            group=p.group,
            job_type=p.job_type,
            tags=list(p.tags) or None,
            name=p.run_name or run_name,
            dir=str(run_dir),
            config=config,
            reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True),
        )

    def log(self, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log(metrics)

    def log_image(self, key: str, path: Path, caption: str = "") -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path), caption=caption)})

    def summary(self, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.summary.update(metrics)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
