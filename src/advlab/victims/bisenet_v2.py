"""BiSeNetV2 in CoinCheung's layout (``lib/models/bisenetv2.py``; Yu et al., IJCV 2021), loading the released
``model_final_v2_city.pth`` as downloaded (``victims/coincheung.py``: file, normalisation, ignored keys).

Detail branch ``detail`` (S1..S3: conv-BN-ReLU stacks to 1/8, 128 channels). Semantic branch ``segment``: the
stem ``S1S2`` (conv, then a 1x1/3x3 stride-2 path concatenated with a max-pooled path, fused), gather-and-expand
layers ``S3``, ``S4``, ``S5_4`` (stride-2 ``GELayerS2`` with depthwise expansion and a depthwise shortcut, then
``GELayerS1``; expansion 6) and the context embedding ``S5_5`` (BN of the global mean, 1x1 conv-BN-ReLU, added,
3x3 conv-BN-ReLU). Bilateral guided aggregation ``bga``: the detail features gated by the 4x upsampled (nearest)
semantic features and the semantic features gated by pooled detail features, summed after a 4x upsampling,
then a 3x3 conv-BN-ReLU. Head ``head``: conv-BN-ReLU to 1024 channels, 1x1 to the classes, 8x bilinear. The
training-only heads ``aux2`` .. ``aux5_4`` of the released file are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
from advlab.victims.coincheung import CoinCheungVictim, ConvBNReLU, load_released

AUX_HEADS = ("aux2.", "aux3.", "aux4.", "aux5_4.")


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class DetailBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, 3, 2), ConvBNReLU(64, 64, 3))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64, 3), ConvBNReLU(64, 64, 3))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128, 3), ConvBNReLU(128, 128, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16, 3)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return self.fuse(torch.cat([self.left(feat), self.right(feat)], 1))


class ContextEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(128)
        self.conv_gap = ConvBNReLU(128, 128, 1)
        self.conv_last = ConvBNReLU(128, 128, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_last(self.conv_gap(self.bn(x.mean((2, 3), keepdim=True))) + x)


class GatherExpand(nn.Module):
    """Gather-and-expand layer, stride 1: 3x3 conv-BN-ReLU, depthwise 3x3 expansion (x6) -BN-ReLU, 1x1 -BN,
    identity shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        self.conv1 = ConvBNReLU(cin, cin, 3)
        self.dwconv = nn.Sequential(*_conv_bn(cin, mid, 3, groups=cin), nn.ReLU())
        self.conv2 = nn.Sequential(*_conv_bn(mid, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.dwconv(self.conv1(x))) + x)


class GatherExpandDown(nn.Module):
    """Gather-and-expand layer, stride 2: two depthwise 3x3 (the first stride 2, expanding x6), a depthwise
    stride-2 + 1x1 shortcut."""

    def __init__(self, cin: int, cout: int, expand: int = 6):
        super().__init__()
        mid = cin * expand
        self.conv1 = ConvBNReLU(cin, cin, 3)
        self.dwconv1 = nn.Sequential(*_conv_bn(cin, mid, 3, 2, groups=cin))
        self.dwconv2 = nn.Sequential(*_conv_bn(mid, mid, 3, groups=mid), nn.ReLU())
        self.conv2 = nn.Sequential(*_conv_bn(mid, cout, 1))
        self.shortcut = nn.Sequential(*_conv_bn(cin, cin, 3, 2, groups=cin), *_conv_bn(cin, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return F.relu(feat + self.shortcut(x))


class SegmentBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GatherExpandDown(16, 32), GatherExpand(32, 32))
        self.S4 = nn.Sequential(GatherExpandDown(32, 64), GatherExpand(64, 64))
        self.S5_4 = nn.Sequential(
            GatherExpandDown(64, 128), GatherExpand(128, 128), GatherExpand(128, 128), GatherExpand(128, 128)
        )
        self.S5_5 = ContextEmbedding()

    def forward(self, x: Tensor) -> Tensor:
        return self.S5_5(self.S5_4(self.S4(self.S3(self.S1S2(x)))))


class GuidedAggregation(nn.Module):
    def __init__(self, c: int = 128):
        super().__init__()
        self.left1 = nn.Sequential(*_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(*_conv_bn(c, c, 3, 2), nn.AvgPool2d(3, 2, 1))
        self.right1 = nn.Sequential(*_conv_bn(c, c, 3))
        self.right2 = nn.Sequential(*_conv_bn(c, c, 3, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = nn.Sequential(*_conv_bn(c, c, 3), nn.ReLU())

    def forward(self, detail: Tensor, semantic: Tensor) -> Tensor:
        gate = F.interpolate(self.right1(semantic), scale_factor=4.0, mode="nearest").sigmoid()
        left = self.left1(detail) * gate
        right = self.left2(detail) * self.right2(semantic).sigmoid()
        return self.conv(left + F.interpolate(right, scale_factor=4.0, mode="nearest"))


class SegmentHead(nn.Module):
    """conv-BN-ReLU, dropout 0.1, 1x1 to the classes, 8x bilinear (keys ``conv``, ``conv_out.1``)."""

    def __init__(self, cin: int, mid: int, classes: int, up: int = 8):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3)
        self.drop = nn.Dropout(0.1)
        self.conv_out = nn.Sequential(nn.Identity(), nn.Conv2d(mid, classes, 1, bias=True))
        self.up_factor = up

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_out(self.drop(self.conv(x)))
        return F.interpolate(out, scale_factor=float(self.up_factor), mode="bilinear", align_corners=False)


class BiSeNetV2(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.detail = DetailBranch()
        self.segment = SegmentBranch()
        self.bga = GuidedAggregation()
        self.head = SegmentHead(128, 1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.bga(self.detail(x), self.segment(x)))


@VICTIMS.register("bisenetv2_coincheung")
class BiSeNetV2Builder(VictimBuilder):
    trainable = False  # the published checkpoint (victim.checkpoint), not trained by advlab

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        return BiSeNetV2(num_outputs)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return CoinCheungVictim(self.build_net(info, num_outputs))

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return load_released(path, AUX_HEADS)


__all__ = ["AUX_HEADS", "BiSeNetV2", "BiSeNetV2Builder"]
