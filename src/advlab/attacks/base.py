"""Attack interface. An attack maps a batch ``(x, y, target)`` to adversarial images in [0, 1], using only
the victim (images in [0,1] -> raw outputs) and the task's objective/success rule, so it runs unchanged on any
task. Attacks are batched and device-agnostic; the victim is frozen (eval mode, no parameter gradients)
while they run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.configs import ATTACKS, AttackConfig  # noqa: F401
from advlab.tasks.base import Task
from advlab.utils import frozen


class Attack:
    Config = AttackConfig
    registered_name = "attack"
    #: the threat model's norm for distortion reporting ("linf", "l2" or None)
    norm: str | None = None
    #: the paper that defines the attack ("Authors, Title, Venue Year") and its link
    paper: str | None = None
    url: str | None = None

    def __init__(self, params: Any, task: Task):
        self.params = params
        self.task = task
        #: per-sample statistics of the last batch (e.g. ``iters``), averaged into ``attack/<name>``
        self.batch_stats: dict[str, Tensor] = {}

    @property
    def targeted(self) -> bool:
        return bool(getattr(self.params, "targeted", False))

    def prepare(self, model: nn.Module, data: Any) -> None:
        """Called once by the evaluate loop before the first batch, with the victim and the data module (e.g. to
        collect target representations from the training split). Default: nothing."""

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        raise NotImplementedError

    def adv_labels(self, y: Tensor) -> Tensor:
        """The labels the last batch's adversarial outputs are scored against (default ``y``; a patch attack
        marks the pixels it covered as ignored)."""
        return y

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if self.targeted and target is None:
            raise ValueError(f"attack '{self.registered_name}' is targeted but no target was given")
        self.batch_stats = {}
        with frozen(model), torch.enable_grad():
            x_adv = self.perturb(model, x.detach(), y, target if self.targeted else None)
        return x_adv.detach()


class NoAttack(Attack):
    """``attack=none``: clean evaluation only."""


ATTACKS.register("none")(NoAttack)
