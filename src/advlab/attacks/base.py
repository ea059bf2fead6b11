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


def check_task_support(attack_cls: type, task_cls: type) -> None:
    """Raise a ConfigError (before any victim is trained) when ``task_cls`` lacks a method the attack needs."""
    from advlab.errors import ConfigError
    from advlab.tasks.configs import TASKS

    for method in getattr(attack_cls, "needs_task", ()):
        if getattr(task_cls, method, None) is getattr(Task, method, None):
            able = [
                n for n in TASKS.names() if getattr(TASKS.get(n), method, None) is not getattr(Task, method)
            ]
            raise ConfigError(
                f"attack.name: attack '{getattr(attack_cls, 'registered_name', attack_cls.__name__)}' needs the "
                f"task's {method} (its targets in the output space), which task "
                f"'{getattr(task_cls, 'registered_name', task_cls.__name__)}' does not define; use a task that "
                f"does (task.name={' / '.join(able)}) or another attack"
            )


class Attack:
    Config = AttackConfig
    registered_name = "attack"
    #: the threat model's norm for distortion reporting ("linf", "l2" or None)
    norm: str | None = None
    #: the paper that defines the attack ("Authors, Title, Venue Year") and its link
    paper: str | None = None
    url: str | None = None
    #: the Task methods beyond the base ones the attack's objective is written in (e.g. JMA:
    #: ``target_constraints``); a task that does not define them is refused when the attack is built
    needs_task: tuple[str, ...] = ()

    def __init__(self, params: Any, task: Task):
        self.params = params
        self.task = task
        check_task_support(type(self), type(task))
        #: per-sample statistics of the last batch (e.g. ``iters``), averaged into ``attack/<name>``
        self.batch_stats: dict[str, Tensor] = {}

    @property
    def targeted(self) -> bool:
        return bool(getattr(self.params, "targeted", False))

    def check_data(self, info: Any) -> None:
        """Raise a ConfigError when the attack cannot work on images of ``info`` (a ``DataInfo``); called when the
        run's components are built, before any victim is trained. Default: nothing to check."""

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
