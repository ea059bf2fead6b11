"""BiSeNetV1 in CoinCheung's layout (``lib/models/bisenetv1.py``; Yu et al., ECCV 2018), loading the released
``model_final_v1_city_new.pth`` as downloaded (``victims/coincheung.py``: file, normalisation, ignored keys).

Context path ``cp``: ResNet-18 (``cp.resnet``, 1/8, 1/16, 1/32 features), attention refinement of the 1/16 and
1/32 features (``arm16``, ``arm32``: conv-BN-ReLU, then a sigmoid channel attention from the global mean), the
global context ``conv_avg`` added at 1/32, each level upsampled 2x (nearest) and refined (``conv_head32``,
``conv_head16``). Spatial path ``sp``: three stride-2 conv-BN-ReLU and a 1x1 to 128 channels (1/8). Feature
fusion ``ffm``: concatenation, 1x1 conv-BN-ReLU, ``feat * sigmoid(bn(conv(mean(feat)))) + feat``. Output head
``conv_out``: conv-BN-ReLU, 1x1 to the classes, 8x bilinear upsampling. The training-only heads ``conv_out16`` /
``conv_out32`` of the released file are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
from advlab.victims.coincheung import CoinCheungVictim, ConvBNReLU, load_released

AUX_HEADS = ("conv_out16.", "conv_out32.")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(residual + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """ResNet-18 without its classifier; returns the 1/8, 1/16 and 1/32 features."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        chans = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(chans, start=1):
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout, 3)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        return feat * self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))).sigmoid()


class ContextPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: Tensor) -> Tensor:
        _, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        up32 = self.conv_head32(F.interpolate(self.arm32(feat32) + context, scale_factor=2.0, mode="nearest"))
        return self.conv_head16(F.interpolate(self.arm16(feat16) + up32, scale_factor=2.0, mode="nearest"))


class SpatialPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, 2)
        self.conv2 = ConvBNReLU(64, 64, 3, 2)
        self.conv3 = ConvBNReLU(64, 64, 3, 2)
        self.conv_out = ConvBNReLU(64, 128, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1)
        self.conv = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([spatial, context], 1))
        return feat * self.bn(self.conv(feat.mean((2, 3), keepdim=True))).sigmoid() + feat


class OutputHead(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int, up: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid, 3)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=True)
        self.up_factor = up

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_out(self.conv(x))
        return F.interpolate(out, scale_factor=float(self.up_factor), mode="bilinear", align_corners=False)


class BiSeNetV1(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.cp = ContextPath()
        self.sp = SpatialPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, num_classes, 8)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.ffm(self.sp(x), self.cp(x)))


@VICTIMS.register("bisenetv1_coincheung")
class BiSeNetV1Builder(VictimBuilder):
    trainable = False  # the published checkpoint (victim.checkpoint), not trained by advlab

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        return BiSeNetV1(num_outputs)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return CoinCheungVictim(self.build_net(info, num_outputs))

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return load_released(path, AUX_HEADS)


__all__ = ["AUX_HEADS", "BiSeNetV1", "BiSeNetV1Builder"]
