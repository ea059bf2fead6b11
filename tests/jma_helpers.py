"""Small builders shared by the JMA tests: tasks and attacks from plain parameters, and a linear victim."""

from __future__ import annotations

import torch
from torch import nn

from advlab.attacks import ATTACKS
from advlab.data.info import DataInfo
from advlab.tasks.base import TASKS


def info(n: int, shape=(1, 4, 4)) -> DataInfo:
    return DataInfo(n, shape, [str(i) for i in range(n)], (0.0,) * shape[0], (1.0,) * shape[0])


def task(name: str, n: int, shape=(1, 4, 4), **params):
    return TASKS.create(name, info(n, shape), **params)


def attack(cls, t, **params):
    return ATTACKS.create(cls.registered_name, t, **params)


class Linear(nn.Module):
    """f(x) = W vec(x) + c, with fixed weights."""

    def __init__(self, w: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)
        self.c = nn.Parameter(c, requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.c
