"""Defenses: ``DEFENSES`` knows every name (declared with its config in :mod:`advlab.defenses.configs`); each
implementation module is imported when its name is first built, so importing this package is light."""

from __future__ import annotations

import importlib
from typing import Any

from advlab.defenses.configs import DEFENSES

_HEAVY = {"Defense": "advlab.defenses.base"}  # imported on first access


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFENSES", "Defense"]
