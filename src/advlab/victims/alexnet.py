"""torchvision's AlexNet with a new head: the PAT paper's ImageNet-100 relative-mCE baseline.

Their evaluation script reads a 100-class ``torchvision.models.alexnet`` from
``data/checkpoints/alexnet_imagenet100.pt``, a file they did not release. ``pretrained``: torchvision's
ImageNet weights (``alexnet-owt-7be5be79.pth``) loaded before advlab fine-tunes it (``experiment=
alexnet_imagenet100``); ``checkpoint``: a fine-tuned victim to evaluate as is.

The convolutional trunk needs inputs of at least 63 px (three stride-2 max-pools after a stride-4 stem);
non-RGB inputs get a first convolution of their channel count (trained from scratch)."""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import AlexNetConfig  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = (
    "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth (torchvision AlexNet_Weights.IMAGENET1K_V1)"
)
MIN_SIZE = 63


@VICTIMS.register("alexnet")
class AlexNet(VictimBuilder):
    Config = AlexNetConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        channels, height, width = info.image_shape
        if min(height, width) < MIN_SIZE:
            raise ConfigError(
                f"victim.name: alexnet needs images of at least {MIN_SIZE} px (got {height}x{width}); use "
                "victim=alexnet_cifar for small images"
            )
        net = torchvision.models.alexnet(weights=None)
        if self.params.pretrained:  # the 1000-class head is replaced below
            load_backbone_weights(
                net, self.params.pretrained, "torchvision AlexNet", SOURCE, ("classifier.6.",)
            )
        if channels != 3:
            net.features[0] = nn.Conv2d(channels, 64, kernel_size=11, stride=4, padding=2)
        net.classifier[6] = nn.Linear(net.classifier[6].in_features, num_outputs)
        return net
