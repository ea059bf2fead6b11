"""Segmentation's Houdini objective (Cisse et al. 2017 per pixel: Gaussian tail of the score gap times the 0-1
error) against hand-computed values and gradients, and the instance-targeted scores (SemanticAdv's
street-view attack: share of the instance given the target label / no longer its class, accuracy on the rest)
against hand-counted pixels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS
from advlab.tasks.segmentation import instance_goal, instance_outcome

INFO = DataInfo(3, (3, 1, 2), ["road", "person", "car"], (0.5,) * 3, (0.25,) * 3)


def seg_task(**kw):
    return TASKS.build(TASKS.parse({"name": "segmentation", **kw}), INFO)


def phi_tail(d: float) -> float:
    """1 - Phi(d) for the standard normal."""
    return 0.5 * math.erfc(d / math.sqrt(2))


def normal_pdf(d: float) -> float:
    return math.exp(-0.5 * d * d) / math.sqrt(2 * math.pi)


# two pixels; logits per pixel (road, person, car): pixel 0 (2, 1, 0) -> predicts road; pixel 1 (0, 3, 1) -> person
LOGITS = torch.tensor([[[[2.0, 0.0]], [[1.0, 3.0]], [[0.0, 1.0]]]])  # [1, 3, 1, 2]


def test_targeted_houdini_equals_the_definition_and_moves_logits_where_the_0_1_loss_is_flat():
    task = seg_task(objective="houdini")
    target = torch.tensor([[[1, 1]]])  # both pixels should read "person"
    z = LOGITS.clone().requires_grad_(True)
    loss = task.attack_loss(z, torch.tensor([[[0, 1]]]), target)
    loss_value = float(loss.detach())
    # pixel 0: y_hat = road (2), g(target) = 1 -> delta = -1, l = 1; pixel 1: y_hat = target -> l = 0
    expected = -(phi_tail(-1.0) * 1.0 + 0.0) / 2
    assert loss_value == pytest.approx(expected, abs=1e-6)
    loss.sum().backward()
    g = z.grad[0, :, 0]  # [K, 2]
    # d/dz of -(1/2) * (1 - Phi(z_person - z_road)) at pixel 0: person +phi(-1)/2, road -phi(-1)/2
    assert float(g[1, 0]) == pytest.approx(normal_pdf(-1.0) / 2, abs=1e-6)
    assert float(g[0, 0]) == pytest.approx(-normal_pdf(-1.0) / 2, abs=1e-6)
    assert float(g[2, 0]) == 0.0 and torch.all(g[:, 1] == 0)  # the reached pixel contributes nothing
    # the 0-1 error itself is piecewise constant: no gradient anywhere (its autograd graph is empty)
    zero_one = (z.argmax(1) != target).float().mean()
    assert not zero_one.requires_grad


def test_untargeted_houdini_scores_the_runner_up_on_correct_pixels():
    task = seg_task(objective="houdini")
    y = torch.tensor([[[0, 1]]])  # both pixels correct
    z = LOGITS.clone().requires_grad_(True)
    loss = task.attack_loss(z, y)
    # pixel 0: runner-up person (1): delta = 2 - 1 = 1; pixel 1: runner-up car (1): delta = 3 - 1 = 2; l = 1
    assert float(loss) == pytest.approx((phi_tail(1.0) + phi_tail(2.0)) / 2, abs=1e-6)
    loss.sum().backward()
    assert float(z.grad[0, 0, 0, 0]) == pytest.approx(-normal_pdf(1.0) / 2, abs=1e-6)
    assert float(z.grad[0, 1, 0, 0]) == pytest.approx(normal_pdf(1.0) / 2, abs=1e-6)
    # a wrong pixel: y_hat is the prediction (the definition), l = 1
    y_wrong = torch.tensor([[[1, 255]]])  # pixel 0 is labelled person but predicted road; pixel 1 ignored
    loss = task.attack_loss(LOGITS, y_wrong)
    assert float(loss) == pytest.approx(phi_tail(1.0 - 2.0), abs=1e-6)


def test_cross_entropy_stays_the_default_objective_and_the_option_is_checked():
    task = seg_task()
    target = torch.tensor([[[1, 1]]])
    ce = F.cross_entropy(LOGITS, target, reduction="none").mean()
    assert float(task.attack_loss(LOGITS, target, target)) == pytest.approx(-float(ce), abs=1e-6)
    with pytest.raises(ConfigError, match="objective"):
        seg_task(objective="dice")


def test_eot_patch_trains_with_the_houdini_objective():
    from advlab.attacks.base import ATTACKS

    info = DataInfo(3, (3, 8, 8), ["road", "person", "car"], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(TASKS.parse({"name": "segmentation", "objective": "houdini"}), info)
    attack = ATTACKS.create("eot_patch", task, patch_size=[4, 4], eot=False, placement="centre", loss="all")
    attack.init_perturbation(info, torch.device("cpu"), torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    x = torch.rand(2, 3, 8, 8)
    y = model(x).argmax(1)  # every pixel correct: the runner-up term carries the gradient
    loss = attack.training_loss(model, x, y, torch.Generator().manual_seed(0))
    loss.backward()
    assert attack.patch.grad is not None and float(attack.patch.grad.abs().sum()) > 0


# ---- instance-targeted scores ----------------------------------------------------------------------------


def test_instance_scores_equal_hand_counts():
    # 2 images, 3x3; class ids road 0, person 1, car 2; instance = the person (mask)
    y = torch.tensor(
        [
            [[0, 1, 1], [0, 1, 1], [0, 0, 255]],
            [[1, 1, 0], [1, 1, 0], [0, 0, 0]],
        ]
    )
    mask = torch.tensor(
        [
            [[0, 1, 1], [0, 1, 1], [0, 0, 0]],
            [[1, 1, 0], [1, 1, 0], [0, 0, 0]],
        ],
        dtype=torch.bool,
    )
    pred = torch.tensor(
        [
            [
                [0, 2, 1],
                [0, 2, 2],
                [1, 0, 0],
            ],  # instance: 3 of 4 -> car, 1 still person; rest: 4 labelled, 3 right
            [
                [2, 1, 2],
                [1, 0, 0],
                [0, 0, 0],
            ],  # instance: 1 -> car, 2 person, 1 road; rest: 5 labelled, 4 right
        ]
    )
    cls = torch.tensor([1, 1])  # both instances are persons
    out = instance_outcome(pred, y, mask, cls, target_label=2, mode="target", threshold=0.5)
    assert out.instance_target_share.tolist() == pytest.approx([3 / 4, 1 / 4])
    assert out.instance_own_share.tolist() == pytest.approx([1 / 4, 2 / 4])
    assert out.rest_pixel_acc.tolist() == pytest.approx([3 / 4, 4 / 5])
    assert out.instance_success.tolist() == pytest.approx([3 / 4, 1 / 4])
    assert out.success.tolist() == [True, False]
    van = instance_outcome(pred, y, mask, cls, target_label=0, mode="vanish", threshold=0.6)
    assert van.instance_success.tolist() == pytest.approx([3 / 4, 2 / 4])  # no longer its own class
    assert van.success.tolist() == [True, False]
    goal = instance_goal(y, mask, 2)
    assert goal[0].tolist() == [[255, 2, 2], [255, 2, 2], [255, 255, 255]]


def test_the_task_success_rule_on_an_instance_goal_is_the_instance_target_share():
    task = seg_task(success_pixel_acc=0.75)
    y = torch.tensor([[[0, 1, 1, 0]]])
    mask = y == 1
    goal = instance_goal(y, mask, 2)
    logits = (
        F.one_hot(torch.tensor([[[0, 2, 2, 0]]]), 3).permute(0, 3, 1, 2).float()
    )  # both instance px -> car
    assert task.success(logits, y, goal).tolist() == [True]
    logits = (
        F.one_hot(torch.tensor([[[2, 1, 2, 2]]]), 3).permute(0, 3, 1, 2).float()
    )  # one of two: 0.5 < 0.75
    assert task.success(logits, y, goal).tolist() == [False]
