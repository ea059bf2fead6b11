"""Experiment trackers: ``TRACKERS`` knows every name (declared with its config in :mod:`advlab.loggers.configs`); each
implementation module is imported when its name is first built, so importing this package is light."""

from __future__ import annotations

import importlib
from typing import Any

from advlab.loggers.configs import TRACKERS

_HEAVY = {"Tracker": "advlab.loggers.base"}  # imported on first access


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TRACKERS", "Tracker"]
