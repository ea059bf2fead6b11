"""ICNet with a ResNet-50 backbone in the layout of the checkpoint the EOT patch paper used
(``resnet50_<date>_176_0.661.pth.tar``, loaded by its code as ``torch.load(f)['model_state_dict']``; the
architecture of its ``pretrained_models/ICNet/icnet.py``), not mmseg's ICNet (ResNet-18-d8, other heads).

Three cascaded inputs (Zhao et al., ECCV 2018): ``conv_sub1`` (three stride-2 conv-BN-ReLU, full image -> 1/8,
64 channels); the half image through the torchvision ResNet-50 ``pretrained`` up to ``layer2`` (1/16 of the input,
512 channels); the quarter image through the whole ResNet-50 (1/128, 2048 channels) and a parameter-free pyramid
pooling (``x + sum_b up(avgpool_b(x))``, bins 1, 2, 3, 6). Cascade feature fusion ``head.cff_24`` (1/128 into
1/16) and ``head.cff_12`` (into 1/8): the coarser map upsampled to the finer one, a dilated 3x3 conv-BN, added to
a 1x1 conv-BN of the finer one, ReLU. ``head.conv_cls`` on the 2x upsampled result (1/4) and a 4x upsampling give
the full-resolution logits -- output 0 of the network, the one the paper's code evaluates. Every resize is
bilinear with ``align_corners=True``, as there. Input: RGB in [0, 1], ImageNet mean/std inside the wrapper (the
paper's data loader). The backbone's ImageNet classifier ``pretrained.fc`` is in the file and loaded, unused.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_weights_only

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PYRAMID_BINS = (1, 2, 3, 6)


def _up(x: Tensor, size=None, scale: float | None = None) -> Tensor:
    return F.interpolate(x, size=size, scale_factor=scale, mode="bilinear", align_corners=True)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class CascadeFeatureFusion(nn.Module):
    """Returns the fused features and the class logits of the (upsampled) coarse branch."""

    def __init__(self, low: int, high: int, out: int, classes: int):
        super().__init__()
        self.conv_low = nn.Sequential(
            nn.Conv2d(low, out, 3, padding=2, dilation=2, bias=False), nn.BatchNorm2d(out)
        )
        self.conv_high = nn.Sequential(nn.Conv2d(high, out, 1, bias=False), nn.BatchNorm2d(out))
        self.conv_low_cls = nn.Conv2d(out, classes, 1, bias=False)

    def forward(self, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        low = self.conv_low(_up(low, high.shape[-2:]))
        return F.relu(low + self.conv_high(high)), self.conv_low_cls(low)


class ICHead(nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.cff_12 = CascadeFeatureFusion(128, 64, 128, classes)
        self.cff_24 = CascadeFeatureFusion(2048, 512, 128, classes)
        self.conv_cls = nn.Conv2d(128, classes, 1, bias=False)

    def forward(self, sub1: Tensor, sub2: Tensor, sub4: Tensor) -> Tensor:
        fused24, _ = self.cff_24(sub4, sub2)
        fused12, _ = self.cff_12(fused24, sub1)
        return _up(self.conv_cls(_up(fused12, scale=2.0)), scale=4.0)


class ICNetR50(nn.Module):
    """``forward`` returns the full-resolution logits (the paper code's output 0)."""

    def __init__(self, classes: int):
        super().__init__()
        from torchvision.models import resnet50

        self.pretrained = resnet50(weights=None)
        self.conv_sub1 = nn.Sequential(ConvBNReLU(3, 32, 2), ConvBNReLU(32, 32, 2), ConvBNReLU(32, 64, 2))
        self.head = ICHead(classes)

    def _stem(self, x: Tensor) -> Tensor:
        r = self.pretrained
        return r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))

    def forward(self, x: Tensor) -> Tensor:
        r = self.pretrained
        sub2 = self._stem(_up(x, scale=0.5))
        sub4 = r.layer4(r.layer3(self._stem(_up(x, scale=0.25))))
        pooled = sub4
        for b in PYRAMID_BINS:  # parameter-free pyramid pooling, summed in the reference's order
            pooled = pooled + _up(F.adaptive_avg_pool2d(sub4, b), sub4.shape[-2:])
        return self.head(self.conv_sub1(x), sub2, pooled)


class ICNetVictim(Victim):
    """``forward(x RGB in [0,1]) -> logits [B, K, H, W]`` at the input resolution."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.net((x - self.mean) / self.std)
        return out if out.shape[-2:] == x.shape[-2:] else _up(out, x.shape[-2:])


def load_released(path: str) -> dict[str, Tensor]:
    """``['model_state_dict']`` of the training checkpoint (its other entries -- epoch, optimizer -- unused)."""
    where = " (the ICNet-R50 checkpoint of the EOT patch paper, resnet50_..._0.661.pth.tar; docs/papers/eot_patch.md)"
    obj = load_weights_only(path, "victim.checkpoint", where)
    file = Path(os.path.expanduser(str(path)))
    state = obj.get("model_state_dict") if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(
            f"victim.checkpoint: '{file}' has no 'model_state_dict' of tensors (the layout of the EOT patch "
            f"paper's ICNet checkpoint); found keys {sorted(obj)[:5] if isinstance(obj, dict) else type(obj)}"
        )
    return state


@VICTIMS.register("icnet_r50")
class ICNetR50Builder(VictimBuilder):
    trainable = False  # the published checkpoint (victim.checkpoint), not trained by advlab

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        return ICNetR50(num_outputs)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return ICNetVictim(self.build_net(info, num_outputs), IMAGENET_MEAN, IMAGENET_STD)

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return load_released(path)


__all__ = ["ICNetR50", "ICNetR50Builder", "load_released"]
