"""Victims: ``VICTIMS`` knows every name (declared with its config in :mod:`advlab.victims.configs`); each
implementation module is imported when its name is first built, so importing this package is light."""

from __future__ import annotations

import importlib
from typing import Any

from advlab.victims.configs import VICTIMS, VictimConfig

_HEAVY = {
    "Victim": "advlab.victims.base",
    "VictimBuilder": "advlab.victims.base",
    "load_state_dict_file": "advlab.victims.base",
    "load_victim_weights": "advlab.victims.base",
}  # imported on first access


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "VICTIMS",
    "Victim",
    "VictimBuilder",
    "VictimConfig",
    "load_state_dict_file",
    "load_victim_weights",
]
