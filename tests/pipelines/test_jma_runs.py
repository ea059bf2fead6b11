"""JMA issue: the attacks on ECOC / one-hot models, LOTS, the paper's table layout and an end-to-end run of
the embedded experiment (small settings)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import make_cfg, run_cli
from torch import nn

from advlab.attacks import ATTACKS
from advlab.attacks.jma import JMA
from advlab.attacks.lots import LOTS
from advlab.attacks.ml_cw import MLCW
from advlab.data.info import DataInfo
from advlab.reporting.table import build_layout_table, collect_runs
from advlab.tasks.base import TASKS


def task(name: str, n: int, shape=(3, 4, 4), **params):
    info = DataInfo(n, shape, [str(i) for i in range(n)], (0.0,) * shape[0], (1.0,) * shape[0])
    return TASKS.create(name, info, **params)


def attack(cls, t, **params):
    return ATTACKS.create(cls.registered_name, t, **params)


def mlp(outputs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(48, 64), nn.Tanh(), nn.Linear(64, outputs)).eval()


def test_jma_on_ecoc_mlp_reaches_targets():
    t = task("ecoc", 6, code_length=8)
    model = mlp(8)
    x = torch.rand(24, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    y = t.predict(model(x)).detach()
    target = t.sample_targets(y, torch.Generator().manual_seed(1))
    jma = attack(JMA, t, step=0.1, max_iters=100)
    x_adv = jma(model, x, y, target)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    ok = t.success(model(x_adv), y, target)
    assert ok.float().mean() >= 0.9
    it = jma.batch_stats["iters"]
    assert ((it[ok] >= 6) & (it[ok] <= 100 - 1 + 6)).all()


def test_jma_one_hot_on_trained_digits(digits_setup, digits_batch):
    model, t, _, _ = digits_setup
    x, y, correct = digits_batch
    x, y = x[correct][:32], y[correct][:32]
    target = t.sample_targets(y, torch.Generator().manual_seed(0))
    jma = attack(JMA, t, step=0.5, max_iters=50)
    x_adv = jma(model, x, y, target)
    assert t.success(model(x_adv), y, target).float().mean() >= 0.9


def test_lots_reaches_pooled_targets_and_skips_unknown():
    t = task("multilabel", 4)
    model = mlp(4, seed=1)
    x = torch.rand(64, 3, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = model(x)
    labels = t.predict(logits)
    lots = attack(LOTS, t, max_iters=300, step=0.01, num_target_images=5)
    lots.set_target_pool(logits, labels)
    # attack 8 images towards the label vectors of 8 other pool images (targets that exist in the pool)
    xa, ya = x[:8], labels[:8]
    perm = torch.tensor([v for v in range(8, 64) if not torch.equal(labels[v], ya[0])][:8])
    target = labels[perm]
    keep = (target != ya).any(1)
    xa, ya, target = xa[keep], ya[keep], target[keep]
    x_adv = lots(model, xa, ya, target)
    assert (lots.batch_stats["no_target"] == 0).all()
    assert t.success(model(x_adv), ya, target).float().mean() >= 0.75
    # a label vector no pool image carries: LOTS cannot build a representation, the image is left as is
    absent = [
        v for v in torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * 4) if not (labels == v).all(1).any()
    ]
    if absent:
        tgt = absent[0][None].expand(2, -1).clone()
        y2 = 1 - tgt
        out = lots(model, x[:2], y2, tgt)
        assert torch.equal(out, x[:2]) and (lots.batch_stats["no_target"] == 1).all()


def test_mlcw_on_ecoc_uses_the_codeword():
    t = task("ecoc", 4, code_length=4)
    model = mlp(4, seed=3)
    x = torch.rand(8, 3, 4, 4, generator=torch.Generator().manual_seed(3))
    y = t.predict(model(x)).detach()
    target = t.sample_targets(y, torch.Generator().manual_seed(4))
    cw = attack(MLCW, t, steps=300, binary_search_steps=4, initial_const=1.0, lr=0.05)
    x_adv = cw(model, x, y, target)
    ok = t.success(model(x_adv), y, target)
    assert ok.float().mean() >= 0.75
    assert (cw.batch_stats["iters_total"] >= cw.batch_stats["iters"]).all()


def test_table_jma_layout(tmp_path):
    runs = [
        (
            "jma",
            ["attack.step=0.1"],
            {
                "attack/asr": 1.0,
                "attack/basr": 1.0,
                "attack/mse": 2.5e-5,
                "attack/iters": 7.5,
                "attack/time_per_image_s": 0.12,
            },
        ),
        (
            "jma",
            ["attack.step=0.5"],
            {
                "attack/asr": 0.95,
                "attack/basr": 0.99,
                "attack/mse": 3.1e-5,
                "attack/iters": 6.2,
                "attack/time_per_image_s": 0.1,
            },
        ),
        (
            "ml_cw",
            ["attack=ml_cw", "attack.initial_const=0.01"],
            {
                "attack/asr": 0.9,
                "attack/basr": 0.97,
                "attack/mse": 4e-5,
                "attack/iters": 600.0,
                "attack/time_per_image_s": 1.5,
            },
        ),
    ]
    for i, (name, overrides, metrics) in enumerate(runs):
        d = tmp_path / str(i)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["experiment=jma_voc_5bit", *overrides]))
        (d / "results.json").write_text(json.dumps({"metrics": metrics, "attack": name}))
    header, cells = build_layout_table(collect_runs(tmp_path), "jma")
    assert header == ["Attack", "Parameters", "ASR", "bASR", "MSE", "n_it", "Time(s)"]  # no SSIM in any run
    assert cells[0][:2] == ["jma", "step=0.1"] and cells[1][:2] == ["jma", "step=0.5"]
    assert cells[2] == ["ml_cw", "initial_const=0.01", "0.90", "0.970", "4.0e-05", "600.00", "1.5"]
    from advlab.reporting.report import table_main as main

    assert main([str(tmp_path), "--layout", "jma"]) == 0
    assert "| jma | step=0.5 | 0.95 |" in (tmp_path / "table.md").read_text()


@pytest.mark.slow
def test_jma_digits_multilabel_end_to_end(tmp_path):
    """The embedded experiment's pipeline, shrunk: trains the victim, attacks with JMA, writes the metrics and
    the targets; then LOTS on the same (cached) victim."""
    small = ["dataset.num_train=600", "train.epochs=2", "eval.num_examples=12", "eval.batch_size=6"]
    res = run_cli(
        "experiment=jma_digits_multilabel", f"hydra.run.dir={tmp_path / 'jma'}", "logger=none", *small
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "jma" / "results.json").read_text())["metrics"]
    for key in (
        "attack/asr",
        "attack/basr",
        "attack/mse",
        "attack/psnr",
        "attack/ssim",
        "attack/iters",
        "attack/time_per_image_s",
        "clean/mAP",
        "clean/hamming",
    ):
        assert key in metrics, key
    targets = torch.load(tmp_path / "jma" / "targets.pt")
    assert targets.shape == (12, 10) and ((targets == 0) | (targets == 1)).all()
    from advlab.runner import run

    lots_dir = tmp_path / "lots"  # in-process (no second interpreter start); the victim comes from the cache
    run(make_cfg("experiment=jma_digits_multilabel", "attack=lots", "attack.max_iters=50", *small), lots_dir)
    lots = json.loads((lots_dir / "results.json").read_text())["metrics"]
    assert "attack/no_target" in lots
    assert torch.equal(torch.load(tmp_path / "lots" / "targets.pt"), targets)  # same seeded targets


def test_target_settings_do_not_retrain_the_victim():
    from advlab.context import build_spec, victim_cache_key

    def key(*overrides):
        return victim_cache_key(
            build_spec(make_cfg("experiment=jma_digits_multilabel", "device=cpu", *overrides))
        )

    assert key() == key("task.flip_bits=5") == key("task.target_mode=all_zero")
    assert key() != key("task.loss=asl")  # the training loss does change the weights


@pytest.mark.slow
def test_jma_attacks_random_correctly_classified_images(tmp_path):
    """eval.subset=random_correct eval.num_examples=50 (the paper's protocol, shrunk victim training): 50 test
    images, all classified correctly before the attack (clean exact match 1), targets for each of them."""
    from advlab.runner import run

    small = ["dataset.num_train=1200", "train.epochs=4", "eval.batch_size=25"]
    run(
        make_cfg(
            "experiment=jma_digits_multilabel", "eval.subset=random_correct", "eval.num_examples=50", *small
        ),
        tmp_path,
    )
    metrics = json.loads((tmp_path / "results.json").read_text())["metrics"]
    assert metrics["eval/num_examples"] == 50
    assert metrics["clean/exact_match"] == 1.0 and metrics["clean/hamming"] == 0.0
    assert torch.load(tmp_path / "targets.pt").shape == (50, 10)
    assert metrics["attack/asr"] >= 0.9


@pytest.mark.parametrize(
    "experiment,victim,task_name",
    [
        ("jma_gtsrb_onehot", "vgg16_ecoc", "classification"),  # Table I
        ("jma_gtsrb_ecoc", "vgg16_ecoc", "ecoc"),  # Table III
        ("jma_cifar10_ecoc", "vgg16_ecoc", "ecoc"),  # Table IV
        ("jma_mnist_ecoc", "vgg16_ecoc", "ecoc"),  # Table V
        ("jma_voc_train_targets", "inception_v3", "multilabel"),  # Table VI
        ("jma_voc_5bit", "inception_v3", "multilabel"),  # Table VII
        ("jma_voc_15bit", "inception_v3", "multilabel"),  # the official readme's 15-bit run
        ("jma_voc_other_victims_10bit", "resnet50", "multilabel"),  # Table XI
    ],
)
def test_paper_presets_use_the_paper_protocol(experiment, victim, task_name):
    from advlab.context import build_spec

    spec = build_spec(make_cfg(f"experiment={experiment}", "device=cpu"))
    assert (spec.victim.name, spec.task.name) == (victim, task_name)
    assert spec.eval.subset == "random_correct" and spec.eval.num_examples == 200
    if experiment == "jma_voc_15bit":
        assert spec.task.flip_bits == 15 and spec.dataset.size == 299
    if victim == "inception_v3":  # the paper's VOC InceptionV3 is trained with the categorical hinge
        assert spec.task.loss == "categorical_hinge"
    lots = build_spec(make_cfg(f"experiment={experiment}", "attack=lots_ecoc", "device=cpu")).attack
    assert lots.num_target_images == 50
