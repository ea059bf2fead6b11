"""Bad configs fail before any work, with a message naming the key."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg, run_cli
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from advlab.context import build_spec
from advlab.errors import AdvlabError, CheckpointError, ConfigError
from advlab.runner import run


@pytest.mark.parametrize(
    "override,key",
    [
        ("attack.eps=-0.1", "attack.eps"),
        ("attack.steps=0", "attack.steps"),
        ("attack.norm=l3", "attack.norm"),
        ("attack.steps=abc", "attack.steps"),
        ("attack.name=nosuchattack", "attack.name"),
        ("defense=adv_training defense.attack.eps=-1", "defense.attack.eps"),
        ("defense=adv_training defense.attack.name=nosuch", "defense.attack.name"),
        ("defense=adv_training defense.clean_fraction=1.0", "defense.clean_fraction"),
        ("train.lr=0", "train.lr"),
        ("train.optimizer=rmsprop", "train.optimizer"),
        ("dataset.channels=2", "dataset.channels"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("device=tpu", "device"),
        ("seed=1.5", "seed"),
        ("logger=wandb logger.mode=sometimes", "logger.mode"),
    ],
)
def test_bad_values_name_their_key(override, key):
    cfg = make_cfg(*override.split())
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_spec(cfg)


def test_unknown_attack_group_option_lists_choices():
    with pytest.raises((HydraException, OmegaConfBaseException)) as err:
        make_cfg("attack=nosuchattack")
    assert "attack" in str(err.value) and "pgd_linf" in str(err.value)


def test_unknown_key_is_rejected():
    with pytest.raises((HydraException, OmegaConfBaseException), match="epss"):
        make_cfg("attack.epss=0.1")


def test_unknown_attack_name_lists_available():
    with pytest.raises(ConfigError, match="Available: .*cw_l2.*pgd"):
        build_spec(make_cfg("attack.name=foo"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised when no GPU is visible")
def test_device_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ConfigError, match="CUDA is not available.*device=auto"):
        build_spec(make_cfg("device=cuda"))


def test_missing_checkpoint_fails_fast(tmp_path):
    with pytest.raises(CheckpointError, match=r"victim\.checkpoint.*does not exist"):
        build_spec(make_cfg(f"victim.checkpoint={tmp_path / 'nope.pt'}"))


def test_incompatible_checkpoint(tmp_path):
    wrong = torch.nn.Linear(3, 4).state_dict()
    path = tmp_path / "wrong.pt"
    torch.save(wrong, path)
    with pytest.raises(CheckpointError, match="does not fit this victim"):
        run(make_cfg(f"victim.checkpoint={path}", "attack=none"), tmp_path / "run")


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a pickled module, not a state_dict
    with pytest.raises(CheckpointError, match="weights-only"):
        run(make_cfg(f"victim.checkpoint={path}", "attack=none"), tmp_path / "run")


def test_cli_bad_value_fails_before_training(tmp_path):
    """Checked before any work: no victim is trained or cached, nothing is written to the run folder."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    proc = run_cli("attack.eps=-1", "logger=none", f"hydra.run.dir={run_dir}", f"cache_dir={cache}")
    assert proc.returncode != 0
    assert "attack.eps: must be >= 0" in proc.stderr
    assert "training" not in proc.stdout + proc.stderr
    assert not list(cache.rglob("*.pt"))
    assert not (run_dir / "results.json").exists() and not (run_dir / "metrics.jsonl").exists()


def test_finished_run_folder_is_never_overwritten(digits_setup, tmp_path):
    cfg = make_cfg("attack=none", "eval.num_examples=16")
    run(cfg, tmp_path)
    first = (tmp_path / "results.json").read_text()
    with pytest.raises(AdvlabError, match="never overwrites"):
        run(cfg, tmp_path)
    assert (tmp_path / "results.json").read_text() == first


def test_slurm_launcher_config_composes():
    from hydra import compose, initialize_config_dir

    from advlab.config_files import config_dir, register_defaults

    register_defaults()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.array_parallelism == 16


def test_experiment_config_overrides_groups():
    cfg = make_cfg("experiment=digits_adv_training")
    assert cfg.defense.name == "adv_training" and cfg.defense.attack.eps == 0.1 and cfg.attack.eps == 0.1
    spec = build_spec(cfg)
    assert spec.train.epochs == 10


def test_training_attack_is_an_attack_group_option():
    spec = build_spec(
        make_cfg("defense=adv_training", "attack@defense.attack=pgd_l2_train", "defense.attack.eps=0.5")
    )
    assert spec.defense.attack["norm"] == "l2" and spec.defense.attack["eps"] == 0.5
    assert spec.defense.attack["steps"] == 7 and spec.defense.attack["early_stop"] is False
    spec = build_spec(make_cfg("defense=adv_training", "attack@defense.attack=fgsm"))
    assert spec.defense.attack["name"] == "fgsm"


def test_sweep_objective_is_the_tasks_headline_metric():
    """What ``advlab -m`` hands a Hydra sweeper: the task's headline metric, under attack when measured."""
    import advlab.tasks  # noqa: F401  (registers every task)
    from advlab.app import sweep_objective

    def res(task, **m):
        return {"task": task, "metrics": {k.replace("__", "/"): v for k, v in m.items()}}

    assert sweep_objective(res("classification", clean__acc=0.9, adv__acc=0.2)) == 0.2
    assert sweep_objective(res("classification", clean__acc=0.9)) == 0.9
    assert sweep_objective(res("segmentation", clean__mIoU=0.7, adv__mIoU=0.4, adv__acc=0.9)) == 0.4
    assert sweep_objective(res("par", clean__mA=0.87, adv__mA=0.7)) == 0.7
    assert sweep_objective(res("multilabel", clean__exact_match=0.8, adv__exact_match=0.1)) == 0.1
    assert sweep_objective(res("verification", attack__asr=0.3, clean__tar_1e_2=0.8)) == 0.3
    assert sweep_objective(res("classification", attack__time=1.0)) is None


@pytest.mark.parametrize(
    "module",
    ["advlab.pipelines", "advlab.loops.fit", "advlab.defenses"],  # the packages that import each other
)
def test_every_package_imports_on_its_own(module):
    """No circular imports: each package imports first in a fresh interpreter (a user script may start anywhere)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
