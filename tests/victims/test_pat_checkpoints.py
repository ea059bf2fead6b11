"""PAT victims: the authors' CIFAR AlexNet (``alexnet_cifar``) and their ResNet-50 checkpoints.

Fixtures are written in the authors' published layouts (their trainer's ``{'model', 'optimizer', 'iteration',
'arch'}`` dict, the robustness library's ``module.``-prefixed ``AttackerModel`` dict, the feature-model dict of
``alexnet_cifar.pt``) from the architectures' key names and shapes, and the loaded victims are checked against a
forward pass written here with ``torch.nn.functional`` from the same tensors (not against advlab's own module).
"""

from __future__ import annotations

import pytest
import torch
from pat_helpers import (
    CIFAR_MEAN,
    CIFAR_STD,
    IN100_MEAN,
    IN100_STD,
    alexnet_cifar_keys,
    alexnet_feature_model_layout,
    alexnet_reference,
    resnet50_keys,
    resnet50_reference,
    small_info,
)

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims import VICTIMS, load_victim_weights


def _victim(name: str, info: DataInfo, **params):
    builder = VICTIMS.build(VICTIMS.parse({"name": name, **params}))
    return builder, builder.build(info, info.num_classes).eval()


def test_alexnet_cifar_loads_the_authors_feature_model_file_and_matches_their_forward(tmp_path):
    sd = alexnet_cifar_keys(32, hidden=64)
    path = tmp_path / "alexnet_cifar.pt"
    torch.save({"model": alexnet_feature_model_layout(sd)}, path)
    builder, victim = _victim("alexnet_cifar", small_info(32), hidden=64)
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(victim(x), alexnet_reference(sd, x), rtol=1e-4, atol=1e-5)
    # the trainer layout ('model' = the bare CifarAlexNet, arch 'alexnet') loads the same network
    torch.save(
        {"model": sd, "optimizer": {"state": {}, "param_groups": []}, "iteration": 3, "arch": "alexnet"}, path
    )
    builder, again = _victim("alexnet_cifar", small_info(32), hidden=64)
    load_victim_weights(again, builder.load_checkpoint(str(path)), str(path))
    with torch.no_grad():
        torch.testing.assert_close(again(x), victim(x))


def test_alexnet_cifar_loader_rejects_aliases_that_differ_and_unknown_entries(tmp_path):
    sd = alexnet_cifar_keys(32, hidden=16)
    layout = alexnet_feature_model_layout(sd)
    layout["layer2.0.3.weight"] = layout["layer2.0.3.weight"] + 1
    path = tmp_path / "bad.pt"
    torch.save({"model": layout}, path)
    builder, _ = _victim("alexnet_cifar", small_info(32), hidden=16)
    with pytest.raises(CheckpointError, match="layer2.0.3.weight"):
        builder.load_checkpoint(str(path))
    torch.save({"model": sd, "best_acc": torch.tensor(0.9)}, path)
    with pytest.raises(CheckpointError, match="best_acc"):
        builder.load_checkpoint(str(path))
    torch.save({"model": sd, "arch": "resnet50"}, path)
    with pytest.raises(CheckpointError, match="resnet50"):
        builder.load_checkpoint(str(path))


