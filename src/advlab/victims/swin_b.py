"""torchvision Swin-B (the JMA paper's MS-COCO victim), with the head replaced by one output per
label/bit/class. ``pretrained``: a local ImageNet state_dict (torchvision's ``swin_b-68c6b09e.pth``, 224x224).
``width`` is the first stage's embedding size (128 for Swin-B; smaller values keep the same key layout with
smaller tensors, for tests); the heads keep Swin-B's 32 channels each."""

from __future__ import annotations

from torch import nn
from torchvision.models.swin_transformer import SwinTransformer

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import SwinBConfig  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = "https://download.pytorch.org/models/swin_b-68c6b09e.pth (torchvision Swin_B_Weights.IMAGENET1K_V1)"
DEPTHS = [2, 2, 18, 2]


@VICTIMS.register("swin_b")
class SwinB(VictimBuilder):
    Config = SwinBConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        if c != 3 or h % 32 or w % 32:
            raise ConfigError(
                f"victim: swin_b needs 3-channel images with sides divisible by 32, got {c}x{h}x{w}"
            )
        width = self.params.width
        net = SwinTransformer(
            patch_size=[4, 4],
            embed_dim=width,
            depths=DEPTHS,
            num_heads=[width // 32 * 2**i for i in range(4)],
            window_size=[7, 7],
            stochastic_depth_prob=0.5,
        )
        if self.params.pretrained:
            load_backbone_weights(net, self.params.pretrained, "torchvision Swin-B", SOURCE, ("head.",))
        net.head = nn.Linear(net.head.in_features, num_outputs)
        return net
