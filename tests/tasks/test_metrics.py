"""Metric definitions on hand-built outputs."""

from __future__ import annotations

import torch

from advlab.data.info import DataInfo
from advlab.metrics.distortion import distortion
from advlab.metrics.meter import Meter
from advlab.tasks.classification import Classification


def task(k=4):
    return Classification(None, DataInfo(k, (1, 2, 2), [str(i) for i in range(k)], (0.5,), (0.5,)))


def logits_for(preds, k=4):
    return torch.nn.functional.one_hot(torch.tensor(preds), k).float() * 5


def test_untargeted_asr_counts_initially_correct_examples_only():
    t = task()
    y = torch.tensor([0, 1, 2, 3, 1])
    clean = logits_for([0, 1, 2, 0, 1])  # examples 0,1,2,4 correct; 3 wrong
    adv = logits_for([1, 1, 0, 0, 3])  # 0: changed, 1: kept, 2: changed, 3: (wrong anyway), 4: changed
    m = Meter()
    t.update_attack_metrics(m, clean, adv, y, None)
    assert abs(m.compute()["asr"] - 3 / 4) < 1e-9


def test_targeted_asr_is_share_reaching_target():
    t = task()
    y = torch.tensor([0, 1, 2, 3])
    target = torch.tensor([1, 2, 0, 0])
    clean = logits_for([0, 1, 2, 0])
    adv = logits_for([1, 1, 0, 0])
    m = Meter()
    t.update_attack_metrics(m, clean, adv, y, target)
    assert abs(m.compute()["asr"] - 3 / 4) < 1e-9


def test_accuracy_meter_accumulates_over_batches():
    t = task()
    m = Meter()
    t.update_metrics(m, logits_for([0, 1, 2]), torch.tensor([0, 1, 1]))
    t.update_metrics(m, logits_for([3]), torch.tensor([3]))
    assert abs(m.compute()["acc"] - 3 / 4) < 1e-9


def test_margin_sign_matches_success():
    t = task()
    out = torch.tensor([[3.0, 1.0, 0.0, 0.0], [0.0, 2.0, 4.0, 0.0]])
    y = torch.tensor([0, 1])
    assert torch.allclose(t.margin(out, y), torch.tensor([2.0, -2.0]))  # true minus best other
    target = torch.tensor([1, 2])
    assert torch.allclose(t.margin(out, y, target), torch.tensor([2.0, -2.0]))  # best other minus target
    assert torch.equal(t.success(out, y), t.margin(out, y) < 0)
    assert torch.equal(t.success(out, y, target), t.margin(out, y, target) < 0)


def test_sample_targets_differ_from_labels_and_cover_classes():
    t = task(10)
    y = torch.arange(10).repeat(100)
    tg = t.sample_targets(y, torch.Generator().manual_seed(0))
    assert torch.all(tg != y) and set(tg.tolist()) == set(range(10))


def test_distortion_values():
    x = torch.zeros(2, 1, 2, 2)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.3
    x_adv[0, 0, 1, 1] = -0.4
    d = distortion(x, x_adv)
    assert torch.allclose(d["linf"], torch.tensor([0.4, 0.0]))
    assert torch.allclose(d["l2"], torch.tensor([0.5, 0.0]))


def test_meter_mask_and_max():
    m = Meter()
    m.add("v", torch.tensor([1.0, 2.0, 3.0]), mask=torch.tensor([True, False, True]))
    m.add_max("mx", torch.tensor([1.0, 5.0]))
    m.add_max("mx", torch.tensor([2.0]))
    assert m.compute() == {"mx": 5.0, "v": 2.0}
