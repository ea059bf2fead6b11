"""PAR task: metrics equal hand-computed values (both thresholds, both F1 conventions), PromptPAR's weighted
BCE, and the label perturbation (shifted attributes stay in their part group, reproducible from the seed)."""

from __future__ import annotations

import math

import pytest
import torch

from advlab.tasks.par import PAR, PARInfo, PARTaskConfig, shift_labels, shift_maps

Y = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.float32)
PROBS = torch.tensor([[0.9, 0.2, 0.46], [0.3, 0.47, 0.8], [0.6, 0.44, 0.1], [0.2, 0.55, 0.3]])
LOGITS = torch.log(PROBS / (1 - PROBS))


def info(a=3, groups=(), rates=None) -> PARInfo:
    return PARInfo(
        num_classes=a, image_shape=(3, 8, 8), class_names=[f"a{i}" for i in range(a)], mean=(0.5,) * 3,
        std=(0.5,) * 3, groups=list(groups), positive_rates=rates,
    )  # fmt: skip


def metrics(threshold: float, f1: str, batches=((0, 4),)) -> dict[str, float]:
    task = PAR(PARTaskConfig(name="par", threshold=threshold, f1=f1), info())
    meter = task.meter()
    for lo, hi in batches:
        task.update_metrics(meter, LOGITS[lo:hi], Y[lo:hi])
    return meter.compute()


# Hand computation. threshold 0.45 -> pred [[1,0,1],[0,1,1],[1,0,0],[0,1,0]]
#   per attribute (TP/P + TN/N)/2: a0 (2/2+2/2)/2 = 1, a1 (1/2+1/2)/2 = .5, a2 (2/2+2/2)/2 = 1 -> mA 5/6
#   per sample |gt&pred| / |gt|pred|, /|pred|, /|gt|: s0 1,1,1  s1 .5,.5,1  s2 .5,1,.5  s3 1,1,1
#   -> acc .75, prec .875, rec .875; F1 from means .875; mean per-sample F1 (1 + 2/3 + 2/3 + 1)/4 = 5/6
# threshold 0.5 -> pred [[1,0,0],[0,0,1],[1,0,0],[0,1,0]]
#   a0 1, a1 (1/2 + 2/2)/2 = .75, a2 (1/2 + 2/2)/2 = .75 -> mA 2.5/3
#   s0 .5,1,.5  s1 1,1,1  s2 .5,1,.5  s3 1,1,1 -> acc .75, prec 1, rec .75
#   F1 from means 2*.75/1.75 = 6/7; mean per-sample F1 (2/3 + 1 + 2/3 + 1)/4 = 5/6
@pytest.mark.parametrize(
    "threshold,f1,expected",
    [
        (
            0.45,
            "means",
            {"mA": 5 / 6, "instance_acc": 0.75, "precision": 0.875, "recall": 0.875, "f1": 0.875},
        ),
        (
            0.45,
            "instances",
            {"mA": 5 / 6, "instance_acc": 0.75, "precision": 0.875, "recall": 0.875, "f1": 5 / 6},
        ),
        (0.5, "means", {"mA": 2.5 / 3, "instance_acc": 0.75, "precision": 1.0, "recall": 0.75, "f1": 6 / 7}),
        (
            0.5,
            "instances",
            {"mA": 2.5 / 3, "instance_acc": 0.75, "precision": 1.0, "recall": 0.75, "f1": 5 / 6},
        ),
    ],
)
def test_metrics_equal_hand_computed_values(threshold, f1, expected):
    got = metrics(threshold, f1)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key
    # accumulated over several batches: the same split-level numbers
    split = metrics(threshold, f1, batches=((0, 1), (1, 3), (3, 4)))
    for key, value in expected.items():
        assert split[key] == pytest.approx(value, abs=1e-6), key


