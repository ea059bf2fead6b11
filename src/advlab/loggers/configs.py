"""The logger (experiment tracker) configs: every parameter dataclass of ``advlab.loggers``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses

from advlab.registry import ComponentConfig, Registry, check


@dataclasses.dataclass
class WandbConfig(ComponentConfig):
    project: str = "advlab"
    entity: str | None = None
    mode: str = "offline"  # offline | online | disabled
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    run_name: str | None = None  # default: the run folder name

    def validate(self, key: str) -> None:
        check(
            self.mode in ("offline", "online", "disabled"),
            f"{key}.mode",
            f"must be offline, online or disabled (got '{self.mode}')",
        )


TRACKERS: Registry = Registry("logger", "logger")
#: name -> (implementing module, config): the implementation is imported on first use
TRACKERS.declare("none", "advlab.loggers.base", ComponentConfig)
TRACKERS.declare("wandb", "advlab.loggers.wandb_tracker", WandbConfig)
