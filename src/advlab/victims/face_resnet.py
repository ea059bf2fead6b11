"""Face-verification embedding networks: torchvision ResNet-50 / ResNet-101 trunks whose last layer outputs an
identity embedding (``task.embedding_dim``, 512 for the usual MS-Celeb-1M models), on 112x112 aligned faces.

SemanticAdv's victims (R-50/101-S, trained with a softmax loss, and R-50/101-C, with a cosine loss) come from
weights trained elsewhere: point ``victim.checkpoint`` at a local state_dict of the torchvision layout
(``conv1.weight``, ``layer1.0...``, ``fc.weight`` [embedding_dim, 2048]). ``victim.mean``/``victim.std`` are the
normalisation the weights were trained with (default (x - 0.5) / 0.5); the wrapper applies it, so attacks work
on images in [0, 1].
"""

from __future__ import annotations

import torchvision
from torch import nn

from advlab.data.info import DataInfo
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
from advlab.victims.configs import FaceResNetConfig  # noqa: F401


class _FaceResNet(VictimBuilder):
    Config = FaceResNetConfig
    trainable = False  # weights come from victim.checkpoint
    depth = 50

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        ctor = torchvision.models.resnet50 if self.depth == 50 else torchvision.models.resnet101
        return ctor(weights=None, num_classes=num_outputs)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), tuple(self.params.mean), tuple(self.params.std))


@VICTIMS.register("face_resnet50")
class FaceResNet50(_FaceResNet):
    depth = 50


@VICTIMS.register("face_resnet101")
class FaceResNet101(_FaceResNet):
    depth = 101
