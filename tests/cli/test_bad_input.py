"""What a researcher gets for bad input: exit status 2, one ``advlab: error:`` line naming the key or the path,
no traceback, and nothing already on disk changed (run folder, cache, dataset root).

Most cases run the real entrypoint in-process (``advlab.app.run_cli(argv)``: Hydra composition, the run guard
callback, the job, the error handler), so the suite pays for one torch import; a handful go through a real
``python -m advlab`` subprocess. ``scripts/bench_cli_errors.py`` times every case to failure in a subprocess.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from conftest import make_cfg, run_cli

from advlab.app import run_cli as app_main

REPO = Path(__file__).resolve().parents[2]

BASE = ("logger=none", "progress=false")


@dataclass
class Case:
    """One bad input: CLI arguments (``{tmp}`` is the case's folder), the text the error must name, and an
    optional setup writing files into ``{tmp}`` first (those files must be unchanged afterwards)."""

    id: str
    args: tuple[str, ...]
    names: str
    setup: object = None
    needs_no_gpu: bool = False
    extra: dict = field(default_factory=dict)


# ---- fixtures written into the case folder --------------------------------------------------------------------
def finished_run(tmp: Path) -> None:
    """A run folder as a finished run leaves it (results.json is written last)."""
    (tmp / "run" / ".hydra").mkdir(parents=True)
    (tmp / "run" / ".hydra" / "config.yaml").write_text("attack:\n  name: fgsm\n")
    (tmp / "run" / ".hydra" / "overrides.yaml").write_text("- attack=fgsm\n")
    (tmp / "run" / ".hydra" / "hydra.yaml").write_text("hydra: {}\n")
    (tmp / "run" / "results.json").write_text('{"metrics": {"adv/acc": 0.1}}')


def finished_sweep(tmp: Path) -> None:
    (tmp / "sweep" / "0").mkdir(parents=True)
    (tmp / "sweep" / "0" / "results.json").write_text("{}")


def regular_file(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def garbage(path: Path, content: bytes = b"this is not a pickle") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def smallcnn_checkpoint(tmp: Path, num_outputs: int = 10) -> Path:
    """A state_dict of the digits small CNN (the architecture advlab defines itself)."""
    from advlab.context import build_spec
    from advlab.data.base import DATASETS
    from advlab.victims.base import VICTIMS

    spec = build_spec(make_cfg("device=cpu"))
    info = DATASETS.build(spec.dataset, 0).info
    model = VICTIMS.build(spec.victim).build(info, num_outputs)
    path = tmp / "victim.pt"
    torch.save(model.state_dict(), path)
    return path


def other_architecture(tmp: Path) -> None:
    torch.save(torch.nn.Linear(3, 4).state_dict(), tmp / "victim.pt")


def checkpoint_for_resume(name: str, state: str):
    def setup(tmp: Path) -> None:
        smallcnn_checkpoint(tmp)
        garbage(tmp / "run" / state)  # an interrupted run's state file, corrupted

    setup.__name__ = name
    return setup


def cached_victim_path(tmp: Path, suffix: str = ".pt") -> Path:
    from advlab.context import build_spec, victim_cache_key
    from advlab.utils import stable_hash

    spec = build_spec(make_cfg("device=cpu", f"cache_dir={tmp / 'cache'}"))
    key = stable_hash(victim_cache_key(spec))
    return tmp / "cache" / "victims" / f"digits-smallcnn-none-{key}{suffix}"


def corrupt_cached_victim(tmp: Path) -> None:
    garbage(cached_victim_path(tmp))


def corrupt_fit_resume(tmp: Path) -> None:
    garbage(cached_victim_path(tmp, ".resume.pt"))


def cifar_fixture(tmp: Path, keys=("data", "labels")) -> None:
    import numpy as np

    folder = tmp / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = dict(zip(keys, (np.zeros((2, 3072), np.uint8), [0, 1])))
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))


def cifar_wrong_keys(tmp: Path) -> None:
    cifar_fixture(tmp, keys=("images", "targets"))


def cifar_corrupt_pickle(tmp: Path) -> None:
    cifar_fixture(tmp)
    garbage(tmp / "data" / "cifar-10-batches-py" / "test_batch")


def empty_root(tmp: Path) -> None:
    (tmp / "data").mkdir()


def mnist_corrupt(tmp: Path) -> None:
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"):
        garbage(tmp / "data" / name, b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"\x01\x02")
    garbage(tmp / "data" / "t10k-labels-idx1-ubyte", b"PK not idx")


def coco_corrupt(tmp: Path) -> None:
    for part in ("train2014", "val2014"):
        (tmp / "data" / part).mkdir(parents=True)
    for split in ("train", "val"):
        garbage(tmp / "data" / "annotations" / f"instances_{split}2014.json", b'{"images": [')


def peta_corrupt(tmp: Path) -> None:
    garbage(tmp / "data" / "dataset_all.pkl")


D = "dataset.root={tmp}/data"
CASES = [
    # -- typo'd keys, unknown options, wrong types
    Case("typo_attack_key", ("attack.epss=0.1",), "attack.epss"),
    Case("typo_top_level_key", ("trian.epochs=2",), "trian"),
    Case("unknown_attack_option", ("attack=pgd_l3",), "attack/pgd_l3"),
    Case("wrong_type_int", ("attack.steps=abc",), "attack.steps"),
    Case("wrong_type_float_for_int", ("train.epochs=1.5",), "train.epochs"),
    Case("wrong_type_seed", ("seed=abc",), "seed"),
    Case("unknown_device", ("device=tpu",), "device"),
    # -- nan / inf / out of range / zero sizes
    Case("eps_nan", ("attack.eps=nan",), "attack.eps"),
    Case("eps_inf", ("attack.eps=inf",), "attack.eps"),
    Case("cw_lr_inf", ("attack=cw_l2", "attack.lr=inf"), "attack.lr"),
    Case("defense_attack_eps_inf", ("defense=adv_training", "defense.attack.eps=inf"), "defense.attack.eps"),
    Case("eps_negative", ("attack.eps=-0.1",), "attack.eps"),
    Case("steps_zero", ("attack.steps=0",), "attack.steps"),
    Case("eval_batch_zero", ("eval.batch_size=0",), "eval.batch_size"),
    Case("eval_num_examples_zero", ("eval.num_examples=0",), "eval.num_examples"),
    Case("train_batch_zero", ("train.batch_size=0",), "train.batch_size"),
    Case("train_lr_zero", ("train.lr=0",), "train.lr"),
    Case("dataset_size_zero", ("dataset.size=0",), "dataset.size"),
    Case("progress_interval_negative", ("progress_interval_s=-1",), "progress_interval_s"),
    # -- devices
    Case("cuda_7_on_cpu", ("device=cuda:7",), "cuda:7", needs_no_gpu=True),
    # -- task / dataset / attack combinations refused before training
    Case("multilabel_task_on_digits", ("task.name=multilabel",), "task.name"),
    Case(
        "multilabel_task_on_cifar10", ("dataset=cifar10", "task.name=multilabel", D), "task.name", empty_root
    ),
    Case("par_task_on_digits", ("task.name=par",), "task.name"),
    Case("segmentation_task_on_digits", ("task.name=segmentation",), "task.name"),
    Case(
        "patch_larger_than_image",
        ("dataset=digits_seg", "dataset.num_train=8", "dataset.num_test=8", "attack=eot_patch"),
        "attack.patch_size",
    ),
    Case(
        "targeted_attack_task_without_targets",
        ("dataset=digits_seg", "dataset.num_train=8", "dataset.num_test=8", "attack=jma"),
        "attack.name",
    ),
    # -- checkpoints
    Case("checkpoint_missing", ("victim.checkpoint={tmp}/nope.pt",), "victim.checkpoint"),
    Case(
        "checkpoint_other_architecture",
        ("victim.checkpoint={tmp}/victim.pt",),
        "victim.pt",
        other_architecture,
    ),
    Case(
        "checkpoint_not_a_torch_file",
        ("victim.checkpoint={tmp}/victim.pt",),
        "victim.pt",
        lambda tmp: garbage(tmp / "victim.pt"),
    ),
    Case(
        "checkpoint_other_head",
        ("victim.checkpoint={tmp}/victim.pt",),
        "victim.pt",
        lambda tmp: smallcnn_checkpoint(tmp, num_outputs=5),
    ),
    # -- corrupt files advlab wrote itself
    Case(
        "corrupt_cached_victim",
        ("cache_dir={tmp}/cache",),
        "victims/digits-smallcnn-none-",
        corrupt_cached_victim,
    ),
    Case("corrupt_fit_resume_file", ("cache_dir={tmp}/cache",), ".resume.pt", corrupt_fit_resume),
    Case(
        "corrupt_eval_state",
        ("victim.checkpoint={tmp}/victim.pt", "attack=fgsm"),
        "eval_state.pt",
        checkpoint_for_resume("corrupt_eval_state", "eval_state.pt"),
    ),
    Case(
        "corrupt_universal_state",
        ("victim.checkpoint={tmp}/victim.pt", "attack=universal_linf"),
        "universal_state.pt",
        checkpoint_for_resume("corrupt_universal_state", "universal_state.pt"),
    ),
    # -- dataset roots: missing, empty and corrupt, in each supported format
    Case("cifar10_root_missing", ("dataset=cifar10", "dataset.root={tmp}/nowhere"), "dataset.root"),
    Case("cifar10_root_empty", ("dataset=cifar10", D), "cifar-10-batches-py", empty_root),
    Case("cifar10_corrupt_pickle", ("dataset=cifar10", D), "test_batch", cifar_corrupt_pickle),
    Case("cifar10_wrong_keys", ("dataset=cifar10", D), "'data'", cifar_wrong_keys),
    Case("mnist_root_empty", ("dataset=mnist", D), "dataset.root", empty_root),
    Case("mnist_corrupt_idx", ("dataset=mnist", D), "idx", mnist_corrupt),
    Case("gtsrb_root_empty", ("dataset=gtsrb", D), "dataset.root", empty_root),
    Case("voc_root_empty", ("dataset=voc2012", D), "dataset.root", empty_root),
    Case("coco_root_empty", ("dataset=coco", D), "dataset.root", empty_root),
    Case("coco_corrupt_annotations", ("dataset=coco", D), "instances_", coco_corrupt),
    Case("nuswide_root_empty", ("dataset=nuswide", D), "dataset.root", empty_root),
    Case("imagenet100_root_empty", ("dataset=imagenet100", D), "dataset.root", empty_root),
    Case(
        "cityscapes_root_empty", ("dataset=cityscapes", "dataset.size=[32,32]", D), "dataset.root", empty_root
    ),
    Case("peta_root_empty", ("dataset=peta", "victim=smallcnn", D), "dataset.root", empty_root),
    Case("peta_corrupt_pickle", ("dataset=peta", "victim=smallcnn", D), "dataset_all.pkl", peta_corrupt),
    # -- the run folder, the cache, the launcher
    Case("finished_run_dir", ("attack=pgd_l2",), "finished run", finished_run),
    Case("run_dir_under_a_file", ("hydra.run.dir={tmp}/afile/run",), "afile", regular_file),
    Case("run_dir_is_a_file", ("hydra.run.dir={tmp}/afile",), "afile", regular_file),
    Case("cache_dir_is_a_file", ("cache_dir={tmp}/afile",), "cache_dir", regular_file),
    Case("cache_dir_under_a_file", ("cache_dir={tmp}/afile/cache",), "cache_dir", regular_file),
    Case(
        "sweep_dir_with_finished_runs",
        ("-m", "hydra.sweep.dir={tmp}/sweep"),
        "hydra.sweep.dir",
        finished_sweep,
    ),
    Case("slurm_without_srun", ("-m", "hydra/launcher=slurm", "hydra.sweep.dir={tmp}/sweep"), "srun"),
]


def case_argv(case: Case, tmp: Path) -> list[str]:
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    if not any(a.startswith(("hydra.run.dir=", "hydra.sweep.dir=")) for a in args):
        args.append(f"hydra.run.dir={tmp / 'run'}")
    if not any(a.startswith("cache_dir=") for a in args):
        args.append(f"cache_dir={tmp / 'cache'}")
    return [*args, *BASE]


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Content hash, mode and mtime of every file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                st.st_mode,
                st.st_mtime_ns,
            )
    return out


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("advlab: error:")]


# one case per kind of mistake runs in the fast suite; the rest are marked slow (each case costs ~0.5 CPU s of
# Hydra composing the config twice, mode detection then the run)
FAST = {
    "typo_attack_key",
    "unknown_attack_option",
    "wrong_type_int",
    "eps_inf",
    "defense_attack_eps_inf",
    "eval_num_examples_zero",
    "cuda_7_on_cpu",
    "multilabel_task_on_digits",
    "checkpoint_other_architecture",
    "corrupt_cached_victim",
    "corrupt_eval_state",
    "cifar10_wrong_keys",
    "mnist_root_empty",
    "finished_run_dir",
    "run_dir_under_a_file",
    "cache_dir_is_a_file",
    "slurm_without_srun",
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=() if c.id in FAST else pytest.mark.slow) for c in CASES]
)
def test_bad_input_fails_cleanly(case: Case, tmp_path, capfd):
    if case.needs_no_gpu and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    if case.setup is not None:
        case.setup(tmp_path)
    before = snapshot(tmp_path)
    capfd.readouterr()
    code = app_main(case_argv(case, tmp_path))
    err = capfd.readouterr().err
    lines = error_lines(err)
    assert code == 2, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    assert case.names.lower() in lines[0].lower(), lines[0]
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before  # nothing already written changed


def test_the_suite_covers_at_least_thirty_cases():
    assert len({c.id for c in CASES}) == len(CASES) >= 30


def test_several_bad_values_are_all_reported(tmp_path, capfd):
    code = app_main(case_argv(Case("two", ("attack.eps=nan", "attack.step_size=inf"), ""), tmp_path))
    lines = error_lines(capfd.readouterr().err)
    assert code == 2 and len(lines) == 2
    assert "attack.eps" in lines[0] and "attack.step_size" in lines[1]


def test_read_only_run_folder(tmp_path, capfd, monkeypatch):
    """Root ignores permission bits, so the read-only file system is simulated where the guard asks the OS."""
    import advlab.hydra_callbacks as guard

    (tmp_path / "ro").mkdir()
    real_access = os.access
    monkeypatch.setattr(
        guard.os,
        "access",
        lambda p, mode: False if str(p).startswith(str(tmp_path / "ro")) else real_access(p, mode),
    )
    code = app_main(case_argv(Case("ro", ("hydra.run.dir={tmp}/ro/run",), ""), tmp_path))
    lines = error_lines(capfd.readouterr().err)
    assert code == 2 and len(lines) == 1 and "read-only" in lines[0] and "hydra.run.dir" in lines[0]
    assert not (tmp_path / "ro" / "run").exists()


def test_os_errors_inside_the_job_are_named(tmp_path):
    """An OS error advlab hits while writing (e.g. the disk fills up) names the path, its key and the fix."""
    import errno

    from omegaconf import OmegaConf

    from advlab.hydra_callbacks import describe_os_error

    cfg = OmegaConf.create(
        {"cache_dir": str(tmp_path / "cache"), "hydra": {"run": {"dir": str(tmp_path / "r")}}}
    )
    full = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "cache" / "victims" / "v.pt"))
    line = describe_os_error(full, cfg)
    assert line.startswith("cache_dir: cannot use") and "v.pt" in line and "free space" in line
    denied = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "r" / "results.json"))
    assert describe_os_error(denied, cfg).startswith("hydra.run.dir:")
    assert describe_os_error(OSError(errno.EIO, "I/O error", "x"), cfg) is None  # not about where we write


def test_unexpected_exceptions_keep_their_traceback(tmp_path, monkeypatch):
    import advlab.validation

    def boom(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(advlab.validation, "check_config", boom)
    with pytest.raises(ZeroDivisionError):
        app_main(case_argv(Case("bug", (), ""), tmp_path))


def test_debug_true_shows_the_traceback(tmp_path, capfd):
    code = app_main([*case_argv(Case("dbg", ("attack.eps=-1",), ""), tmp_path), "debug=true"])
    err = capfd.readouterr().err
    assert (
        code == 2
        and "Traceback" in err
        and error_lines(err) == ["advlab: error: attack.eps: must be >= 0 (got -1.0)"]
    )


def test_errors_hold_several_messages_and_survive_pickling():
    from advlab.errors import ConfigError, DatasetNotFoundError

    err = ConfigError("a.x: bad", "a.y: worse\n    expected: this")
    assert err.messages == ["a.x: bad", "a.y: worse\n    expected: this"]
    assert str(err) == "a.x: bad\na.y: worse\n    expected: this"
    again = pickle.loads(pickle.dumps(err))
    assert again.messages == err.messages and isinstance(again, ValueError)
    missing = DatasetNotFoundError("dataset.root: missing", "dataset.root: also wrong")
    assert str(missing) == "dataset.root: missing\ndataset.root: also wrong" and isinstance(
        missing, FileNotFoundError
    )


# ---- through a real subprocess ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["typo_attack_key", "eps_inf", "finished_run_dir"])
def test_bad_input_through_the_real_entrypoint(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    if case.needs_no_gpu and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    if case.setup is not None:
        case.setup(tmp_path)
    before = snapshot(tmp_path)
    proc = run_cli(*case_argv(case, tmp_path), timeout=300)
    lines = error_lines(proc.stderr)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1 and case.names.lower() in lines[0].lower(), proc.stderr[-3000:]
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before


def test_hydra_full_error_shows_the_traceback(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    code = app_main(case_argv(Case("x", ("attack.eps=-1",), ""), tmp_path))
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" in err and len(error_lines(err)) == 1
    assert os.environ["HYDRA_FULL_ERROR"] == "1"  # the user's setting is restored


def test_finished_run_guard_leaves_hydra_files_untouched_when_rerun_differently(tmp_path, capfd):
    """The issue's provenance case: the refused re-run must not rewrite .hydra/overrides.yaml."""
    finished_run(tmp_path)
    overrides = (tmp_path / "run" / ".hydra" / "overrides.yaml").read_bytes()
    assert app_main(["attack=pgd_l2", f"hydra.run.dir={tmp_path / 'run'}", *BASE]) == 2
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").read_bytes() == overrides
    assert "hydra.run.dir=" in error_lines(capfd.readouterr().err)[0]  # suggests a fresh folder


def test_unfinished_run_folder_is_not_refused(tmp_path):
    """A folder with a resume state but no results.json is resumable: the guard lets it through."""
    from advlab.hydra_callbacks import check_run_folder

    (tmp_path / "eval_state.pt").write_bytes(b"state")
    check_run_folder(tmp_path)  # no error
    shutil.rmtree(tmp_path)
    check_run_folder(tmp_path)  # a fresh folder is fine too
