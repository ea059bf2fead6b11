"""torchvision ResNet-50 for the real multi-label / ECOC datasets, with the classifier replaced by one output
per label/bit/class. ``pretrained``: a local ImageNet state_dict (torchvision's ``resnet50-11ad3fa6.pth``)
loaded before advlab fine-tunes it; ``checkpoint``: a fine-tuned victim to attack as is.

``small_input``: the CIFAR form (3x3 stride-1 stem, no max-pool), i.e. the robustness library's CIFAR ResNet-50
that PAT trains. ``checkpoint_layout=perceptual_advex`` reads ``checkpoint`` as the PAT authors save it (their
trainer's / the robustness library's wrapper dicts, key names and normalisation; see
:mod:`advlab.victims.perceptual_advex`): the CIFAR-10 model with ``small_input=true``, the ImageNet-100 model
without."""

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
        in_ch = info.image_shape[0]
        if self.params.small_input:
            net.conv1 = nn.Conv2d(in_ch, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_ch != 3:
            net.conv1 = nn.Conv2d(in_ch, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Linear(net.fc.in_features, num_outputs)
        return net

    def load_checkpoint(self, path: str):
        if self.params.checkpoint_layout == "perceptual_advex":
            from advlab.victims.perceptual_advex import load

            return load(path, "cifar_resnet50" if self.params.small_input else "imagenet_resnet50")
        return super().load_checkpoint(path)