def test_cifar_resnet50_loads_both_published_layouts_with_their_normalisation(tmp_path):
    sd = resnet50_keys(cifar=True, classes=10)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    expected = resnet50_reference(sd, x, True, CIFAR_MEAN, CIFAR_STD)
    trainer = tmp_path / "pat_self_0.5.pt"
    torch.save(
        {
            "model": sd,
            "optimizer": {"state": {}, "param_groups": []},
            "iteration": 100000,
            "arch": "resnet50",
        },
        trainer,
    )
    builder, victim = _victim(
        "resnet50", small_info(32), small_input=True, checkpoint_layout="perceptual_advex"
    )
    load_victim_weights(victim, builder.load_checkpoint(str(trainer)), str(trainer))
    with torch.no_grad():
        torch.testing.assert_close(victim(x), expected, rtol=1e-3, atol=1e-4)
    # robustness layout: everything under module., AttackerModel's normalizer and its attacker copies
    mean, std = torch.tensor((0.5, 0.4, 0.3)), torch.tensor((0.2, 0.3, 0.25))
    wrapped = {
        "module.normalizer.new_mean": mean[:, None, None],
        "module.normalizer.new_std": std[:, None, None],
    }
    wrapped["module.attacker.normalize.new_mean"] = wrapped["module.normalizer.new_mean"]
    wrapped["module.attacker.normalize.new_std"] = wrapped["module.normalizer.new_std"]
    for k, v in sd.items():
        wrapped[f"module.model.{k}"] = v
        wrapped[f"module.attacker.model.{k}"] = v
    robust = tmp_path / "robustness.pt"
    torch.save({"model": wrapped, "optimizer": {}, "schedule": None, "epoch": 150}, robust)
    builder, victim = _victim(
        "resnet50", small_info(32), small_input=True, checkpoint_layout="perceptual_advex"
    )
    load_victim_weights(victim, builder.load_checkpoint(str(robust)), str(robust))
    with torch.no_grad():
        torch.testing.assert_close(
            victim(x), resnet50_reference(sd, x, True, mean.tolist(), std.tolist()), rtol=1e-3, atol=1e-4
        )


def test_imagenet100_resnet50_loads_the_trainer_layout(tmp_path):
    sd = resnet50_keys(cifar=False, classes=100, seed=3)
    path = tmp_path / "pat_alexnet_0.5.pt"
    torch.save({"model": sd, "iteration": 5, "arch": "resnet50"}, path)
    builder, victim = _victim("resnet50", small_info(64, 100), checkpoint_layout="perceptual_advex")
    load_victim_weights(victim, builder.load_checkpoint(str(path)), str(path))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(
            victim(x), resnet50_reference(sd, x, False, IN100_MEAN, IN100_STD), rtol=1e-3, atol=1e-4
        )


def test_resnet50_checkpoint_layout_is_validated():
    with pytest.raises(ConfigError, match="victim.checkpoint_layout"):
        VICTIMS.parse({"name": "resnet50", "checkpoint_layout": "timm"})


@pytest.mark.slow
def test_alexnet_cifar_composes_and_trains_on_digits(tmp_path):
    import json

    from conftest import make_cfg

    from advlab.runner import run

    cfg = make_cfg(
        "victim=alexnet_cifar", "victim.hidden=64", "dataset.channels=3", "dataset.size=16",
        "dataset.test_fraction=0.5", "train.epochs=3", "train.lr=0.002", "attack=none", "eval.grid_examples=0",
        "device=cpu",
    )  # fmt: skip
    res = run(cfg, tmp_path / "run")
    assert res["victim"]["name"] == "alexnet_cifar" and res["victim"]["source"] == "trained"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    assert len(losses) == 3
    # falling, and clearly below ln(10) = 2.303, the loss of a uniform guess (measured: 2.30, 2.14, 2.04)
    assert losses[2] < losses[1] < losses[0] and losses[-1] < 2.2


@pytest.mark.slow
def test_a_checkpoint_in_the_authors_layout_is_evaluated_as_their_network(tmp_path):
    from conftest import make_cfg

    from advlab.context import build_spec
    from advlab.data.base import DATASETS
    from advlab.runner import run

    sd = alexnet_cifar_keys(32, hidden=16, seed=7)
    path = tmp_path / "alexnet_cifar.pt"
    torch.save({"model": alexnet_feature_model_layout(sd)}, path)
    overrides = (
        "victim=alexnet_cifar",
        f"victim.checkpoint={path}",
        "victim.hidden=16",
        "dataset.channels=3",
    )
    res = run(make_cfg(*overrides, "attack=none", "device=cpu"), tmp_path / "run")
    spec = build_spec(make_cfg(*overrides))
    x, y = DATASETS.build(spec.dataset, spec.seed).dataset("test").tensors
    with torch.no_grad():
        expected = (alexnet_reference(sd, x).argmax(1) == y).float().mean().item()
    assert res["metrics"]["clean/acc"] == pytest.approx(expected)
