"""Houdini (Cisse et al. 2017, Eq. 4) against its definition: a Gaussian tail probability times the task loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm

from advlab.tasks.houdini import houdini


def test_equals_the_gaussian_tail_times_the_task_loss():
    g_y = torch.tensor([0.3, -1.2, 2.0, 0.0], dtype=torch.float64)
    g_hat = torch.tensor([1.0, 0.5, 2.0, 3.5], dtype=torch.float64)
    loss = torch.tensor([1.0, 1.0, 0.0, 2.5], dtype=torch.float64)
    expected = [norm.sf(a - b) * c for a, b, c in zip(g_y.tolist(), g_hat.tolist(), loss.tolist())]
    # P[gamma > delta] by Monte Carlo as a second, independent reading of the definition
    gamma = torch.randn(400_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    monte_carlo = [
        float((gamma > a - b).double().mean()) * c
        for a, b, c in zip(g_y.tolist(), g_hat.tolist(), loss.tolist())
    ]
    got = houdini(g_y, g_hat, loss)
    assert got.tolist() == pytest.approx(expected, abs=1e-12)
    assert got.tolist() == pytest.approx(monte_carlo, abs=5e-3)


def test_gradient_is_non_zero_where_the_zero_one_loss_has_none():
    # per-pixel segmentation with 3 classes: pixels 0, 2 wrong, pixel 1 right
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0], [0.5, 0.2, 0.4]], requires_grad=True)
    y = torch.tensor([1, 1, 2])
    pred = logits.argmax(1)
    zero_one = (pred != y).float()
    assert zero_one.tolist() == [1.0, 0.0, 1.0]
    surrogate = houdini(
        logits.gather(1, y[:, None]).squeeze(1), logits.gather(1, pred[:, None]).squeeze(1), zero_one
    )
    surrogate.sum().backward()
    grad = logits.grad
    ce_grad = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), logits)[0]
    for p in (0, 2):  # a wrong pixel: both CE and Houdini move its scores
        assert ce_grad[p].abs().sum() > 0 and grad[p].abs().sum() > 0
        delta = float(logits[p, y[p]] - logits[p, pred[p]])
        phi = math.exp(-delta * delta / 2) / math.sqrt(2 * math.pi)
        assert float(grad[p, y[p]]) == pytest.approx(-phi)  # d/dg(y) of (1 - Phi(delta)) = -phi(delta)
        assert float(grad[p, pred[p]]) == pytest.approx(phi)
    assert grad[1].abs().sum() == 0  # a right pixel has task loss 0


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        houdini(torch.zeros(3), torch.zeros(3), torch.zeros(2))
