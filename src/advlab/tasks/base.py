"""The task abstraction: what a prediction is, the training loss, the attack objective, the success rule and
the metrics. Attacks only talk to a task, so the same attack code runs on every task that implements this.

Conventions (see docs/extending.md): ``outputs`` are the victim's raw outputs (logits / pre-activations); ``y`` the
ground truth in the task's target format; ``target`` the attacker's goal in the same format, or ``None`` for
an untargeted attack. Per-sample quantities have shape ``[B]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.metrics.meter import Meter
from advlab.registry import ComponentConfig
from advlab.tasks.configs import TASKS  # noqa: F401


class Task:
    """Base class. Subclasses implement the abstract methods for their output/target format."""

    Config = ComponentConfig
    registered_name = "task"
    #: the task's headline metric (without its phase prefix): what a sweep optimises and tables lead with
    objective_metric = "acc"

    def __init__(self, params: Any, info: DataInfo):
        self.params = params
        self.info = info

    # ---- model outputs -------------------------------------------------------------------------------
    @property
    def num_outputs(self) -> int:
        """Size of the victim's output layer for this task."""
        raise NotImplementedError

    def predict(self, outputs: Tensor) -> Tensor:
        """Decoded prediction in the target format."""
        raise NotImplementedError

    # ---- training ------------------------------------------------------------------------------------
    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Scalar training loss (mean over the batch)."""
        raise NotImplementedError

    # ---- attacks -------------------------------------------------------------------------------------
    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Per-sample objective the attacker *maximises*: untargeted moves away from ``y``, targeted moves
        towards ``target``."""
        raise NotImplementedError

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Per-sample margin, negative exactly when the attack succeeds (C&W-style objectives use
        ``max(margin, -kappa)``)."""
        raise NotImplementedError

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Per-sample bool: the attack's goal is met on these outputs."""
        raise NotImplementedError

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Per-sample bool: the prediction equals the ground truth."""
        raise NotImplementedError

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Draw attack targets different from ``y`` (seeded by ``generator``, on y's device)."""
        raise NotImplementedError

    def check_target(self, y: Tensor, target: Tensor) -> None:
        """Raise ``ValueError`` naming the problem when ``target`` is unusable for ``y`` (wrong shape or values,
        equal to the ground truth). Tasks override; the default accepts anything."""

    def attach_data(self, data: Any) -> None:
        """Called once by the runner with the data module (e.g. to collect training label vectors for target
        sampling). Default: nothing."""

    # ---- output-space geometry (attacks that work on the decision scores: JMA, ML-C&W, ...) --------------
    def decision_features(self, outputs: Tensor) -> Tensor:
        """The scores on which the decision is linear in the codewords (default: the raw outputs)."""
        return outputs

    def target_constraints(
        self, features: Tensor, target: Tensor, confidence: float
    ) -> tuple[Tensor, Tensor]:
        """Linear constraints ``A d <= b`` (``A [B, k, n]``, ``b [B, k]``) on a displacement ``d`` of the decision
        features meaning "``features + d`` is decoded as ``target`` with margin ``confidence``"."""
        raise NotImplementedError(
            f"task '{self.registered_name}' defines no linear target constraints (needed by JMA)"
        )

    def targets_from_file(self, rows: Tensor, y: Tensor) -> Tensor:
        """Attack targets for a batch from its rows of ``task.target_file`` (:mod:`advlab.data.subset`)."""
        raise NotImplementedError(f"task '{self.registered_name}' reads no target file (task.target_file)")

    def output_code(self, target: Tensor) -> Tensor:
        """Desired sign (+-1) of every output for ``target`` (per-output hinge attacks such as ML-C&W)."""
        raise NotImplementedError(f"task '{self.registered_name}' defines no per-output target code")

    # ---- metrics -------------------------------------------------------------------------------------
    def meter(self) -> Meter:
        """A fresh accumulator for this task's metrics. Tasks whose metrics are not means of per-sample values
        (e.g. mIoU from a confusion matrix) return a Meter subclass that keeps that state and adds the
        derived values in ``compute()``."""
        return Meter()

    def example_grid(self, examples: Any, path: Any) -> Any:
        """Draw the evaluate loop's examples (clean / adversarial) to ``path``; returns the path. Tasks whose
        targets are not class indices (maps, vectors) override this."""
        from advlab.reporting.pictures import save_example_grid

        return save_example_grid(examples, self.info.class_names, path)

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        """Add this batch's prediction metrics (names without the phase prefix, e.g. ``acc``)."""
        raise NotImplementedError

    def update_attack_metrics(
        self, meter: Meter, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> None:
        """Attack success metrics; the base class adds ``asr`` (see :meth:`attack_outcome`)."""
        eligible, success = self.attack_outcome(clean_outputs, adv_outputs, y, target)
        meter.add("asr", success.float(), mask=eligible)

    def attack_outcome(
        self, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """``(eligible, success)`` per sample, with ASR = mean of success over eligible examples.

        Untargeted: eligible = initially correct, success = the attack made it wrong (the prediction changed).
        Targeted: every example is eligible, success = the output reaches the target."""
        success = self.success(adv_outputs, y, target)
        if target is None:
            return self.correct(clean_outputs, y), success
        return torch.ones_like(success), success
