"""torchvision ResNet-18 adapted to small inputs (3x3 stem, stride 1, no max-pool), as is usual for
CIFAR-sized images. Random init; advlab trains it, or loads ``victim.checkpoint``."""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import ResNetConfig  # noqa: F401


@VICTIMS.register("resnet18")
class ResNet18(VictimBuilder):
    Config = ResNetConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        net = torchvision.models.resnet18(weights=None, num_classes=num_outputs)
        in_ch = info.image_shape[0]
        if self.params.small_input:
            net.conv1 = nn.Conv2d(in_ch, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_ch != 3:
            net.conv1 = nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return net
