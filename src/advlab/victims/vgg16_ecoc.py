"""The JMA paper's ECOC victim (Tables III-V, after Verma & Swami 2019): an ensemble of VGG16 networks whose
first ``shared_convs`` convolutions (6 in the paper) form one shared bottom, and ``branches`` branches (the
remaining VGG16 convolutions, two fully connected layers of ``fc`` units and a linear output), each giving
its share of the code's bits; the ECOC task applies tanh per bit (hinge loss, correlation decoding). By
default one branch per bit, as the official models (one ``..._bit_<i>`` network per bit).

``pretrained``: torchvision's ImageNet VGG16 (``vgg16-397923af.pth``, as the paper initialises from ImageNet
weights): ``features.*`` convolutions go to the bottom and to every branch (the same ImageNet weights in
each); ``classifier.*`` is left out on purpose (its 25088-input layers are for 224x224 images; the branches'
fully connected layers are trained for the dataset's size). ``width`` (64 in VGG16: the first block's
channels, doubling per block to 8x) and ``fc`` (4096) shrink it for tests with the same key layout.

``checkpoint``: a state_dict, or the JMA authors' Keras ``.hdf5`` models (:mod:`advlab.victims.keras_vgg16`),
attacked as they are."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder, load_state_dict_file
from advlab.victims.configs import VGG16ECOCConfig  # noqa: F401

SOURCE = "https://download.pytorch.org/models/vgg16-397923af.pth (torchvision VGG16_Weights.IMAGENET1K_V1)"
#: VGG16 ("D"): convolution widths in units of ``width``, "M" = 2x2 max-pool
CFG = [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"]
#: index of each convolution in torchvision's ``features`` Sequential (conv, ReLU, ..., pool)
TORCHVISION_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def _layers(cfg: list, in_ch: int, width: int) -> tuple[list[nn.Module], int]:
    layers: list[nn.Module] = []
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_ch, item * width, 3, padding=1), nn.ReLU(inplace=True)]
            in_ch = item * width
    return layers, in_ch


class SharedBottomEnsemble(nn.Module):
    """``forward(x) = cat([branch_b(bottom(x)) for b], dim=1)``: the logits of all bits, in code order."""

    def __init__(self, in_ch: int, size: int, num_bits: int, p: VGG16ECOCConfig):
        super().__init__()
        conv_positions = [i for i, item in enumerate(CFG) if item != "M"]
        split = conv_positions[p.shared_convs - 1] + 1 if p.shared_convs else 0
        bottom, ch = _layers(CFG[:split], in_ch, p.width)
        self.bottom = nn.Sequential(*bottom)
        h = p.branches or num_bits
        if h > num_bits:
            raise ConfigError(
                f"victim.branches: {h} branches for a {num_bits}-bit code; use at most {num_bits}"
            )
        self.bits = [len(c) for c in torch.arange(num_bits).tensor_split(h)]
        flat = 8 * p.width * (size // 32) ** 2
        branches = []
        for bits in self.bits:
            top, _ = _layers(CFG[split:], ch, p.width)
            head = [nn.Flatten(), nn.Linear(flat, p.fc), nn.ReLU(inplace=True), nn.Linear(p.fc, p.fc)]
            branches.append(nn.Sequential(*top, *head, nn.ReLU(inplace=True), nn.Linear(p.fc, bits)))
        self.branches = nn.ModuleList(branches)
        self.split = split

    def forward(self, x: Tensor) -> Tensor:
        z = self.bottom(x)
        return torch.cat([branch(z) for branch in self.branches], dim=1)

    def conv_modules(self) -> list[list[nn.Conv2d]]:
        """Per branch, its 13 VGG16 convolutions in order (the bottom's first)."""
        shared = [m for m in self.bottom if isinstance(m, nn.Conv2d)]
        return [shared + [m for m in b if isinstance(m, nn.Conv2d)] for b in self.branches]


def load_torchvision_vgg16(net: SharedBottomEnsemble, path: str) -> None:
    """Copy the convolutions of a torchvision VGG16 state_dict into the bottom and every branch."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise CheckpointError(
            f"victim.pretrained: torchvision VGG16 weights file '{file}' does not exist. Download it from "
            f"{SOURCE} and set victim.pretrained=<path> (or victim.pretrained=null)."
        )
    state = load_state_dict_file(file)
    convs = {f"features.{i}.{part}" for i in TORCHVISION_CONV_INDEX for part in ("weight", "bias")}
    ignored = {
        f"classifier.{i}.{part}" for i in (0, 3, 6) for part in ("weight", "bias")
    }  # 224x224 FC layers
    missing, unexpected = sorted(convs - set(state)), sorted(set(state) - convs - ignored)
    if missing or unexpected:
        raise CheckpointError(
            f"victim.pretrained: '{file}' does not hold torchvision VGG16 weights (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); expected the state_dict published at {SOURCE}"
        )
    with torch.no_grad():
        for branch in net.conv_modules():
            for conv, idx in zip(branch, TORCHVISION_CONV_INDEX):
                w, b = state[f"features.{idx}.weight"], state[f"features.{idx}.bias"]
                if w.shape != conv.weight.shape:
                    raise CheckpointError(
                        f"victim.pretrained: features.{idx}.weight is {tuple(w.shape)} in '{file}' but the victim "
                        f"needs {tuple(conv.weight.shape)} (victim.width={conv.weight.shape[0]} vs the file's)"
                    )
                conv.weight.copy_(w)
                conv.bias.copy_(b)


@VICTIMS.register("vgg16_ecoc")
class VGG16ECOC(VictimBuilder):
    Config = VGG16ECOCConfig

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """A state_dict file, or the JMA authors' Keras ``.hdf5`` models (one file, or a glob of the per-bit
        files): :mod:`advlab.victims.keras_vgg16`."""
        from advlab.victims.keras_vgg16 import is_keras_file, keras_state_dict

        if is_keras_file(path):
            return keras_state_dict(path, self.params, SharedBottomEnsemble)
        return super().load_checkpoint(path)

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        if h != w or h % 32:
            raise ConfigError(
                f"victim: vgg16_ecoc needs square images with a side divisible by 32 (five 2x2 pools), got "
                f"{h}x{w}; set dataset.size=32 (MNIST: resize to 32)"
            )
        if self.params.pretrained and c != 3:
            raise ConfigError(f"victim.pretrained: the ImageNet VGG16 weights need 3-channel images, got {c}")
        net = SharedBottomEnsemble(c, h, num_outputs, self.params)
        if self.params.pretrained:
            load_torchvision_vgg16(net, self.params.pretrained)
        return net
