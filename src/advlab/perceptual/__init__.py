"""Perceptual distances (LPIPS): the configs in :mod:`.configs` (light), the networks in :mod:`.lpips_distance`
(imported on first access)."""

from __future__ import annotations

import importlib
from typing import Any

from advlab.perceptual.configs import LPIPSConfig

_HEAVY = {"CalibratedLPIPS", "LPIPSDistance", "normalize_flatten"}  # from advlab.perceptual.lpips_distance


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module("advlab.perceptual.lpips_distance"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CalibratedLPIPS", "LPIPSConfig", "LPIPSDistance", "normalize_flatten"]