def test_empty_prediction_and_empty_ground_truth_count_as_zero():
    task = PAR(PARTaskConfig(name="par"), info())
    meter = task.meter()
    task.update_metrics(meter, torch.full((1, 3), -10.0), torch.zeros(1, 3))
    m = meter.compute()
    assert m["instance_acc"] == 0 and m["precision"] == 0 and m["recall"] == 0
    # no positive in the split: TP/P = 0 (eps), TN/N = 1 -> mA 0.5
    assert m["mA"] == pytest.approx(0.5)


def test_weighted_bce_matches_promptpar_formula():
    rates = (0.2, 0.5, 0.9)
    task = PAR(PARTaskConfig(name="par"), info(rates=rates))
    total = 0.0
    for b in range(4):
        for a in range(3):
            y, p, r = float(Y[b, a]), float(PROBS[b, a]), rates[a]
            w = math.exp(y * (1 - r) + (1 - y) * r)
            total += -w * (y * math.log(p) + (1 - y) * math.log(1 - p))
    assert task.loss(LOGITS, Y).item() == pytest.approx(total / 4, rel=1e-5)  # sum over attributes / batch
    # stacked heads: L_cls + 0.5 * L_aux
    stacked = torch.stack([LOGITS, torch.zeros_like(LOGITS)], 1)
    aux = sum(
        math.exp(float(Y[b, a]) * (1 - rates[a]) + (1 - float(Y[b, a])) * rates[a]) * math.log(2)
        for b in range(4) for a in range(3)
    )  # fmt: skip
    assert task.loss(stacked, Y).item() == pytest.approx((total + 0.5 * aux) / 4, rel=1e-5)


GROUPS = [(0, 5), (5, 15), (15, 21), (21, 25), (25, 30), (30, 34), (34, 35)]  # PETA


def test_label_perturbation_stays_in_groups_and_is_reproducible():
    y = (torch.rand(500, 35, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    for per_sample in (1, 500):
        maps = shift_maps(GROUPS, per_sample, torch.Generator().manual_seed(7))
        again = shift_maps(GROUPS, per_sample, torch.Generator().manual_seed(7))
        other = shift_maps(GROUPS, per_sample, torch.Generator().manual_seed(8))
        shifted = shift_labels(y, GROUPS, maps)
        assert torch.equal(shifted, shift_labels(y, GROUPS, again))
        assert not torch.equal(shifted, shift_labels(y, GROUPS, other))
        for (start, end), m in zip(GROUPS, maps):
            seg, new = y[:, start:end], shifted[:, start:end]
            if end - start == 1:
                assert torch.equal(new, 1 - seg)  # a group of one attribute is flipped
                continue
            m = m.expand(500, -1)
            assert (m != torch.arange(end - start)).all()  # every attribute moves to another index
            assert ((m >= 0) & (m < end - start)).all()  # ... of the same group
            assert torch.equal(new.sum(1), seg.sum(1))  # positives are moved, not created or lost
            assert torch.equal(new.gather(1, m), seg)  # attribute start+i lands at start+m[i]
    # attributes outside every group are unchanged
    partial = [(1, 4)]
    maps = shift_maps(partial, 1, torch.Generator().manual_seed(0))
    out = shift_labels(y[:, :6], partial, maps)
    assert torch.equal(out[:, [0, 4, 5]], y[:, [0, 4, 5]])


def test_task_targets_are_group_shifts_and_margin_sign_matches_success():
    task = PAR(PARTaskConfig(name="par"), info(a=35, groups=GROUPS))
    y = (torch.rand(64, 35, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    target = task.sample_targets(y, torch.Generator().manual_seed(0))
    for start, end in GROUPS[:-1]:
        assert torch.equal(target[:, start:end].sum(1), y[:, start:end].sum(1))
    assert torch.equal(target[:, 34], 1 - y[:, 34])
    logits = torch.randn(64, 35)
    for tgt in (None, target):
        margin = task.margin(logits, y, tgt)
        assert torch.equal(margin < 0, task.success(logits, y, tgt))
