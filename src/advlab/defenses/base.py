"""Defense interface. A training-time defense changes what the fit loop trains on
(:meth:`Defense.training_batch`); an inference-time defense wraps the victim (:meth:`Defense.wrap`)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from advlab.defenses.configs import DEFENSES  # noqa: F401
from advlab.registry import ComponentConfig
from advlab.tasks.base import Task


class Defense:
    """No defense (``defense=none``): the victim as trained; the base class every defense extends."""

    Config = ComponentConfig
    registered_name = "defense"
    #: the paper that defines the defense ("Authors, Title, Venue Year") and its link
    paper: str | None = None
    url: str | None = None
    #: the victim must be (re)trained with this defense in the fit loop
    trains_victim = False

    def __init__(self, params: Any, task: Task):
        self.params = params
        self.task = task

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The batch the fit loop takes a gradient step on (default: unchanged)."""
        return x, y

    def wrap(self, victim: nn.Module) -> nn.Module:
        """The model that is evaluated and attacked (default: the victim itself)."""
        return victim


DEFENSES.register("none")(Defense)
