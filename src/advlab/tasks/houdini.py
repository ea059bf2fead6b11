"""Houdini: a differentiable surrogate of a structured task loss.

Cisse, Adi, Neverova, Keshet, "Houdini: Fooling Deep Structured Visual and Speech Recognition Models with
Adversarial Examples", NeurIPS 2017, https://arxiv.org/abs/1707.05373 (Eq. 4):

    l_H(theta, x, y) = P_{gamma ~ N(0, 1)}[ g(x, y) - g(x, y_hat) < gamma ] * l(y_hat, y)

``g(x, y)`` is the model's score of the structured output ``y``, ``y_hat = argmax_y g(x, y)`` the prediction and
``l`` the task loss (e.g. a pixel's 0-1 error, a landmark's distance). The probability is the Gaussian tail
``1 - Phi(delta)`` of the score gap ``delta = g(x, y) - g(x, y_hat)`` (<= 0 when ``y_hat`` is the argmax), so the
surrogate is smooth in the scores even where ``l`` is piecewise constant: its gradient is
``phi(delta) * l * (d g(y_hat) - d g(y))``, non-zero wherever the prediction is wrong.

Untargeted, the attacker maximises ``l_H`` with ``y`` the ground truth; targeted (SemanticAdv's landmark and
street-view attacks), the attacker *minimises* ``l_H`` with ``y`` the adversarial target, which is zero once the
prediction equals the target.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def houdini(score_of_y: Tensor, score_of_prediction: Tensor, task_loss: Tensor) -> Tensor:
    """Elementwise Houdini surrogate ``P[g(y) - g(y_hat) < gamma] * l(y_hat, y)``, gamma ~ N(0, 1).

    ``score_of_y`` / ``score_of_prediction``: the scores ``g(x, y)`` and ``g(x, y_hat)`` of the same shape
    (per sample, per pixel or per landmark); ``task_loss``: ``l(y_hat, y)`` of that shape, treated as a constant
    (it is detached: Houdini differentiates through the scores only).
    """
    if score_of_y.shape != score_of_prediction.shape or score_of_y.shape != task_loss.shape:
        raise ValueError(
            "houdini: score_of_y, score_of_prediction and task_loss must have one shape "
            f"(got {tuple(score_of_y.shape)}, {tuple(score_of_prediction.shape)}, {tuple(task_loss.shape)})"
        )
    delta = score_of_y - score_of_prediction
    tail = 0.5 * torch.erfc(delta / math.sqrt(2.0))  # 1 - Phi(delta)
    return tail * task_loss.detach()
