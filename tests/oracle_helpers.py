"""Shared builders for the oracle tests (advlab vs the authors' code): a tiny victim trained in seconds on the
embedded digits, the import stubs that let perceptual-advex load without its unrelated dependencies, and what
runs the UAR authors' CUDA-only ``advex_uar`` on the CPU."""

from __future__ import annotations

import importlib.util
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


#: the UAR attacks' package (advex_uar): the oracle extra installs it (the JPEG-Linf oracle runs it); only
#: where it is missing does a placeholder stand in, so that perceptual_advex still imports
_UAR = (
    "advex_uar",
    "advex_uar.common",
    "advex_uar.common.pyt_common",
    "advex_uar.attacks",
    "advex_uar.attacks.attacks",
)
#: modules perceptual_advex imports at import time that the attacks under test never use: MadryLab's
#: robustness (model loading and its own datasets)
_UNRELATED = (
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
    for :data:`_UNRELATED` (and :data:`_UAR` where advex_uar is not installed), and ``torchvision.models.utils.load_state_dict_from_url`` (removed from
    torchvision; it is ``torch.hub``'s). Test helper only: advlab never imports perceptual_advex."""
    uar_installed = "advex_uar" in sys.modules or importlib.util.find_spec("advex_uar") is not None
    for name in _UNRELATED if uar_installed else _UAR + _UNRELATED:
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


class _CPUTorch(types.ModuleType):
    """``torch`` as advex_uar's modules see it under :func:`uar_on_cpu`: the same module, except that tensors
    it asks for on ``device="cuda"`` are made on the CPU."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, attr: str):
        value = getattr(torch, attr)
        if attr not in {"as_tensor", "tensor", "full", "rand", "randn", "ones", "zeros", "empty"}:
            return value

        def on_cpu(*args, **kwargs):
            if str(kwargs.get("device", "")).startswith("cuda"):
                kwargs["device"] = "cpu"
            return value(*args, **kwargs)

        return on_cpu


#: advex_uar's modules that name ``device="cuda"``
_UAR_MODULES = ("advex_uar.attacks.attacks", "advex_uar.attacks.jpeg", "advex_uar.attacks.jpeg_attack")


def uar_on_cpu(monkeypatch) -> None:
    """Run the UAR authors' code (advex_uar 0.0.6.dev0, CUDA-only: ``.cuda()`` on modules and tensors,
    ``device="cuda"`` in tensor factories) on the CPU for the rest of a test: ``.cuda()`` is the identity and
    its modules' ``torch`` makes CPU tensors. Test helper only (pytest's ``monkeypatch`` undoes it)."""
    import importlib

    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(nn.Module, "cuda", lambda self, *a, **k: self)
    for name in _UAR_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "torch", _CPUTorch())


def uar_jpeg_steps(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """|change| of every quantised JPEG coefficient from ``x`` to ``x_adv`` (RGB in [0, 1], sides divisible by
    16), in quantisation steps, as the authors' encoder computes the coefficients (``advex_uar.attacks.jpeg``:
    JPEG YCbCr, 4:2:0 chroma, 8x8 DCT, quality-50 tables): Y, Cb and Cr concatenated, flat. Needs
    :func:`uar_on_cpu`."""
    from advex_uar.attacks import jpeg

    tables = types.SimpleNamespace()
    jpeg.make_quantization_tables(tables)

    def coefficients(img: torch.Tensor) -> list[torch.Tensor]:
        ycc = jpeg.rgb_to_ycbcr_jpeg(torch.transpose(img * 255, 1, 3))  # their layout: [N, W, H, C]
        y, cb, cr = jpeg.downsampling_420(ycc)
        return [
            jpeg.dct_8x8(jpeg.image_to_patches(c)) / t
            for c, t in ((y, tables.y_table), (cb, tables.c_table), (cr, tables.c_table))
        ]

    with torch.no_grad():
        return torch.cat([(a - b).abs().flatten() for a, b in zip(coefficients(x_adv), coefficients(x))])
