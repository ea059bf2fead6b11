"""The EOT patch paper's presets compose: one per paper victim (the checkpoints its code loads), the loss
ablation and the image-size transfer sweeps (every swept value validates), the paper's 7x7 transfer matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import make_cfg
from hydra.core.override_parser.overrides_parser import OverridesParser

from advlab.attacks.base import ATTACKS
from advlab.config_files import config_dir
from advlab.data.base import DATASETS
from advlab.victims.base import VICTIMS

PAPER = {"pidnet_s": "pidnet_s_official", "pidnet_m": "pidnet_m_official", "pidnet_l": "pidnet_l_official",
         "bisenetv1": "bisenetv1_coincheung", "bisenetv2": "bisenetv2_coincheung", "icnet": "icnet_r50",
         "segformer": "segformer_b5_hf"}  # fmt: skip


@pytest.mark.parametrize("model", sorted(PAPER))
def test_paper_preset_composes_with_its_victim_and_paper_settings(model):
    cfg = make_cfg(f"experiment=eot_patch_cityscapes_{model}_paper", "victim.checkpoint=/ckpt/file")
    assert VICTIMS.parse(cfg.victim).name == PAPER[model]
    assert VICTIMS.get(PAPER[model]).trainable is False  # published weights, not trained by advlab
    attack = ATTACKS.parse(cfg.attack)
    assert (attack.patch_size, attack.crop, attack.lr, attack.loss) == (
        [200, 200],
        [1024, 1024],
        0.005,
        "correct",
    )
    assert (attack.epochs, attack.batch_size) == ((15, 1) if model == "segformer" else (30, 6))


def _sweep(preset: str) -> dict[str, list]:
    params = yaml.safe_load((Path(config_dir()) / "experiment" / f"{preset}.yaml").read_text())["hydra"][
        "sweeper"
    ]
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params["params"].items()])
    return {o.key_or_group: list(o.sweep_iterator()) for o in parsed}


def test_loss_ablation_sweeps_the_simplified_and_the_gamma_weighted_loss():
    sweep = _sweep("eot_patch_cityscapes_loss_ablation")
    assert sweep == {"attack.loss": ["correct", "gamma"]}
    for loss in sweep["attack.loss"]:
        cfg = make_cfg("experiment=eot_patch_cityscapes_loss_ablation", f"attack.loss={loss}")
        assert ATTACKS.parse(cfg.attack).loss == loss and cfg.victim.name == "pidnet_l_official"


def test_size_transfer_evaluates_one_patch_at_several_image_sizes():
    sweep = _sweep("eot_patch_cityscapes_size_transfer")
    assert sweep == {"dataset.size": [[512, 1024], [768, 1536], [1024, 2048]]}
    for h, w in sweep["dataset.size"]:
        cfg = make_cfg("experiment=eot_patch_cityscapes_size_transfer", f"dataset.size=[{h},{w}]",
                       "dataset.root=/data/cityscapes")  # fmt: skip
        assert DATASETS.parse(cfg.dataset).size == [h, w]
        assert cfg.attack.crop == [1024, 1024] and cfg.attack.curve_examples == 0


def test_paper_transfer_matrix_lists_the_seven_paper_victims():
    cfg = make_cfg("experiment=eot_patch_transfer_cityscapes_paper")
    assert list(cfg.pipeline.targets) == list(PAPER.values())
    assert set(cfg.pipeline.target_overrides) == set(PAPER.values())
