"""Defense interface. A training-time defense changes what the fit loop trains on
(:meth:`Defense.training_batch`); an inference-time defense wraps the victim (:meth:`Defense.wrap`)."""

from __future__ import annotations

import copy
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

    def training_loss(self, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(outputs, loss)`` of the fit loop's step on the batch ``training_batch`` made (default: the task's
        training loss on ``net(x)``; a defense with its own objective, e.g. TRADES, overrides this). ``net`` is
        in train mode (DDP-wrapped when distributed); ``outputs`` must line up with ``y`` for the metrics."""
        outputs = net(x)
        return outputs, self.task.loss(outputs, y)

    def wrap(self, victim: nn.Module) -> nn.Module:
        """The model that is evaluated and attacked (default: the victim itself)."""
        return victim

    def prepare(self, victim: nn.Module, data: Any, device: Any) -> dict[str, Any] | None:
        """Fit what an inference-time defense learns from the trained victim and the data before it is used
        (e.g. AMI's attribute witnesses); returns a summary for ``results.json`` (default: nothing to fit)."""
        return None

    def for_task(self, task: Task) -> Defense:
        """This defense deciding with ``task`` (e.g. a verification task at the threshold in use; a shallow
        copy, ``self`` unchanged)."""
        other = copy.copy(self)
        other.task = task
        return other


DEFENSES.register("none")(Defense)
