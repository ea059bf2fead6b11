"""PAT issue: corruption metrics (mCE, relative mCE), the CIFAR-10-C on-disk format, generated corruptions,
the robustness suite (union accuracy, baselines) and the evaluate loop's per-example masks / attack/lpips."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import make_cfg

from advlab.attacks.base import ATTACKS
from advlab.data.cifar10c import GeneratedCorruptions, NpyCorruptions, corrupt_batch
from advlab.errors import DatasetNotFoundError
from advlab.loops.evaluate import EvalConfig, evaluate
from advlab.metrics.corruption import corruption_errors, mce, relative_corruption_errors, relative_mce
from advlab.registry import parse_config
from advlab.runner import run


def test_mce_and_relative_mce_equal_hand_computed_values():
    model = {"fog": [0.1, 0.2, 0.3], "snow": [0.2, 0.2, 0.5]}
    base = {"fog": [0.2, 0.4, 0.6], "snow": [0.3, 0.5, 0.7]}
    # CE_fog = 0.6 / 1.2 = 0.5; CE_snow = 0.9 / 1.5 = 0.6; mCE = 0.55
    assert corruption_errors(model, base) == pytest.approx({"fog": 0.5, "snow": 0.6})
    assert mce(model, base) == pytest.approx(0.55)
    # clean errors 0.05 (model), 0.1 (baseline):
    # rCE_fog = (0.05+0.15+0.25) / (0.1+0.3+0.5) = 0.45/0.9 = 0.5; rCE_snow = (0.15+0.15+0.45)/(0.2+0.4+0.6) = 0.625
    assert relative_corruption_errors(model, 0.05, base, 0.1) == pytest.approx({"fog": 0.5, "snow": 0.625})
    assert relative_mce(model, 0.05, base, 0.1) == pytest.approx(0.5625)
    with pytest.raises(ValueError, match="severities"):
        mce({"fog": [0.1]}, base)


def write_cifar10c(root, names, n=4, labels_per_severity=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for c in names:
        arrays[c] = rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8)
        np.save(root / f"{c}.npy", arrays[c])
    labels = rng.integers(0, 10, n)
    np.save(root / "labels.npy", labels if labels_per_severity else np.tile(labels, 5))
    return arrays, labels


def test_corruption_loader_reads_the_cifar10c_format(tmp_path):
    arrays, labels = write_cifar10c(tmp_path, ["fog", "snow"])
    src = NpyCorruptions(tmp_path, ["fog", "snow"])
    x, y = src.get("snow", 3)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    expected = torch.from_numpy(arrays["snow"][8:12]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(x, expected) and torch.equal(y, torch.from_numpy(labels))
    # labels given once (not repeated per severity) are accepted too; limit takes the first images
    write_cifar10c(tmp_path, ["fog"], labels_per_severity=True)
    x2, y2 = NpyCorruptions(tmp_path, ["fog"], limit=2).get("fog", 5)
    assert x2.shape[0] == 2 and torch.equal(x2[0], torch.from_numpy(arrays["fog"][16]).permute(2, 0, 1) / 255)
    with pytest.raises(DatasetNotFoundError, match="frost.npy"):
        NpyCorruptions(tmp_path, ["frost"])


def test_generated_corruptions_are_deterministic_cached_and_grow_with_severity(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g) * 0.5 + 0.25
    y = torch.arange(6)
    src = GeneratedCorruptions(x, y, tmp_path, {"k": 1})
    a, ya = src.get("gaussian_noise", 1)
    b, _ = src.get("gaussian_noise", 1)  # from the cache
    assert torch.equal(a, b) and torch.equal(ya, y) and a.shape == x.shape
    assert len(list((tmp_path / "corruptions").glob("gaussian_noise-1-*.pt"))) == 1
    d = [float((src.get("gaussian_noise", s)[0] - x).abs().mean()) for s in (1, 3, 5)]
    assert 0 < d[0] < d[1] < d[2]
    grey = corrupt_batch(x[:, :1], "contrast", 5, 0)
    assert grey.shape == (6, 1, 16, 16)  # grey images stay grey, small images keep their size


def test_evaluate_returns_per_example_masks_and_lpips(digits_setup):
    model, task, data, spec = digits_setup
    attack = ATTACKS.build(ATTACKS.parse({"name": "pgd", "eps": 0.1, "steps": 5}), task)
    params = parse_config(EvalConfig, {"num_examples": 40, "batch_size": 16, "lpips": "self"}, "eval")
    result = evaluate(model, task, data, attack, params, spec.device, 0, False)
    metrics = result.metrics
    assert result.clean_correct.shape == (40,) and result.adv_correct.shape == (40,)
    assert result.adv_correct.float().mean().item() == pytest.approx(metrics["adv/acc"])
    assert result.clean_correct.float().mean().item() == pytest.approx(metrics["clean/acc"])
    assert metrics["attack/lpips_max"] > metrics["attack/lpips"] * 0.99 > 0
    params = parse_config(EvalConfig, {"num_examples": 8, "lpips": "alex_random"}, "eval")
    metrics = evaluate(model, task, data, attack, params, spec.device, 0, False).metrics
    assert metrics["attack/lpips_max"] > 0  # the lpips package's network (random trunk offline)


SUITE = (
    "experiment=pat_digits",
    "device=cpu",
    "train.epochs=2",
    "pipeline.num_examples=40",
    "pipeline.corruption.num_examples=40",
    "pipeline.corruption.names=[gaussian_noise,fog]",
    "pipeline.corruption.severities=[1,5]",
    "~pipeline.models.pat",
    "~pipeline.attacks.recoloradv",
    "~pipeline.attacks.jpeg_linf",
    "~pipeline.attacks.autoattack_l2",
    "pipeline.attacks.autoattack_linf.steps=5",
    "pipeline.attacks.autoattack_linf.queries=100",
    "pipeline.attacks.stadv.steps=5",
    "pipeline.models.at.defense.attack.steps=2",
    "pipeline.baseline.model=undefended",  # the undefended-model normalisation (pat_digits: AlexNet)
)


@pytest.mark.slow
def test_robustness_suite_union_accuracy_and_mce_against_each_kind_of_baseline(tmp_path):
    res = run(make_cfg(*SUITE), tmp_path / "a")
    m = res["metrics"]
    for model in ("undefended", "at"):
        accs = [m[f"{model}/adv/{a}/acc"] for a in ("autoattack_linf", "stadv")]
        assert m[f"{model}/adv/union/acc"] <= min(accs) + 1e-9
        assert m[f"{model}/corruption/fog/err"] >= 0
    assert m["undefended/corruption/mCE"] == pytest.approx(1.0)
    assert m["undefended/corruption/rel_mCE"] == pytest.approx(1.0)
    errs = res["corruption_errors"]["models"]
    assert m["at/corruption/mCE"] == pytest.approx(mce(errs["at"]["errors"], errs["undefended"]["errors"]))
    assert (tmp_path / "a" / "robustness_table.md").read_text().count("\n") == 4
    assert "fog" in (tmp_path / "a" / "corruption_table.csv").read_text()
    # the same baseline read from that run's results.json gives the same numbers
    results = tmp_path / "a" / "results.json"
    res_b = run(
        make_cfg(
            *SUITE,
            "pipeline.attacks={}",
            "~pipeline.models.undefended",
            f"pipeline.baseline.results={results}",
            "pipeline.baseline.model=undefended",
        ),
        tmp_path / "b",
    )
    assert res_b["metrics"]["at/corruption/rel_mCE"] == pytest.approx(m["at/corruption/rel_mCE"])
    assert json.loads(results.read_text())["corruption_errors"]["severities"] == [1, 5]


def test_robustness_suite_config_errors_name_their_key(tmp_path):
    from advlab.context import build_spec
    from advlab.errors import ConfigError

    with pytest.raises(ConfigError, match="pipeline.attacks.stadv.bound"):
        build_spec(make_cfg("experiment=pat_digits", "pipeline.attacks.stadv.bound=-1"))
    with pytest.raises(ConfigError, match="pipeline.baseline.model"):
        build_spec(make_cfg("experiment=pat_digits", "pipeline.baseline.model=nope"))
    with pytest.raises(ConfigError, match="pipeline.corruption.names"):
        build_spec(make_cfg("experiment=pat_digits", "pipeline.corruption.names=[rain]"))


def test_imagenet100_reads_the_imagefolder_layout(tmp_path):
    from PIL import Image

    from advlab.data.base import DATASETS

    for split in ("train", "val"):
        for k, wnid in enumerate(["n01", "n02", "n03", "n04"]):
            d = tmp_path / split / wnid
            d.mkdir(parents=True)
            Image.new("RGB", (40, 30), (60 * k, 10, 10)).save(d / f"{wnid}_0.JPEG")
    params = parse_config(
        DATASETS.get("imagenet100").Config,
        {"name": "imagenet100", "root": str(tmp_path), "size": 16, "resize": 20, "class_stride": 2},
        "dataset",
    )
    data = DATASETS.build(params, 0)
    assert data.info.class_names == ["n01", "n03"] and data.info.image_shape == (3, 16, 16)
    x, y = data.dataset("test")[1]
    assert x.shape == (3, 16, 16) and y == 1 and abs(float(x[0].mean()) - 120 / 255) < 0.02
    bad = parse_config(
        DATASETS.get("imagenet100").Config, {"name": "imagenet100", "root": str(tmp_path / "x")}, "d"
    )
    with pytest.raises(DatasetNotFoundError, match="train"):
        _ = DATASETS.build(bad, 0).info
