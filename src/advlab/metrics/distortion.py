"""Perturbation size metrics, per sample."""

from __future__ import annotations

from torch import Tensor

from advlab.attacks.perturbation import lp_norm


def distortion(x: Tensor, x_adv: Tensor) -> dict[str, Tensor]:
    """Per-sample ``linf`` and ``l2`` of ``x_adv - x`` (images in [0,1])."""
    delta = (x_adv - x).detach()
    return {"linf": lp_norm(delta, "linf"), "l2": lp_norm(delta, "l2")}
