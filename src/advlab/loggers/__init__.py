from advlab.loggers import wandb_tracker  # noqa: F401  (registers)
from advlab.loggers.base import TRACKERS, Tracker

__all__ = ["TRACKERS", "Tracker"]
