"""``victim=par_resnet``: the strong PAR baseline of Rethinking-of-PAR (Jia et al.): a torchvision ResNet trunk,
global average pooling, one linear classifier over all attributes and BatchNorm1d on the logits. Trained with
the PAR task's weighted BCE by the fit loop; the cross-model target of ASL-PAR's transfer table.
``pretrained`` optionally loads ImageNet trunk weights from a local torchvision state_dict file."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torchvision
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import check
from advlab.victims.base import VICTIMS, VictimBuilder, VictimConfig, load_state_dict_file


@dataclasses.dataclass
class PARResNetConfig(VictimConfig):
    depth: int = 50  # 18 | 34 | 50 | 101
    pretrained: str | None = None  # torchvision ImageNet weights file (e.g. resnet50-11ad3fa6.pth)

    def validate(self, key: str) -> None:
        check(
            self.depth in (18, 34, 50, 101), f"{key}.depth", f"must be 18, 34, 50 or 101 (got {self.depth})"
        )
        if self.pretrained and not Path(os.path.expanduser(self.pretrained)).is_file():
            raise CheckpointError(
                f"{key}.pretrained: '{self.pretrained}' does not exist (torchvision ImageNet weights, "
                "https://download.pytorch.org/models/)"
            )


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
