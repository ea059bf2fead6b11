"""Shared builders for the oracle tests (advlab vs the authors' code): a tiny victim trained in seconds on the
embedded digits, and the import stubs that let perceptual-advex load without its unrelated dependencies."""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

from advlab.data.info import DataInfo
from advlab.registry import parse_config
from advlab.tasks.base import TASKS


def digits_tensors(size: int = 16, channels: int = 1):
    """(train x, train y, test x, test y) of the embedded digits at ``size`` px."""
    from advlab.data.base import DATASETS

    data = DATASETS.build(
        parse_config(
            DATASETS.get("digits").Config, {"name": "digits", "size": size, "channels": channels}, "d"
        ),
        0,
    )
    xtr, ytr = data.dataset("train").tensors
    xte, yte = data.dataset("test").tensors
    return xtr, ytr, xte, yte, data.info


def tiny_victim(size: int = 16, channels: int = 1, hidden: int = 32, steps: int = 150, seed: int = 0):
    """(model, task, test x, test y): a one-hidden-layer MLP on the digits, full-batch Adam (about a second);
    frozen, in eval mode. Fast enough for many attack iterations in a test."""
    xtr, ytr, xte, yte, info = digits_tensors(size, channels)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(channels * size * size, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        idx = torch.randint(0, xtr.shape[0], (128,), generator=g)
        loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), info
    )
    return model, task, xte, yte


def rgb_info(size: int) -> DataInfo:
    return DataInfo(10, (3, size, size), [str(i) for i in range(10)], (0.5,) * 3, (0.25,) * 3)


class _Placeholder(types.ModuleType):
    """A stand-in module: every attribute is an inert placeholder class (never used by the attacks tested)."""

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr == "DATASETS":  # a registry perceptual_advex adds its datasets to
            value = {}
            setattr(self, attr, value)
            return value
        return type(attr, (), {})


#: modules perceptual_advex imports at import time that the attacks under test never use: the UAR attacks'
#: package (advex_uar) and MadryLab's robustness (model loading and its own datasets)
_UNRELATED = (
    "advex_uar",
    "advex_uar.common",
    "advex_uar.common.pyt_common",
    "advex_uar.attacks",
    "advex_uar.attacks.attacks",
    "robustness",
    "robustness.datasets",
    "robustness.model_utils",
    "robustness.attacker",
    "robustness.cifar_models",
    "robustness.cifar_models.resnet",
    "robustness.data_augmentation",
)


def stub_perceptual_advex_imports() -> None:
    """Make ``import perceptual_advex.attacks`` work without its unrelated dependencies: placeholder modules
    for :data:`_UNRELATED`, and ``torchvision.models.utils.load_state_dict_from_url`` (removed from
    torchvision; it is ``torch.hub``'s). Test helper only: advlab never imports perceptual_advex."""
    for name in _UNRELATED:
        if name not in sys.modules:
            sys.modules[name] = _Placeholder(name)
            sys.modules[name].__path__ = []  # a package, so that its submodules import
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    if "torchvision.models.utils" not in sys.modules:
        import torch.hub

        utils = types.ModuleType("torchvision.models.utils")
        utils.load_state_dict_from_url = torch.hub.load_state_dict_from_url  # type: ignore[attr-defined]
        sys.modules["torchvision.models.utils"] = utils
