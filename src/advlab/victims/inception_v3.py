"""torchvision Inception-v3 (the JMA paper's VOC2012 victim: 299x299 inputs), with the classifier replaced
by one output per label/bit/class. ``pretrained``: a local ImageNet state_dict (torchvision's
``inception_v3_google-0cc3c7bd.pth``); its auxiliary classifier (``AuxLogits.*``) is not built (advlab
trains and attacks the main head only) and its ``fc`` is replaced. With the Google weights the network
re-maps its ImageNet-normalised input to [-1, 1] as those weights expect (torchvision's ``transform_input``).
``checkpoint``: a fine-tuned victim to attack as is (advlab's layout, ``net.*``)."""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import InceptionV3Config  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = (
    "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth "
    "(torchvision Inception_V3_Weights.IMAGENET1K_V1)"
)


@VICTIMS.register("inception_v3")
class InceptionV3(VictimBuilder):
    Config = InceptionV3Config

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        if c != 3 or min(h, w) < 75:
            raise ConfigError(
                f"victim: inception_v3 needs 3-channel images of at least 75x75 (the paper uses 299x299), got "
                f"{c}x{h}x{w}; set dataset.size=299"
            )
        pretrained = self.params.pretrained
        net = torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=pretrained is None, transform_input=bool(pretrained)
        )
        if pretrained:
            load_backbone_weights(net, pretrained, "torchvision Inception-v3", SOURCE, ("fc.", "AuxLogits."))
        net.fc = nn.Linear(net.fc.in_features, num_outputs)
        return net
