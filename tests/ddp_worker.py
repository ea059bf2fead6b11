"""Helpers for the DDP test, in their own light module: spawned processes import only this (not conftest)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset

from advlab.data.base import DataModule, DatasetConfig
from advlab.data.info import DataInfo
from advlab.defenses.base import Defense
from advlab.loops.fit import TrainConfig, fit
from advlab.registry import parse_config
from advlab.tasks.base import TASKS


class TinyData(DataModule):
    """A fixed random training set (picklable for spawned processes)."""

    def __init__(self, n: int = 32):
        super().__init__(DatasetConfig(name="tiny"), 0)
        g = torch.Generator().manual_seed(0)
        self.x = torch.rand(n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, 4, (n,), generator=g)

    @property
    def info(self) -> DataInfo:
        return DataInfo(4, (1, 8, 8), ["a", "b", "c", "d"], (0.5,), (0.25,))

    def dataset(self, split: str) -> TensorDataset:
        return TensorDataset(self.x, self.y)


def tiny_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 4))


def tiny_fit(model: nn.Module, logs: list) -> nn.Module:
    data = TinyData()
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), data.info
    )
    params = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.5, momentum=0.0, schedule="none")
    return fit(
        model,
        task,
        data,
        params,
        Defense(None, task),
        torch.device("cpu"),
        0,
        log=logs.append,
        progress=False,
    )


def run_rank(rank: int, world: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        logs: list = []
        model = tiny_fit(tiny_model(), logs)
        if rank == 0:
            torch.save({"logs": logs, "state": model.state_dict()}, out_file)
        else:
            assert logs == []  # only rank 0 logs
    finally:
        dist.destroy_process_group()


def tiny_evaluation(eval_overrides: dict | None = None):
    """Untrained tiny model, PGD (random start, 3 steps) on TinyData's 32 images in batches of 6: the
    evaluate loop's result in this process (one rank of a DDP run, or a single process)."""
    from advlab.attacks.base import ATTACKS
    from advlab.loops.evaluate import EvalConfig, evaluate

    data = TinyData()
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), data.info
    )
    cls = ATTACKS.get("pgd")
    attack = cls(parse_config(cls.Config, {"name": "pgd", "eps": 0.1, "steps": 3}, "attack"), task)
    params = EvalConfig(batch_size=6, grid_examples=2, **(eval_overrides or {}))
    return evaluate(tiny_model().eval(), task, data, attack, params, torch.device("cpu"), 3, progress=False)


def eval_rank(rank: int, world: int, init_file: str, out_prefix: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        r = tiny_evaluation()
        torch.save({"metrics": r.metrics, "adv_correct": r.adv_correct}, f"{out_prefix}{rank}.pt")
    finally:
        dist.destroy_process_group()
