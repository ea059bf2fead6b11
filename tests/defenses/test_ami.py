"""AMI (Tao et al. 2018): the witness rule on a constructed example, the steered model changing only its layer,
the two detection rules, and the detection rates the SemanticAdv pipeline reports."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advlab.data.base import DATASETS
from advlab.data.info import DataInfo
from advlab.defenses.ami import AMIDefense, SteeredModel, layer_neurons, neuron_values, select_witnesses
from advlab.defenses.base import DEFENSES
from advlab.errors import ConfigError
from advlab.registry import parse_config
from advlab.tasks.base import TASKS

INFO = DataInfo(3, (3, 8, 8), ["a", "b", "c"], (0.5,) * 3, (0.5,) * 3)


def classification():
    return TASKS.create("classification", INFO)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(5 * 8 * 8, 3),
    ).eval()  # fmt: skip


def test_witnesses_change_under_substitution_and_stay_under_preservation():
    base = torch.zeros(4, 4)
    scale = torch.ones(4)
    sub = base.clone()
    sub[:, 0] = 1.0  # follows the attribute on every pair
    sub[:, 1] = 1.0  # ... but also follows the rest (preservation below)
    sub[0, 3] = 1.0  # follows the attribute on 1 of 4 pairs only
    pres = base.clone()
    pres[:, 1] = -1.0
    # neuron 2 never changes: no witness either
    w = select_witnesses(base, sub, pres, scale, change_threshold=0.5, consistency=0.75)
    assert w.tolist() == [True, False, False, False]
    # consistency 0.25: one substitution pair in four is enough for neuron 3
    w = select_witnesses(base, sub, pres, scale, change_threshold=0.5, consistency=0.25)
    assert w.tolist() == [True, False, False, True]
    # the change is measured in units of the neuron's spread: a change of 1 is no change at scale 4
    assert not select_witnesses(base, sub, pres, scale * 4, 0.5, 0.75).any()


def test_neuron_values_are_channel_means_or_units():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    assert torch.equal(neuron_values(a), a.mean(dim=(2, 3)))
    assert torch.equal(neuron_values(a[:, :, 0, 0]), a[:, :, 0, 0])


def test_steering_changes_only_its_layer():
    net = small_net()
    gain = torch.tensor([1.5, 0.5, 0.5, 1.5, 0.5])
    steered = SteeredModel(net, "2", gain)
    x = torch.rand(3, 3, 8, 8)
    seen = {}

    def record(tag):
        return lambda m, i, o: seen.__setitem__(tag, o.detach().clone())

    handles = []
    for model, tag in ((net, "orig"), (steered.model, "steer")):
        for name in ("0", "1", "2", "3"):
            handles.append(dict(model.named_modules())[name].register_forward_hook(record(f"{tag}{name}")))
    with torch.no_grad():
        out, out_s = net(x), steered(x)
    for h in handles:
        h.remove()
    for name in ("0", "1"):  # before the layer: identical
        assert torch.equal(seen[f"orig{name}"], seen[f"steer{name}"])
    # the layer: its output per channel x gain (the hook's value replaces the module's output)
    assert torch.allclose(seen["steer3"], torch.relu(seen["orig2"] * gain.view(1, -1, 1, 1)))
    assert not torch.allclose(out, out_s)
    # the victim itself is untouched (no hook, same outputs, same parameters)
    assert torch.equal(net(x), out)
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), steered.model.parameters()))
    assert not any(p.requires_grad for p in steered.parameters())
    with pytest.raises(ConfigError, match="no module 'fc9'"):
        SteeredModel(net, "fc9", gain)


def test_fit_steers_witnesses_up_and_the_rest_down():
    net = small_net()
    ami = DEFENSES.create("ami", classification(), layer="2", strengthen=2.0, weaken=0.25, consistency=0.5)
    x = torch.rand(8, 3, 8, 8)
    sub = x.clone()
    sub[:, :, :4] = torch.rand(8, 3, 4, 8)  # the "attribute" (upper half) substituted
    pres = x.clone()
    pres[:, :, 4:] = torch.rand(8, 3, 4, 8)  # the attribute kept, the rest changed
    with pytest.raises(ConfigError, match="pipeline=semantic_adv"):
        ami.wrap(net)  # not fitted: refused, not silently undefended
    ami.fit(net, {"top": (x, sub, pres)})
    assert ami.wrap(net) is net
    base = layer_neurons(net, "2", x)
    expected = select_witnesses(
        base, layer_neurons(net, "2", sub), layer_neurons(net, "2", pres), base.std(0), 0.5, 0.5
    )
    assert torch.equal(ami.witnesses, expected)
    assert torch.equal(ami.steered.gain, torch.where(expected, 2.0, 0.25))


def test_decision_detector_flags_disagreeing_labels():
    net = small_net()
    task = classification()
    x = torch.rand(16, 3, 8, 8)
    same = DEFENSES.create("ami", task, layer="2", strengthen=1.0, weaken=1.0, detection="decision")
    same.fit(net, {"a": (x, x, x)})
    assert same.detector_score(net, x).sum() == 0  # the steered model is the victim: nothing flagged
    ami = DEFENSES.create("ami", task, layer="2", strengthen=1.0, weaken=0.0, detection="decision")
    ami.fit(net, {"a": (x, x, x)})  # no neuron changes: no witness, every channel x 0
    flags = ami.detector_score(net, x)
    with torch.no_grad():
        expected = net(x).argmax(1) != ami.steered(x).argmax(1)
    assert torch.equal(flags, expected.float())


def test_consistency_threshold_flags_the_benign_fpr_of_clean_images(tmp_path):
    from advlab.victims.base import VICTIMS

    cls = DATASETS.get("synthfaces")
    params = {"name": "synthfaces", "size": 16, "train_identities": 4, "dev_identities": 10,
              "test_identities": 2, "images_per_identity": 5}  # fmt: skip
    data = cls(parse_config(cls.Config, params, "dataset"), seed=0)
    task = TASKS.create("verification", data.info, embedding_dim=8)
    vcls = VICTIMS.get("smallcnn")
    torch.manual_seed(0)
    victim = VICTIMS.build(
        parse_config(vcls.Config, {"name": "smallcnn", "width": 4, "hidden": 16}, "victim")
    )
    victim = victim.build(data.info, 8).eval()
    ami = DEFENSES.create("ami", task, layer="net.9", pairs_per_attribute=8, benign_fpr=0.2, consistency=0.5)
    info = ami.prepare(victim, data, "cpu")
    assert set(info["witnesses_per_attribute"]) == set(data.attribute_names)
    assert info["neurons"] == 8 and 0 <= info["witnesses"] <= 8  # smallcnn width 4: 2 * 4 channels
    x = data.load_images("dev", torch.arange(len(data.identities("dev"))))
    flags = ami.detector_score(victim, x)
    assert set(flags.unique().tolist()) <= {0.0, 1.0}
    assert float(flags.mean()) == pytest.approx(0.2, abs=1 / len(x) + 1e-9)
    with pytest.raises(ConfigError, match="not dataset attributes"):
        DEFENSES.create("ami", task, layer="net.9", attributes=["Moustache"]).prepare(victim, data, "cpu")


def test_detection_rates_by_hand():
    from advlab.pipelines.semantic_adv import GFPROutcome, detection_rates

    d = torch.tensor([[0.1, 0.9], [0.2, 0.3], [0.8, 0.7]])  # success below 0.5: 3 of 6
    flags = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    o = GFPROutcome("1e-2", 0.5, d, None, torch.zeros(3, 2), torch.zeros(3, 2), 0.0, None, flags, None)
    r = detection_rates(o, flagged_clean=0.25)
    assert r["defense/detection_rate"] == pytest.approx(2 / 3)  # flagged among the successful ones
    assert r["defense/detection_rate_all"] == pytest.approx(3 / 6)
    assert r["defense/false_positive_rate"] == 0.25


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="defense.layer"):
        DEFENSES.parse({"name": "ami"}, key="defense")
    with pytest.raises(ConfigError, match="defense.detection"):
        DEFENSES.parse({"name": "ami", "layer": "net.9", "detection": "votes"}, key="defense")
    with pytest.raises(ConfigError, match="defense.weaken"):
        DEFENSES.parse({"name": "ami", "layer": "net.9", "weaken": 2.0}, key="defense")
    assert AMIDefense.paper and AMIDefense.url.startswith("https://arxiv.org/abs/1810.11580")
