"""torchvision ViT-B/16 with the head replaced by one output per label/bit/class. ``pretrained``: a local
ImageNet state_dict (torchvision's ``vit_b_16-c867db91.pth``, 224x224 inputs; other input sizes need
``pretrained=null`` or a checkpoint trained at that size)."""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import ViTConfig  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = (
    "https://download.pytorch.org/models/vit_b_16-c867db91.pth (torchvision ViT_B_16_Weights.IMAGENET1K_V1)"
)


@VICTIMS.register("vit_b16")
class ViTB16(VictimBuilder):
    Config = ViTConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        if h != w or h % 16:
            raise ConfigError(f"victim: vit_b16 needs square inputs with a size divisible by 16, got {h}x{w}")
        if c != 3:
            raise ConfigError(f"victim: vit_b16 needs 3-channel images, got {c}")
        if self.params.pretrained and h != 224:
            raise ConfigError(
                f"victim.pretrained: the ImageNet ViT-B/16 weights are for 224x224 inputs, the dataset gives {h}x{w}; "
                "set dataset.size=224"
            )
        net = torchvision.models.vit_b_16(weights=None, image_size=h)
        if self.params.pretrained:
            load_backbone_weights(net, self.params.pretrained, "torchvision ViT-B/16", SOURCE, ("heads.",))
        net.heads.head = nn.Linear(net.heads.head.in_features, num_outputs)
        return net
