"""PromptPAR victim, ASL-PAR attack and defense: the aggregator works per sample, the noise bound holds after
every optimisation step with images in [0, 1], the label shift is reproducible from its seed and saved with the
noise, patch mode touches only the centre patch, a saved noise transfers to another image size, and the
defense's text prompts receive gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.attacks.base import ATTACKS
from advlab.context import build_spec
from advlab.data.synthpar import SynthPAR, SynthPARConfig
from advlab.defenses.asl_par_defense import ASLPARDefense, ASLPARDefenseConfig
from advlab.errors import ConfigError
from advlab.loops.universal import fit_universal
from advlab.tasks.par import PAR, PARTaskConfig
from advlab.victims.promptpar import PromptPAR, PromptPARConfig, part_stripes

EPS = 10 / 255


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    data = SynthPAR(SynthPARConfig(name="synthpar", num_train=96, num_test=32, data_seed=3), 0)
    task = PAR(PARTaskConfig(name="par"), data.info)
    cfg = PromptPARConfig(name="promptpar", model_name="advlab-tiny-clip", prompts_per_group=2)
    victim = PromptPAR(cfg).build(data.info, data.info.num_classes)
    # non-trivial BatchNorm statistics, as after training
    victim.train()
    with torch.no_grad():
        for _ in range(3):
            victim(data.dataset("train").tensors[0][:48])
    return victim.eval(), task, data


def asl_par(task, *overrides):
    spec = build_spec(make_cfg("dataset=synthpar", "attack=asl_par", *overrides))
    return ATTACKS.build(spec.attack, task)


def test_outputs_of_one_sample_do_not_depend_on_the_rest_of_the_batch(setup):
    victim, _, data = setup
    x = data.dataset("test").tensors[0][:6]
    with torch.no_grad():
        batch = victim(x)
        alone = torch.cat([victim(x[i : i + 1]) for i in range(6)])
        shuffled = victim(x.flip(0)).flip(0)
    assert batch.shape == (6, 2, data.info.num_classes)
    torch.testing.assert_close(batch, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(batch, shuffled, atol=1e-5, rtol=1e-5)
    # the aggregator itself (before its BatchNorm) is per sample also in training mode
    net = victim.net
    feats = torch.randn(5, 1 + net.params.num_parts, 64)
    text = torch.randn(data.info.num_classes, 64)
    agg = net.aggregate(feats, text)
    for i in range(5):
        torch.testing.assert_close(agg[i : i + 1], net.aggregate(feats[i : i + 1], text))
    # local = max over parts where > 0.5 else min, computed for each sample (official code: last sample's)
    prob = torch.softmax(net.clip.logit_scale.exp() * torch.nn.functional.normalize(feats, dim=-1)
                         @ torch.nn.functional.normalize(text, dim=-1).T / net.agg_log_temperature.exp(), -1)  # fmt: skip
    hi, lo = prob[:, 1:].amax(1), prob[:, 1:].amin(1)
    torch.testing.assert_close(agg, (torch.where(hi > 0.5, hi, lo) + prob[:, 0]) / 2)


def test_part_stripes_match_promptpar_and_overlap():
    assert part_stripes(16, 4) == [(0, 5), (3, 9), (7, 13), (11, 16)]  # rows 0-4, 3-8, 7-12, 11-15
    stripes = part_stripes(8, 4)
    assert stripes[0][0] == 0 and stripes[-1][1] == 8
    assert all(a[1] > b[0] for a, b in zip(stripes, stripes[1:]))  # neighbours overlap


def test_noise_bound_holds_after_every_step_and_images_stay_in_range(setup):
    victim, task, data = setup
    attack = asl_par(
        task, "attack.epochs=2", "attack.batch_size=32", "attack.lr=50", "attack.warmup_epochs=0"
    )
    seen, original = [], attack.project

    def project():
        original()
        noise = attack.perturbation["noise"].detach()
        x = data.dataset("train").tensors[0][:8]
        seen.append((noise.abs().max().item(), attack.apply(x).min().item(), attack.apply(x).max().item()))

    attack.project = project
    fit_universal(attack, victim, data, torch.device("cpu"), seed=0, progress=False)
    assert len(seen) == 2 * 3  # 96 images / batch 32, two epochs
    assert all(m <= EPS + 1e-7 for m, _, _ in seen)
    assert max(m for m, _, _ in seen) == pytest.approx(EPS, abs=1e-6)  # a large lr saturates the bound
    assert all(lo >= 0 and hi <= 1 for _, lo, hi in seen)
    assert all(p.grad is None for p in victim.parameters())  # the victim was frozen
    assert not victim.training


def test_label_shift_is_reproducible_saved_and_within_groups(setup, tmp_path):
    _, task, data = setup
    a, b, c = asl_par(task), asl_par(task), asl_par(task, "attack.label_seed=1")
    gen = torch.Generator().manual_seed(0)
    for atk in (a, b, c):
        atk.init_perturbation(data.info, torch.device("cpu"), gen)
    y = data.dataset("train").tensors[1]
    assert torch.equal(a.shifted(y), b.shifted(y))
    assert not torch.equal(a.shifted(y), c.shifted(y))
    shifted = a.shifted(y)
    for start, end in data.info.groups:
        if end - start > 1:
            assert torch.equal(shifted[:, start:end].sum(1), y[:, start:end].sum(1))
            assert (shifted[:, start:end] != y[:, start:end]).any()
        else:
            assert torch.equal(shifted[:, start], 1 - y[:, start])
    torch.save(a.state_dict(), tmp_path / "perturbation.pt")
    again = asl_par(task)
    again.init_perturbation(data.info, torch.device("cpu"), gen)
    again.perturbation["noise"].data.fill_(0.01)
    again.load(tmp_path / "perturbation.pt", torch.device("cpu"))
    assert torch.equal(again.shifted(y), shifted)


def test_patch_mode_only_touches_the_centre_and_noise_transfers_across_sizes(setup, tmp_path):
    _, task, data = setup
    attack = asl_par(task, "attack.mode=patch", "attack.eps=null")
    attack.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    attack.perturbation["noise"].data.uniform_(-1, 1)
    x = torch.full((2, 3, 64, 64), 0.5)
    delta = attack.apply(x) - x
    changed = delta.abs().sum((0, 1)) > 0
    side = round(30 * 64 / 224)  # 30 px at 224 -> 9 px at 64, centred
    top = (64 - side) // 2
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[top : top + side, top : top + side] = True
    assert torch.equal(changed, expected)
    # a saved global noise applied to images of another size is resized
    glob = asl_par(task)
    glob.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    glob.perturbation["noise"].data.fill_(EPS)
    out = glob.apply(torch.full((1, 3, 96, 96), 0.5))
    torch.testing.assert_close(out, torch.full((1, 3, 96, 96), 0.5 + EPS))


def test_defense_text_prompts_receive_gradient_and_start_as_the_victim(setup):
    victim, task, data = setup
    attack = asl_par(task)
    attack.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    defense = ASLPARDefense(ASLPARDefenseConfig(name="asl_par", text_prompts=4), task)
    with pytest.raises(ConfigError, match="pipeline=asl_par"):
        defense.wrap(victim)
    defense.set_attack(attack)
    x, y = data.dataset("train").tensors
    x, y = x[:16], y[:16]
    with torch.no_grad():
        before = victim(x)
    model = defense.wrap(victim)
    model.train()
    assert not victim.training  # the victim stays in eval mode while the defense trains
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)  # identity filter, zero prompts
    xb, yb = defense.training_batch(model, x, y)
    task.loss(model(xb), yb).backward()
    assert model.text_prompts is not None and model.text_prompts.grad is not None
    assert model.text_prompts.grad.abs().sum() > 0
    assert model.filter.weight.grad.abs().sum() > 0
    trainable = {id(p) for g in model.param_groups(8e-4) for p in g["params"]}
    assert trainable == {id(model.text_prompts), id(model.filter.weight), id(model.filter.bias)}
    assert [g["lr"] for g in model.param_groups(8e-4)] == pytest.approx([8e-4, 4e-4])
    # fine-tuning the defense leaves the victim itself unchanged (its clean/attacked reports stay the victim's)
    torch.optim.SGD(model.param_groups(1.0), lr=1.0).step()
    assert model.text_prompts.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(victim(x), before, atol=0, rtol=0)
        assert not torch.allclose(model(x), before, atol=1e-4)


def test_per_image_label_shift_is_fixed_per_image_and_seeded(setup):
    _, task, data = setup
    x, y = data.dataset("train").tensors
    a, b = asl_par(task), asl_par(task, "attack.label_seed=5")
    for atk in (a, b):
        atk.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    full = a.shifted_per_image(x, y)
    # the same image gets the same shifted labels in any batch, in any order
    torch.testing.assert_close(a.shifted_per_image(x[10:20].flip(0), y[10:20].flip(0)), full[10:20].flip(0))
    torch.testing.assert_close(asl_par(task).shifted_per_image(x, y), full)  # reproducible from the seed
    assert not torch.equal(b.shifted_per_image(x, y), full)
    # per image: images with the same labels in a group get different shifts (one shared map would not)
    start, end = data.info.groups[1]
    seen: dict[tuple, set] = {}
    for seg, new in zip(y[:, start:end], full[:, start:end]):
        seen.setdefault(tuple(seg.tolist()), set()).add(tuple(new.tolist()))
    assert max(len(v) for v in seen.values()) > 1
    for start, end in data.info.groups:
        if end - start > 1:
            assert torch.equal(full[:, start:end].sum(1), y[:, start:end].sum(1))
            moved = (full[:, start:end] != y[:, start:end]).any(1)
            has_pos = y[:, start:end].sum(1) > 0
            full_group = y[:, start:end].sum(1) == end - start
            assert moved[has_pos & ~full_group].all()  # every image with a positive has it moved
        else:
            assert torch.equal(full[:, start], 1 - y[:, start])


def test_resnet_baseline_is_a_par_victim_and_takes_a_transferred_noise(setup):
    from advlab.victims.par_baseline import PARResNetBuilder, PARResNetConfig

    _, task, data = setup
    victim = PARResNetBuilder(PARResNetConfig(name="par_resnet", depth=18)).build(data.info, task.num_outputs)
    x, y = data.dataset("train").tensors
    out = victim(x[:4])
    assert out.shape == (4, data.info.num_classes)
    task.loss(out, y[:4]).backward()  # plain logits: L_cls only
    attack = asl_par(task, "attack.objective=label")
    attack.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    victim.eval()
    loss = attack.training_loss(victim, x[:4], y[:4], torch.Generator().manual_seed(0))
    loss.backward()
    assert attack.perturbation["noise"].grad.abs().sum() > 0
    both = asl_par(task)
    both.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="objective=both needs the victim's global-local similarity"):
        both.training_loss(victim, x[:4], y[:4], torch.Generator())


def test_random_label_baseline_keeps_group_counts_at_random_positions(setup):
    _, task, data = setup
    x, y = data.dataset("train").tensors
    a, b = (
        asl_par(task, "attack.label_shift=random"),
        asl_par(task, "attack.label_shift=random", "attack.label_seed=5"),
    )
    for atk in (a, b):
        atk.init_perturbation(data.info, torch.device("cpu"), torch.Generator().manual_seed(0))
    rand = a.random_per_image(x, y)
    torch.testing.assert_close(a.random_per_image(x[10:20].flip(0), y[10:20].flip(0)), rand[10:20].flip(0))
    assert not torch.equal(b.random_per_image(x, y), rand)  # seeded
    assert set(rand.unique().tolist()) <= {0.0, 1.0}
    stayed, moved = 0, 0
    for start, end in data.info.groups:
        torch.testing.assert_close(rand[:, start:end].sum(1), y[:, start:end].sum(1))  # the same counts
        if end - start == 1:
            assert torch.equal(rand[:, start], y[:, start])  # a count of one attribute fixes it
            continue
        same = (rand[:, start:end] == y[:, start:end]).all(1)
        has_pos = (y[:, start:end].sum(1) > 0) & (y[:, start:end].sum(1) < end - start)
        stayed += int((same & has_pos).sum())
        moved += int((~same & has_pos).sum())
    assert (
        stayed > 0 and moved > stayed
    )  # random positions: unlike the derangement, some stay where they were
    # uniform over the group: one positive in a group of 4 lands on each attribute ~1/4 of the time
    from advlab.tasks.par import random_group_labels

    keys = torch.rand(4000, generator=torch.Generator().manual_seed(1))
    from advlab.tasks.par import keyed_uniforms

    one = torch.zeros(4000, 4)
    one[:, 0] = 1
    out = random_group_labels(one, [(0, 4)], [keyed_uniforms(keys, 4, 0)])
    torch.testing.assert_close(out.mean(0), torch.full((4,), 0.25), atol=0.03, rtol=0)
    # the training loss uses these targets
    loss = a.training_loss(setup[0], x[:4], y[:4], torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    with pytest.raises(
        ConfigError, match="attack.label_shift: must be one of per_image, fixed, per_sample, random"
    ):
        asl_par(task, "attack.label_shift=nope")
