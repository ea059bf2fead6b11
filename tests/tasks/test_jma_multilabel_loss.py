"""JMA issue: the multi-label task's ``loss: categorical_hinge`` (Keras' categorical hinge on the sigmoid
outputs, the loss of the paper's VOC InceptionV3), against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS
from advlab.tasks.configs import MultiLabelConfig
from advlab.tasks.multilabel import categorical_hinge


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p))


def test_categorical_hinge_hand_computed():
    # Keras' documented example: y = [[0, 1], [0, 0]], outputs [[0.6, 0.4], [0.4, 0.6]]: per image
    # max(0, 0.6 - 0.4 + 1) = 1.2 and max(0, 0.6 - 0 + 1) = 1.6 (no label: neg - 0 + 1); mean 1.4
    y = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert categorical_hinge(logit([[0.6, 0.4], [0.4, 0.6]]), y).item() == pytest.approx(1.4)
    # three labels: positives sum 0.7 + 0.8 = 1.5 > 1 + 0.3 -> 0; one label 0.2 vs best other 0.9 -> 1.7
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    z = logit([[0.7, 0.8, 0.3], [0.2, 0.9, 0.5]])
    assert categorical_hinge(z[:1], y[:1]).item() == pytest.approx(0.0)
    assert categorical_hinge(z[1:], y[1:]).item() == pytest.approx(1.7)
    assert categorical_hinge(z, y).item() == pytest.approx(0.85)


def test_categorical_hinge_gradient():
    # image 2 above: d/dz of (p_1 - p_0 + 1) is -p0(1-p0) on label 0, +p1(1-p1) on label 1 (the max), 0 on
    # label 2; image 1 is past the margin: no gradient
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    z = logit([[0.7, 0.8, 0.3], [0.2, 0.9, 0.5]]).requires_grad_(True)
    categorical_hinge(z, y).backward()
    expected = torch.tensor([[0.0, 0.0, 0.0], [-0.2 * 0.8 / 2, 0.9 * 0.1 / 2, 0.0]], dtype=torch.float64)
    assert torch.allclose(z.grad, expected)


def test_task_loss_option():
    info = DataInfo(3, (3, 4, 4), ["a", "b", "c"], (0.0,) * 3, (1.0,) * 3)
    task = TASKS.create("multilabel", info, loss="categorical_hinge")
    y = torch.tensor([[1.0, 0.0, 0.0]])
    z = logit([[0.2, 0.9, 0.5]]).float()
    assert task.loss(z, y).item() == pytest.approx(1.7, abs=1e-6)
    with pytest.raises(ConfigError, match="task.loss: must be one of bce, asl, categorical_hinge"):
        MultiLabelConfig(name="multilabel", loss="hinge").validate("task")
