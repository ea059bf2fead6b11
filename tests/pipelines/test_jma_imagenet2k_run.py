"""JMA issue, Table II: ``experiment=jma_imagenet2k_onehot`` end to end on a tiny ImageNet-21K-P-layout fixture
(3 classes, 16x16, a ViT-B/16 layout of width 64): the victim is fine-tuned, JMA attacks with wrong-class
targets and reaches them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_cfg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from test_jma_imagenet2k import make_imagenet21k_p  # noqa: E402


def test_table_ii_preset_composes():
    from advlab.context import build_spec

    spec = build_spec(make_cfg("experiment=jma_imagenet2k_onehot", "device=cpu"))
    assert (spec.dataset.name, spec.victim.name, spec.task.name) == (
        "imagenet2k",
        "vit_b16_in21k",
        "classification",
    )
    assert (spec.dataset.num_classes, spec.dataset.size) == (2000, 224)
    assert (spec.attack.name, spec.attack.max_iters, spec.attack.step) == ("jma", 200, 0.6)
    assert spec.eval.subset == "random_correct" and spec.eval.num_examples == 200


@pytest.mark.slow
def test_table_ii_preset_end_to_end(tmp_path):
    from advlab.runner import run

    root = make_imagenet21k_p(tmp_path / "imagenet21k")
    small = [
        f"dataset.root={root}",
        "dataset.num_classes=3",
        "dataset.size=16",
        "dataset.num_workers=0",
        "victim.width=64",
        "train.epochs=1",
        "train.batch_size=8",
        "eval.subset=first",
        "eval.num_examples=4",
        "eval.batch_size=4",
        "eval.grid_examples=0",
        "device=cpu",
    ]
    run(make_cfg("experiment=jma_imagenet2k_onehot", *small), tmp_path / "run")
    metrics = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    assert metrics["eval/num_examples"] == 4
    targets = torch.load(tmp_path / "run" / "targets.pt")
    assert targets.shape == (4,) and ((targets >= 0) & (targets < 3)).all()
    assert metrics["attack/asr"] == 1.0 and metrics["attack/mse"] > 0
