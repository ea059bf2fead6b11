"""Segmentation task metrics against hand-computed confusion matrices, and the EOT patch's geometry: the patch
stays in [0, 1], lands where the placement says, and EOT transforms move images and labels together."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import fit_whole_and_resumed

from advlab.attacks.base import ATTACKS
from advlab.attacks.eot_patch import eot_transform, paste_patch, patch_positions
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.tasks.base import TASKS

INFO = DataInfo(3, (3, 4, 4), ["road", "car", "sky"], (0.5,) * 3, (0.25,) * 3)


def seg_task(**kw):
    return TASKS.build(TASKS.parse({"name": "segmentation", **kw}), INFO)


def logits_for(pred: torch.Tensor, k: int = 3) -> torch.Tensor:
    return F.one_hot(pred, k).permute(0, 3, 1, 2).float() * 5.0


def test_miou_equals_hand_computed_confusion_matrix_ignoring_255():
    y = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 255], [2, 2, 255, 255], [2, 2, 2, 0]]])
    p = torch.tensor([[[0, 1, 1, 1], [0, 0, 0, 2], [2, 2, 1, 0], [2, 0, 2, 0]]])
    # labelled pixels (y != 255): 13. confusion rows gt, cols pred:
    #   gt0 (5 px): pred 0,1,0,0,0 -> [4,1,0];  gt1 (3 px): pred 1,1,0 -> [1,2,0];  gt2 (5 px): 2,2,2,0,2 -> [1,0,4]
    tp = [4, 2, 4]
    gt = [5, 3, 5]
    pred = [4 + 1 + 1, 1 + 2 + 0, 0 + 0 + 4]
    iou = [t / (g + q - t) for t, g, q in zip(tp, gt, pred)]  # 4/7, 2/4, 4/5
    task = seg_task()
    meter = task.meter()
    # two batches: the meter accumulates the confusion matrix across them
    task.update_metrics(meter, logits_for(p[:, :2]), y[:, :2])
    task.update_metrics(meter, logits_for(p[:, 2:]), y[:, 2:])
    m = meter.compute()
    assert m["mIoU"] == pytest.approx(sum(iou) / 3)
    assert m["iou/road"] == pytest.approx(4 / 7)
    assert m["iou/car"] == pytest.approx(0.5)
    assert m["iou/sky"] == pytest.approx(0.8)
    assert m["pixel_acc"] == pytest.approx(10 / 13)
    assert m["mAcc"] == pytest.approx((4 / 5 + 2 / 3 + 4 / 5) / 3)


def test_absent_class_is_left_out_of_the_mean_and_reported_as_nan():
    y = torch.tensor([[[0, 0], [1, 1]]])
    task = seg_task()
    meter = task.meter()
    task.update_metrics(meter, logits_for(y), y)
    m = meter.compute()
    assert m["mIoU"] == 1.0 and math.isnan(m["iou/sky"])


def test_logits_at_lower_resolution_are_resized_to_the_label():
    y = torch.zeros(1, 8, 8, dtype=torch.long)
    y[:, :, 4:] = 1
    small = logits_for(torch.tensor([[[0, 1], [0, 1]]]))  # 2x2 logits for an 8x8 label
    task = seg_task()
    meter = task.meter()
    task.update_metrics(meter, small, y)
    assert meter.compute()["pixel_acc"] == 1.0
    assert task.loss(small, y).ndim == 0


def test_attack_objective_is_per_sample_and_success_follows_pixel_accuracy():
    task = seg_task(success_pixel_acc=0.5)
    y = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [2, 255]]])
    good = logits_for(torch.where(y == 255, 0, y))
    bad = logits_for(torch.tensor([[[1, 1], [0, 1]], [[2, 0], [0, 0]]]))  # acc 1/4 and 1/3
    assert task.attack_loss(good, y).shape == (2,)
    assert (task.attack_loss(bad, y) > task.attack_loss(good, y)).all()
    assert task.correct(good, y).all() and not task.correct(bad, y).any()
    assert task.success(bad, y).all()
    # margin <= 0 exactly when the attack succeeded
    assert (task.margin(good, y) > 0).all() and (task.margin(bad, y) <= 0).all()
    target = task.sample_targets(y, torch.Generator().manual_seed(0))
    assert (target[y == 255] == 255).all() and (target[y != 255] != y[y != 255]).all()
    assert task.success(logits_for(torch.where(target == 255, 0, target)), y, target).all()


def patch_attack(**kw):
    node = {"name": "eot_patch", "patch_size": [3, 5], "crop": None, **kw}
    return ATTACKS.build(ATTACKS.parse(node), seg_task())


@pytest.mark.parametrize(
    "placement,top,left",
    [
        ("centre", 4, 5),
        ("top_left", 0, 0),
        ("top_right", 0, 11),
        ("bottom_left", 9, 0),
        ("bottom_right", 9, 11),
    ],
)
def test_patch_lands_where_the_placement_says_and_labels_under_it_are_ignored(placement, top, left):
    attack = patch_attack(placement=placement)
    info = DataInfo(3, (3, 12, 16), ["a", "b", "c"], (0.5,) * 3, (0.25,) * 3)
    attack.init_perturbation(info, torch.device("cpu"), torch.Generator().manual_seed(0))
    x = torch.full((2, 3, 12, 16), -1.0)  # outside [0, 1]: untouched pixels are recognisable
    y = torch.zeros(2, 12, 16, dtype=torch.long)
    out = attack.apply(x, y)
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[top : top + 3, left : left + 5] = True
    for i in range(2):
        assert torch.equal(out[i, 0] >= 0, expected)
        torch.testing.assert_close(out[i, :, top : top + 3, left : left + 5], attack.patch.detach())
        assert torch.equal(attack.adv_labels(y)[i] == 255, expected)


def test_random_placement_differs_per_image_and_stays_inside():
    top, left = patch_positions("random", (20, 30), (5, 7), 64, torch.Generator().manual_seed(1))
    assert top.min() >= 0 and top.max() <= 15 and left.min() >= 0 and left.max() <= 23
    assert len(set(zip(top.tolist(), left.tolist()))) > 10
    x = torch.zeros(64, 3, 20, 30)
    patched, mask = paste_patch(x, torch.ones(3, 5, 7), top, left)
    assert (mask.flatten(1).sum(1) == 35).all() and torch.equal(patched[:, 0] > 0, mask)


def test_patch_stays_in_unit_box_after_optimiser_steps():
    attack = patch_attack(lr=0.3, init="uniform", patch_size=[2, 3])
    attack.init_perturbation(INFO, torch.device("cpu"), torch.Generator().manual_seed(0))
    opt, _ = attack.make_optimizer(10)
    for _ in range(5):
        attack.patch.grad = torch.randn_like(attack.patch)
        opt.step()
        attack.project()
    assert attack.patch.min() >= 0 and attack.patch.max() <= 1
    assert ((attack.patch == 0) | (attack.patch == 1)).any()  # the steps did reach the bounds


def test_patch_that_does_not_fit_is_a_config_error():
    attack = patch_attack(patch_size=[10, 10])
    with pytest.raises(ConfigError, match="patch_size"):
        attack.init_perturbation(INFO, torch.device("cpu"), torch.Generator())


def test_eot_transforms_apply_the_same_geometry_to_image_and_label():
    # an image whose first channel encodes the label in flat 8x8 blocks: wherever a transformed pixel lies
    # inside a block, its bilinear image value must decode to the nearest-sampled label
    g = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 19, (4, 8, 12), generator=g)
    y = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)  # [4, 64, 96]
    y[:, :3, :5] = 255
    x = torch.stack([y.float() / 255, torch.rand(4, 64, 96), torch.rand(4, 64, 96)], 1)
    xt, yt = eot_transform(x, y, torch.Generator().manual_seed(3), (0.5, 2.0), (48, 48), True, 255)
    assert xt.shape == (4, 3, 48, 48) and yt.shape == (4, 48, 48)
    decoded = (xt[:, 0] * 255).round().long()
    # compare away from block edges (where bilinear mixes two blocks); pixels padded in are ignored / zero
    interior = (
        F.max_pool2d(decoded[:, None].float(), 3, 1, 1) == -F.max_pool2d(-decoded[:, None].float(), 3, 1, 1)
    )[:, 0]
    both = interior & (yt != 255) & (decoded != 0)
    assert both.sum() > 1000
    assert torch.equal(decoded[both], yt[both])
    assert ((yt == 255) | (yt < 19)).all()


def test_eot_with_unit_scale_is_a_crop_and_flip_of_the_input():
    x = torch.rand(8, 3, 16, 16)
    y = torch.randint(0, 5, (8, 16, 16))
    xt, yt = eot_transform(x, y, torch.Generator().manual_seed(0), (1.0, 1.0), None, True)
    flipped = torch.isclose(xt, x.flip(-1), atol=1e-5).flatten(1).all(1)
    same = torch.isclose(xt, x, atol=1e-5).flatten(1).all(1)
    assert (flipped | same).all() and flipped.any() and same.any()
    assert torch.equal(yt[flipped], y.flip(-1)[flipped]) and torch.equal(yt[same], y[same])


def test_killed_patch_training_resumes_to_the_same_patch(tmp_path):
    from advlab.data.base import DATASETS

    data = DATASETS.build(
        DATASETS.parse({"name": "digits_seg", "num_train": 48, "num_test": 8, "size": 32}), 0
    )
    task = TASKS.build(TASKS.parse({"name": "segmentation"}), data.info)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 11, 5, padding=2)

    def attack(epochs):
        node = {"name": "eot_patch", "patch_size": [8, 8], "crop": None, "epochs": epochs, "batch_size": 16,
                "lr": 0.05}  # fmt: skip
        return ATTACKS.build(ATTACKS.parse(node), task)

    whole, resumed, history = fit_whole_and_resumed(attack, model, data, 5, tmp_path)
    assert [h["universal/epoch"] for h in history] == [1, 2]
    torch.testing.assert_close(resumed.state_dict()["patch"], whole.state_dict()["patch"])
    start = attack(2)
    start.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(5))
    assert not torch.equal(start.state_dict()["patch"], whole.state_dict()["patch"])  # the steps moved it


# --- the gamma-weighted loss of the paper's reference [13] ---------------------------------------------------
# one 2x3 image, 3 classes; pixel (0, 0) lies under a 1x1 top-left patch, pixel (1, 2) is unlabelled
GAMMA_LOGITS = [  # [row][col] -> logits of the 3 classes
    [[0.0, 0.0, 0.0], [2.0, 0.5, -1.0], [0.1, 1.5, 0.3]],
    [[-0.5, 0.2, 1.9], [1.0, 1.2, 0.0], [3.0, 0.0, 0.0]],
]
GAMMA_LABELS = [[0, 0, 1], [0, 1, 255]]


def _hand_ce(z: list[float], y: int) -> float:
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def _hand_sets() -> tuple[list[float], list[float]]:
    """CE of the correctly / wrongly classified labelled pixels outside the patch, computed by hand."""
    right, wrong = [], []
    for r in range(2):
        for c in range(3):
            y = GAMMA_LABELS[r][c]
            if (r, c) == (0, 0) or y == 255:
                continue
            z = GAMMA_LOGITS[r][c]
            (right if max(range(3), key=lambda k: z[k]) == y else wrong).append(_hand_ce(z, y))
    return right, wrong


class _FixedLogits(torch.nn.Module):
    def forward(self, x):
        return torch.tensor(GAMMA_LOGITS).permute(2, 0, 1)[None].expand(x.shape[0], -1, -1, -1) + 0 * x.sum()


def _training_loss(**kw) -> float:
    info = DataInfo(3, (3, 2, 3), ["a", "b", "c"], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(TASKS.parse({"name": "segmentation"}), info)
    attack = ATTACKS.create(
        "eot_patch", task, patch_size=[1, 1], placement="top_left", crop=None, eot=False, **kw
    )
    gen = torch.Generator().manual_seed(0)
    attack.init_perturbation(info, torch.device("cpu"), gen)
    x, y = torch.rand(1, 3, 2, 3), torch.tensor([GAMMA_LABELS])
    return -float(
        attack.training_loss(_FixedLogits(), x, y, gen).detach()
    )  # the loop minimises the negated loss


@pytest.mark.parametrize("gamma", [0.0, 0.3, 0.8, 1.0, None])
def test_gamma_loss_equals_the_hand_computed_weighted_sum_of_correct_and_wrong_pixel_ce(gamma):
    right, wrong = _hand_sets()
    assert len(right) == 3 and len(wrong) == 1  # both kinds of pixel; the adaptive gamma is 3/4
    g = len(right) / (len(right) + len(wrong)) if gamma is None else gamma  # adaptive: |Omega_x| / |Omega|
    expected = g * sum(right) / len(right) + (1 - g) * sum(wrong) / len(wrong)
    assert _training_loss(loss="gamma", gamma=gamma) == pytest.approx(expected, rel=1e-6)
    if gamma == 1.0:  # all weight on the correct pixels: the paper's simplified loss
        assert _training_loss(loss="correct") == pytest.approx(expected, rel=1e-6)


def test_gamma_needs_loss_gamma_and_a_weight_in_the_unit_interval():
    with pytest.raises(ConfigError, match="attack.gamma"):
        ATTACKS.parse({"name": "eot_patch", "loss": "gamma", "gamma": 1.5})
    with pytest.raises(ConfigError, match="attack.gamma"):
        ATTACKS.parse({"name": "eot_patch", "loss": "correct", "gamma": 0.5})
    with pytest.raises(ConfigError, match="attack.loss"):
        ATTACKS.parse({"name": "eot_patch", "loss": "weighted"})
