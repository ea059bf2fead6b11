"""The one resumable-state mechanism of advlab's loops (fit, universal perturbation, evaluate, StarGAN).

A loop keeps its progress in a typed dataclass derived from :class:`LoopState`. ``state.save(path)`` writes
it atomically together with every RNG state (Python, NumPy, torch CPU and all CUDA devices);
``State.load(path)`` returns it (or ``None`` when there is nothing to resume) and restores those RNG states,
so a killed and restarted loop continues exactly where the saved state left off and gives the result of an
uninterrupted run. A file that cannot be read, or that holds another loop's state, is a named error that says
how to start the stage over.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from advlab.errors import AdvlabError
from advlab.utils import atomic_torch_save

logger = logging.getLogger(__name__)

STATE_FORMAT = 2  # bump when a change makes saved states unusable (2: meters keep per-sample values)
S = TypeVar("S", bound="LoopState")


class ResumeError(AdvlabError):
    """A resume file that cannot be used."""


def rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@dataclasses.dataclass
class LoopState:
    """Base of a loop's resumable state; subclasses declare their fields (tensors, meters, numbers...)."""

    def save(self, path: Path) -> None:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        payload = {"format": STATE_FORMAT, "kind": type(self).__name__, "fields": fields, "rng": rng_states()}
        atomic_torch_save(payload, path)

    @classmethod
    def load(cls: type[S], path: Path | None) -> S | None:
        """The state saved at ``path`` (RNG states restored), or ``None`` if there is none."""
        if path is None or not Path(path).is_file():
            return None
        start_over = f"delete '{path}' to start this stage over (finished stages are kept)"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)  # our own file: meters, lists
        except Exception as exc:
            raise ResumeError(
                f"resume file '{path}' cannot be read ({type(exc).__name__}); {start_over}"
            ) from None
        if not isinstance(payload, dict) or payload.get("kind") != cls.__name__:
            found = payload.get("kind") if isinstance(payload, dict) else type(payload).__name__
            raise ResumeError(
                f"resume file '{path}' holds a {found!r} state, not {cls.__name__}; {start_over}"
            )
        if payload.get("format") != STATE_FORMAT:
            raise ResumeError(
                f"resume file '{path}' was written by another advlab version (format {payload.get('format')}, "
                f"expected {STATE_FORMAT}); {start_over}"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        if set(payload["fields"]) != names:
            raise ResumeError(f"resume file '{path}' does not match {cls.__name__}'s fields; {start_over}")
        restore_rng_states(payload["rng"])
        logger.info(f"resuming from {path}")
        return cls(**payload["fields"])
