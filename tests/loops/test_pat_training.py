"""PAT issue: PAT defense, distributed (DDP) fit on CPU with gloo, and resuming a killed training."""

from __future__ import annotations

import ddp_worker
import pytest
import torch
import torch.multiprocessing as mp
from conftest import make_cfg

from advlab.context import build_spec
from advlab.defenses.base import DEFENSES
from advlab.loops.fit import fit
from advlab.tasks.base import TASKS


@pytest.mark.slow  # two spawned interpreters: most of the time is importing torch twice
def test_two_process_gloo_fit_matches_one_process_on_the_same_global_batch(tmp_path):
    single_logs: list = []
    single = ddp_worker.tiny_fit(ddp_worker.tiny_model(), single_logs)
    out = tmp_path / "rank0.pt"
    mp.spawn(ddp_worker.run_rank, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=False)
    # one step per epoch (global batch = the whole set): the epoch loss is the first step's loss
    assert ddp["logs"][0]["train/loss"] == pytest.approx(single_logs[0]["train/loss"], rel=1e-5)
    assert ddp["logs"][0]["train/acc"] == pytest.approx(single_logs[0]["train/acc"])
    for k, v in single.state_dict().items():  # gradients averaged over ranks = the full-batch gradient
        assert torch.allclose(ddp["state"][k], v, atol=1e-6), k


SMALL = ("dataset.size=16", "dataset.channels=3", "victim.width=8", "victim.hidden=32", "device=cpu")


def _pat_parts():
    from advlab.data.base import DATASETS

    spec = build_spec(make_cfg(*SMALL, "defense=pat", "defense.attack.steps=3", "train.epochs=2"))
    data = DATASETS.build(spec.dataset, spec.seed)
    task = TASKS.build(spec.task, data.info)
    return spec, data, task, DEFENSES.build(spec.defense, task)


def test_pat_attacks_only_correctly_classified_inputs():
    from advlab.victims.base import VICTIMS

    spec, data, task, defense = _pat_parts()
    model = VICTIMS.build(spec.victim).build(data.info, task.num_outputs).eval()
    x, y = data.dataset("train").tensors
    x, y = x[:64], y[:64]
    with torch.no_grad():
        correct = task.correct(model(x), y)
    assert 0 < int(correct.sum()) < 64  # an untrained model gets some right by chance
    xb, yb = defense.training_batch(model, x, y)
    assert torch.equal(yb, y)
    assert torch.equal(xb[~correct], x[~correct])  # wrongly classified inputs are trained on as they are
    changed = (xb - x).flatten(1).abs().amax(1) > 0
    assert changed[correct].all()
    assert xb.min() >= 0 and xb.max() <= 1


def test_pat_config_requires_a_perceptual_attack():
    from advlab.errors import ConfigError

    with pytest.raises(ConfigError, match="defense.attack.name"):
        build_spec(make_cfg("defense=pat", "attack@defense.attack=pgd_linf_train"))


def test_killed_pat_training_resumes_from_its_checkpoint(tmp_path):
    from advlab.victims.base import VICTIMS

    spec, data, task, defense = _pat_parts()

    def new_model():
        torch.manual_seed(0)
        return VICTIMS.build(spec.victim).build(data.info, task.num_outputs)

    def train(resume, log=None):
        return fit(
            new_model(),
            task,
            data,
            spec.train,
            defense,
            spec.device,
            0,
            resume_path=resume,
            log=log,
            progress=False,
        )

    reference = train(None)

    class Killed(Exception):
        pass

    def kill_after_first_epoch(stats):
        raise Killed

    resume = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        train(resume, kill_after_first_epoch)
    assert torch.load(resume, weights_only=False)["fields"]["epoch"] == 1
    logs: list = []
    resumed = train(resume, logs.append)
    assert [row["train/epoch"] for row in logs] == [2]  # only the missing epoch was trained
    for k, v in reference.state_dict().items():
        assert torch.allclose(resumed.state_dict()[k].float(), v.float(), atol=1e-5), k
