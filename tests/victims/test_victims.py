from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.context import build_spec, prepare_victim
from advlab.data.base import DATASETS
from advlab.data.info import DataInfo
from advlab.defenses.base import DEFENSES
from advlab.loggers.base import Tracker
from advlab.loops.fit import fit
from advlab.recorder import RunRecorder
from advlab.runner import run
from advlab.tasks.base import TASKS
from advlab.victims.base import VICTIMS, Victim

TINY = ("dataset.size=16", "train.epochs=2", "victim.width=8", "victim.hidden=32", "device=cpu")


def setup(tmp_path, *overrides):
    spec = build_spec(make_cfg(*TINY, *overrides))
    data = DATASETS.build(spec.dataset, spec.seed)
    task = TASKS.build(spec.task, data.info)
    defense = DEFENSES.build(spec.defense, task)
    return spec, data, task, defense, RunRecorder(tmp_path, Tracker(None))


def test_wrapper_owns_normalisation():
    v = Victim(torch.nn.Identity(), mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0))
    x = torch.ones(1, 3, 2, 2)
    out = v(x)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 3.0, 0.5]))


def test_resnet18_small_input():
    info = DataInfo(10, (1, 32, 32), [str(i) for i in range(10)], (0.5,), (0.5,))
    builder = VICTIMS.build(VICTIMS.parse({"name": "resnet18"}))
    v = builder.build(info, 10).eval()
    assert v(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    assert isinstance(v.net.maxpool, torch.nn.Identity) and v.net.conv1.stride == (1, 1)


def test_training_is_cached_by_what_determines_the_victim(tmp_path):
    spec, data, task, defense, rec = setup(tmp_path)
    v1, info1 = prepare_victim(spec, data, task, defense, rec)
    v2, info2 = prepare_victim(spec, data, task, defense, rec)
    assert info1["source"] == "trained" and info2["source"] == "cache" and info1["path"] == info2["path"]
    for a, b in zip(v1.state_dict().values(), v2.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())
    # a different training config is a different victim
    spec3, data3, task3, defense3, rec3 = setup(tmp_path, "train.lr=0.002")
    _, info3 = prepare_victim(spec3, data3, task3, defense3, rec3)
    assert info3["source"] == "trained" and info3["path"] != info1["path"]


def test_checkpoint_round_trip(tmp_path):
    spec, data, task, defense, rec = setup(tmp_path)
    victim, info = prepare_victim(spec, data, task, defense, rec)
    bare = tmp_path / "bare.pt"
    torch.save(victim.net.state_dict(), bare)  # the bare network's state_dict is accepted too
    res = run(make_cfg(*TINY, f"victim.checkpoint={bare}", "attack=none"), tmp_path / "run")
    assert res["victim"]["source"] == "checkpoint"
    with torch.no_grad():
        x, y = data.dataset("test").tensors
        acc = task.correct(victim(x), y).float().mean().item()
    assert res["metrics"]["clean/acc"] == pytest.approx(acc)


def test_fit_resumes_after_interruption(tmp_path):
    spec, data, task, defense, _ = setup(tmp_path, "train.epochs=3")

    def train(resume_path=None, log=None):
        torch.manual_seed(0)
        model = VICTIMS.build(spec.victim).build(data.info, task.num_outputs)
        return fit(
            model,
            task,
            data,
            spec.train,
            defense,
            spec.device,
            seed=0,
            resume_path=resume_path,
            log=log,
            progress=False,
        )

    reference = train()

    class Killed(Exception):
        pass

    def kill_after_first_epoch(stats):
        if stats["train/epoch"] == 1:
            raise Killed

    resume = tmp_path / "resume.pt"
    with pytest.raises(Killed):
        train(resume, kill_after_first_epoch)
    assert torch.load(resume, weights_only=False)["fields"]["epoch"] == 1  # written before the kill
    epochs = []
    resumed = train(resume, lambda s: epochs.append(s["train/epoch"]))
    assert epochs == [2, 3]
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_nan_loss_is_reported(tmp_path):
    spec, data, task, defense, _ = setup(tmp_path, "train.lr=1e12", "train.optimizer=sgd", "train.epochs=1")
    from advlab.errors import AdvlabError

    model = VICTIMS.build(spec.victim).build(data.info, task.num_outputs)
    with pytest.raises(AdvlabError, match="loss is (nan|inf).*lower train.lr"):
        fit(model, task, data, spec.train, defense, spec.device, seed=0, progress=False)
