"""``victim=par_resnet``: the strong PAR baseline of Rethinking-of-PAR (Jia et al.): a torchvision ResNet trunk,
global average pooling, one linear classifier over all attributes and BatchNorm1d on the logits. Trained with
the PAR task's weighted BCE by the fit loop; the cross-model target of ASL-PAR's transfer table.
``pretrained`` optionally loads ImageNet trunk weights from a local torchvision state_dict file."""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.victims.base import VICTIMS, VictimBuilder, load_state_dict_file
from advlab.victims.configs import PARResNetConfig  # noqa: F401


class PARResNet(nn.Module):
    def __init__(self, trunk: nn.Module, features: int, num_attributes: int):
        super().__init__()
        self.trunk = trunk
        self.classifier = nn.Linear(features, num_attributes)
        self.bn = nn.BatchNorm1d(num_attributes)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.classifier(self.trunk(x)))


@VICTIMS.register("par_resnet")
class PARResNetBuilder(VictimBuilder):
    Config = PARResNetConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        trunk = getattr(torchvision.models, f"resnet{self.params.depth}")(weights=None)
        if self.params.pretrained:
            state = load_state_dict_file(self.params.pretrained)
            trunk.load_state_dict(state)
        features = trunk.fc.in_features
        trunk.fc = nn.Identity()
        return PARResNet(trunk, features, num_outputs)
