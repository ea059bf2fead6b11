"""Additive Lp threat models: norms, projections, random starts and steepest-ascent directions, batched."""

from __future__ import annotations

import torch
from torch import Tensor

from advlab import keyed_random
from advlab.attacks.configs import NORMS  # noqa: F401


def _view(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *([1] * (like.dim() - 1)))


def lp_norm(delta: Tensor, norm: str) -> Tensor:
    """Per-sample norm of a batch of perturbations."""
    flat = delta.flatten(1)
    if norm == "linf":
        return flat.abs().amax(dim=1)
    if norm == "l2":
        return flat.norm(p=2, dim=1)
    raise ValueError(f"unknown norm '{norm}'")


def project(delta: Tensor, norm: str, eps: float) -> Tensor:
    """Project each perturbation onto the eps-ball of ``norm``."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    n = lp_norm(delta, "l2")
    factor = torch.clamp(eps / (n + 1e-12), max=1.0)
    return delta * _view(factor, delta)


def ascent_direction(grad: Tensor, norm: str) -> Tensor:
    """Steepest-ascent direction of unit ``norm`` (sign for Linf, normalised gradient for L2)."""
    if norm == "linf":
        return grad.sign()
    n = lp_norm(grad, "l2")
    return grad / _view(n + 1e-12, grad)


def random_start(x: Tensor, norm: str, eps: float) -> Tensor:
    """A random point of the eps-ball (uniform for Linf; uniform direction, uniform radius for L2). Inside the
    evaluate loop the draws are keyed on each image (:mod:`advlab.keyed_random`), elsewhere torch's RNG."""
    if norm == "linf":
        return keyed_random.uniform_like(x, -eps, eps)
    direction = keyed_random.randn_like(x)
    direction = direction / _view(lp_norm(direction, "l2") + 1e-12, x)
    radius = keyed_random.rand_per_image(x) * eps
    return direction * _view(radius, x)
