"""torchvision ResNet-50 for the real multi-label / ECOC datasets, with the classifier replaced by one output
per label/bit/class. ``pretrained``: a local ImageNet state_dict (torchvision's ``resnet50-11ad3fa6.pth``)
loaded before advlab fine-tunes it; ``checkpoint``: a fine-tuned victim to attack as is."""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import ResNet50Config  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = (
    "https://download.pytorch.org/models/resnet50-11ad3fa6.pth (torchvision ResNet50_Weights.IMAGENET1K_V2)"
)


@VICTIMS.register("resnet50")
class ResNet50(VictimBuilder):
    Config = ResNet50Config

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        net = torchvision.models.resnet50(weights=None)
        if self.params.pretrained:
            load_backbone_weights(net, self.params.pretrained, "torchvision ResNet-50", SOURCE, ("fc.",))
        if info.image_shape[0] != 3:
            net.conv1 = nn.Conv2d(info.image_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Linear(net.fc.in_features, num_outputs)
        return net
