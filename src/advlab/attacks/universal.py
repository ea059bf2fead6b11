"""Universal perturbations: one perturbation (noise tensor, patch ...) optimised over the training split and
then applied unchanged to every test image.

A :class:`UniversalAttack` owns its perturbation tensor(s). :func:`advlab.loops.universal.fit_universal`
optimises them (epochs over the training split, resumable), after which the attack behaves like any other in
the evaluate loop: ``perturb`` applies the fixed perturbation. ``perturbation_path`` loads a saved
perturbation instead of optimising one (transfer to another victim or dataset).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import Attack
from advlab.attacks.configs import UniversalConfig  # noqa: F401
from advlab.data.info import DataInfo
from advlab.errors import CheckpointError


class SignSGD(torch.optim.Optimizer):
    """``p <- p - lr * sign(grad)``: the signed-gradient step of patch and universal-noise attacks."""

    def __init__(self, params: Any, lr: float):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign(), alpha=-group["lr"])


class UniversalAttack(Attack):
    """Subclasses implement :meth:`init_perturbation`, :meth:`apply` and :meth:`training_loss`, and may
    override :meth:`project` (called after every step) and :meth:`make_optimizer`."""

    Config = UniversalConfig
    universal = True

    def __init__(self, params: Any, task: Any):
        super().__init__(params, task)
        self.perturbation: dict[str, Tensor] = {}

    # --- to implement -----------------------------------------------------------------------------------
    def init_perturbation(self, info: DataInfo, device: torch.device, generator: torch.Generator) -> None:
        """Create ``self.perturbation`` (tensors with ``requires_grad=True``) for images of ``info``."""
        raise NotImplementedError

    def apply(self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """Images in [0,1] with the perturbation applied (differentiable w.r.t. the perturbation)."""
        raise NotImplementedError

    def training_loss(self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        """Scalar loss the optimiser *minimises* for one training batch."""
        raise NotImplementedError

    # --- defaults ---------------------------------------------------------------------------------------
    def project(self) -> None:
        """Enforce the threat model in place after each optimiser step (default: values in [0, 1])."""
        with torch.no_grad():
            for t in self.perturbation.values():
                t.clamp_(0, 1)

    def make_optimizer(self, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """(optimizer, scheduler or None) over the perturbation; default signed-gradient descent."""
        return SignSGD(list(self.perturbation.values()), lr=self.params.lr), None

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        if not self.perturbation:
            raise RuntimeError(
                f"universal attack '{self.registered_name}' has no perturbation; fit or load it"
            )
        with torch.no_grad():
            return self.apply(x, y).clamp(0, 1)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.perturbation.items()}

    def load_state_dict(self, state: dict[str, Tensor], device: torch.device) -> None:
        if self.perturbation and set(state) != set(self.perturbation):
            raise CheckpointError(
                f"perturbation file holds {sorted(state)} but attack '{self.registered_name}' "
                f"expects {sorted(self.perturbation)}"
            )
        self.perturbation = {k: v.to(device).requires_grad_(True) for k, v in state.items()}

    def load(self, path: str | os.PathLike, device: torch.device) -> None:
        state = torch.load(os.path.expanduser(str(path)), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"'{path}' is not an advlab perturbation file (a dict of tensors)")
        self.load_state_dict(state, device)

    def epoch_end_hook(self, model: nn.Module, data: Any, device: torch.device) -> Any:
        """Optional ``epoch_end(epoch) -> {name: value}`` for the universal loop (e.g. a validation curve)."""
        return None

    def save_artifacts(self, run_dir: Path) -> dict[str, Path]:
        """Write pictures of the perturbation to ``run_dir``; return {name: path} for the tracker."""
        return {}
