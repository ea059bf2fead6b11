"""The robustness suite's normalising baselines (``pipeline.baselines``): the paper's AlexNet as a model outside
the table, trained by advlab or read from the authors' ``alexnet_cifar.pt``; relative mCE against it."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg
from pat_helpers import alexnet_cifar_keys, alexnet_feature_model_layout, alexnet_reference

from advlab.metrics.corruption import mce, relative_mce

SUITE = (
    "experiment=pat_digits",
    "device=cpu",
    "dataset.channels=3",
    "dataset.size=32",
    "train.epochs=1",
    *(
        f"~pipeline.attacks.{a}"
        for a in ("autoattack_linf", "autoattack_l2", "stadv", "recoloradv", "jpeg_linf")
    ),
    "~pipeline.models.at",
    "~pipeline.models.pat",
    "pipeline.corruption.num_examples=48",
    "pipeline.corruption.names=[gaussian_noise,contrast]",
    "pipeline.corruption.severities=[1,5]",
    "eval.grid_examples=0",
)


@pytest.mark.slow
def test_relative_mce_is_normalised_by_an_alexnet_cifar_checkpoint_in_the_authors_layout(tmp_path):
    from advlab.runner import run

    sd = alexnet_cifar_keys(32, hidden=16, seed=11)
    path = tmp_path / "alexnet_cifar.pt"
    torch.save({"model": alexnet_feature_model_layout(sd)}, path)
    res = run(
        make_cfg(*SUITE, f"pipeline.baselines.alexnet.victim.checkpoint={path}", "pipeline.baselines.alexnet.victim.hidden=16"),
        tmp_path / "run",
    )  # fmt: skip
    m, stored = res["metrics"], res["corruption_errors"]
    base = stored["baseline"]
    assert base["name"] == "alexnet" and "alexnet" not in stored["models"]
    # the baseline's errors are those of the authors' network on the same corrupted images
    from advlab.context import build_spec
    from advlab.data.base import DATASETS

    spec = build_spec(make_cfg(*SUITE))
    x, y = DATASETS.build(spec.dataset, spec.seed).dataset("test").tensors
    with torch.no_grad():
        clean_err = (alexnet_reference(sd, x[:48]).argmax(1) != y[:48]).float().mean().item()
    assert base["clean"] == pytest.approx(clean_err)
    assert m["alexnet/corruption/clean_err"] == pytest.approx(clean_err)
    own = stored["models"]["undefended"]
    assert m["undefended/corruption/mCE"] == pytest.approx(mce(own["errors"], base["errors"]))
    assert m["undefended/corruption/rel_mCE"] == pytest.approx(
        relative_mce(own["errors"], own["clean"], base["errors"], base["clean"])
    )
    assert "alexnet" not in (tmp_path / "run" / "robustness_table.md").read_text()


def test_baselines_config_is_checked():
    from advlab.context import build_spec
    from advlab.errors import ConfigError

    cfg = make_cfg("experiment=pat_digits")
    assert (
        cfg.pipeline.baseline.model == "alexnet"
        and cfg.pipeline.baselines.alexnet.victim.name == "alexnet_cifar"
    )
    with pytest.raises(ConfigError, match="pipeline.baselines"):
        build_spec(make_cfg("experiment=pat_digits", "+pipeline.baselines.undefended={}"))
    with pytest.raises(ConfigError, match="pipeline.baseline.model"):
        build_spec(make_cfg("experiment=pat_digits", "pipeline.baseline.model=alex"))


CIFAR_RELEASED = {
    "pat_self": "cifar/pat_self_0.5.pt",
    "pat_alexnet": "cifar/pat_alexnet_1.pt",
    "at_stadv": "cifar/stadv_0.05.pt",
    "at_recoloradv": "cifar/recoloradv_0.06.pt",
    "at_l2": "cifar_pgd_l2_1.pt",  # the authors' getting_started.ipynb (their S3 file cifar_pgd_l2_1_cpu.pt)
    **{
        f"at_all_{m}": f"cifar/pgd_linf_8_pgd_l2_1_stadv_0.05_recoloradv_0.06_{m}.pt"
        for m in ("random", "average", "max")
    },
}


def test_the_released_model_evaluation_reads_every_file_of_the_archive_from_pat_checkpoints(tmp_path):
    from omegaconf import OmegaConf

    from advlab.context import RunContext, build_spec
    from advlab.errors import CheckpointError
    from advlab.pipelines.robustness_suite import model_spec

    for rel in [*CIFAR_RELEASED.values(), "alexnet_cifar.pt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    cfg = make_cfg("experiment=pat_cifar10_released_eval", f"pat_checkpoints={tmp_path}")
    spec = build_spec(cfg)
    assert spec.victim.name == "resnet50" and spec.victim.small_input and spec.train.grad_clip_value == 1.0
    assert spec.pipeline.attacks["ppgd"]["lpips"] == {
        "model": "alexnet_cifar", "layers": None, "weights": f"{tmp_path}/alexnet_cifar.pt"
    }  # fmt: skip

    ctx = RunContext(cfg, spec, tmp_path / "run", {}, None, None)
    for name, rel in CIFAR_RELEASED.items():
        m = model_spec(ctx, OmegaConf.to_container(cfg.pipeline.models[name], resolve=True))
        assert m.victim.checkpoint == f"{tmp_path}/{rel}" and m.victim.checkpoint_layout == "perceptual_advex"
        assert m.defense.name == "none"
    (tmp_path / CIFAR_RELEASED["at_stadv"]).unlink()
    with pytest.raises(CheckpointError, match="stadv_0.05.pt"):
        model_spec(ctx, OmegaConf.to_container(cfg.pipeline.models["at_stadv"], resolve=True))
