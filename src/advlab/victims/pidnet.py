"""PIDNet-S/M/L as released by its authors (Xu, Xiong & Bhattacharyya, CVPR 2023; github.com/XuJiacong/PIDNet),
loading their Cityscapes files ``PIDNet_{S,M,L}_Cityscapes_{test,val}.pt`` as downloaded. ``_test`` is trained on
train+val (the EOT patch paper's victims), ``_val`` on train only.

The architecture follows the official ``models/pidnet.py`` (module names as there, so the released keys map
one-to-one): a stem of two stride-2 convolutions, the I (context) branch of residual stages ``layer1`` ..
``layer5`` with a pyramid pooling module (PAPPM for S/M, DAPPM for L), the P (detail) branch ``layer3_`` ..
``layer5_`` fused with I through pixel-attention-guided fusion (``pag3``, ``pag4``), the D (boundary) branch
``layer3_d`` .. ``layer5_d`` fed by ``diff3`` / ``diff4``, and the boundary-attention fusion ``dfm`` (Light-Bag
for S/M, Bag for L) before ``final_layer``. The P and D heads (``seghead_p``, ``seghead_d``) only serve the
training loss; they are built (their keys load) but the output is the I-branch logits at 1/8 resolution, resized
bilinearly (``align_corners=False``, as PIDNet evaluates) to the input. Input: RGB in [0, 1], normalised inside
the wrapper with the ImageNet mean/std PIDNet's data loader uses.

Released file layout: the ``state_dict`` of PIDNet's training wrapper ``FullModel`` -- the network under
``model.`` and the loss's class-weight buffer ``sem_loss.criterion.weight`` (not part of the network: ignored);
a ``{'state_dict': ...}`` wrapper (the training script's ``checkpoint.pth.tar``) is accepted too.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_state_dict_file
from advlab.victims.configs import PIDNET_CONFIGS, PIDNET_VARIANTS, PIDNetConfig

logger = logging.getLogger(__name__)

RELEASES = "https://github.com/XuJiacong/PIDNet#models (Cityscapes: PIDNet_{S,M,L}_Cityscapes_test.pt)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: variant -> (m, n, planes, ppm_planes, head_planes), as the official ``get_pred_model``
VARIANTS = PIDNET_VARIANTS
#: keys of the released file that are not part of the network, and why
IGNORED_PREFIXES = {
    "sem_loss.": "the training loss's class weights",
    "bd_loss.": "the training boundary loss",
}


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=0.1)


def _up(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, relu=True
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes)
        self.downsample = downsample
        self.relu_out = relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


class Bottleneck(nn.Module):
    expansion = 2

    def __init__(
        self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None, relu=False
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 2, 1, bias=False)
        self.bn3 = _bn(planes * 2)
        self.downsample = downsample
        self.relu_out = relu

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out)) + (x if self.downsample is None else self.downsample(x))
        return F.relu(out) if self.relu_out else out


def _shortcut(block: type, cin: int, planes: int, stride: int) -> nn.Module | None:
    cout = planes * block.expansion
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))


def stage(block: type, cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` residual blocks (the official ``_make_layer``): the first may downsample and keeps its block's
    default output ReLU (BasicBlock: yes, Bottleneck: no); of the others only the last has none."""
    layers = [block(cin, planes, stride, _shortcut(block, cin, planes, stride), relu=block is BasicBlock)]
    for i in range(1, blocks):
        layers.append(block(planes * block.expansion, planes, relu=i != blocks - 1))
    return nn.Sequential(*layers)


def single(cin: int, planes: int) -> BasicBlock:
    """One BasicBlock without output ReLU (the official ``_make_single_layer``)."""
    return BasicBlock(cin, planes, 1, _shortcut(BasicBlock, cin, planes, 1), relu=False)


class SegHead(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv1x1 (the official ``segmenthead`` without resizing)."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.bn1 = _bn(cin)
        self.conv1 = nn.Conv2d(cin, mid, 3, 1, 1, bias=False)
        self.bn2 = _bn(mid)
        self.conv2 = nn.Conv2d(mid, cout, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(F.relu(self.bn2(self.conv1(F.relu(self.bn1(x))))))


def _bn_relu_conv(
    cin: int, cout: int, k: int = 1, groups: int = 1, pool: nn.Module | None = None
) -> nn.Sequential:
    layers = [] if pool is None else [pool]
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False)
    return nn.Sequential(*layers, _bn(cin), nn.ReLU(), conv)


class _PyramidPooling(nn.Module):
    """The pooled scales shared by DAPPM and PAPPM: 5/2, 9/4, 17/8 average pooling and global pooling."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__()
        self.scale1 = _bn_relu_conv(cin, branch, pool=nn.AvgPool2d(5, 2, 2))
        self.scale2 = _bn_relu_conv(cin, branch, pool=nn.AvgPool2d(9, 4, 4))
        self.scale3 = _bn_relu_conv(cin, branch, pool=nn.AvgPool2d(17, 8, 8))
        self.scale4 = _bn_relu_conv(cin, branch, pool=nn.AdaptiveAvgPool2d((1, 1)))
        self.scale0 = _bn_relu_conv(cin, branch)
        self.compression = _bn_relu_conv(branch * 5, cout)
        self.shortcut = _bn_relu_conv(cin, cout)

    def pooled(self, x: Tensor) -> list[Tensor]:
        size = x.shape[-2:]
        return [_up(s(x), size) for s in (self.scale1, self.scale2, self.scale3, self.scale4)]


class DAPPM(_PyramidPooling):
    """Deep aggregation PPM (PIDNet-L): each pooled scale is added to the previous one and refined."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__(cin, branch, cout)
        for i in range(1, 5):
            setattr(self, f"process{i}", _bn_relu_conv(branch, branch, 3))

    def forward(self, x: Tensor) -> Tensor:
        outs = [self.scale0(x)]
        for i, p in enumerate(self.pooled(x), start=1):
            outs.append(getattr(self, f"process{i}")(p + outs[-1]))
        return self.compression(torch.cat(outs, 1)) + self.shortcut(x)


class PAPPM(_PyramidPooling):
    """Parallel aggregation PPM (PIDNet-S/M): every pooled scale is added to the unpooled one, refined together
    by one grouped convolution."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__(cin, branch, cout)
        self.scale_process = _bn_relu_conv(branch * 4, branch * 4, 3, groups=4)

    def forward(self, x: Tensor) -> Tensor:
        base = self.scale0(x)
        scales = self.scale_process(torch.cat([p + base for p in self.pooled(x)], 1))
        return self.compression(torch.cat([base, scales], 1)) + self.shortcut(x)


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: ``sigma = sigmoid(<f_x(x), up(f_y(y))>)`` per pixel,
    ``out = (1 - sigma) * x + sigma * up(y)``."""

    def __init__(self, cin: int, mid: int):
        super().__init__()
        self.f_x = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.f_y = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        size = x.shape[-2:]
        sigma = torch.sigmoid((self.f_x(x) * _up(self.f_y(y), size)).sum(1, keepdim=True))
        return (1 - sigma) * x + sigma * _up(y, size)


class LightBag(nn.Module):
    """Boundary-attention fusion of P, I under D (PIDNet-S/M): ``conv_p((1-s) i + p) + conv_i(i + s p)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_p = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.conv_i = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        s = torch.sigmoid(d)
        return self.conv_p((1 - s) * i + p) + self.conv_i(i + s * p)


class Bag(nn.Module):
    """Boundary-attention fusion (PIDNet-L): ``conv(s p + (1-s) i)``, ``s = sigmoid(d)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _bn_relu_conv(cin, cout, 3)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        s = torch.sigmoid(d)
        return self.conv(s * p + (1 - s) * i)


class PIDNet(nn.Module):
    """The official PIDNet; ``forward`` returns the I-branch logits at 1/8 of the input resolution."""

    def __init__(self, m: int, n: int, planes: int, ppm_planes: int, head_planes: int, num_classes: int):
        super().__init__()
        p = planes
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, p, 3, 2, 1), _bn(p), nn.ReLU(), nn.Conv2d(p, p, 3, 2, 1), _bn(p), nn.ReLU()
        )
        # I branch
        self.layer1 = stage(BasicBlock, p, p, m)
        self.layer2 = stage(BasicBlock, p, 2 * p, m, 2)
        self.layer3 = stage(BasicBlock, 2 * p, 4 * p, n, 2)
        self.layer4 = stage(BasicBlock, 4 * p, 8 * p, n, 2)
        self.layer5 = stage(Bottleneck, 8 * p, 8 * p, 2, 2)
        # P branch
        self.compression3 = nn.Sequential(nn.Conv2d(4 * p, 2 * p, 1, bias=False), _bn(2 * p))
        self.compression4 = nn.Sequential(nn.Conv2d(8 * p, 2 * p, 1, bias=False), _bn(2 * p))
        self.pag3 = PagFM(2 * p, p)
        self.pag4 = PagFM(2 * p, p)
        self.layer3_ = stage(BasicBlock, 2 * p, 2 * p, m)
        self.layer4_ = stage(BasicBlock, 2 * p, 2 * p, m)
        self.layer5_ = stage(Bottleneck, 2 * p, 2 * p, 1)
        # D branch
        if m == 2:
            self.layer3_d = single(2 * p, p)
            self.layer4_d = stage(Bottleneck, p, p, 1)
            self.diff3 = nn.Sequential(nn.Conv2d(4 * p, p, 3, 1, 1, bias=False), _bn(p))
            self.spp = PAPPM(16 * p, ppm_planes, 4 * p)
            self.dfm = LightBag(4 * p, 4 * p)
        else:
            self.layer3_d = single(2 * p, 2 * p)
            self.layer4_d = single(2 * p, 2 * p)
            self.diff3 = nn.Sequential(nn.Conv2d(4 * p, 2 * p, 3, 1, 1, bias=False), _bn(2 * p))
            self.spp = DAPPM(16 * p, ppm_planes, 4 * p)
            self.dfm = Bag(4 * p, 4 * p)
        self.diff4 = nn.Sequential(nn.Conv2d(8 * p, 2 * p, 3, 1, 1, bias=False), _bn(2 * p))
        self.layer5_d = stage(Bottleneck, 2 * p, 2 * p, 1)
        # heads: P and D only for the training loss
        self.seghead_p = SegHead(2 * p, head_planes, num_classes)
        self.seghead_d = SegHead(2 * p, p, 1)
        self.final_layer = SegHead(4 * p, head_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        size8 = (x.shape[-2] // 8, x.shape[-1] // 8)
        x = F.relu(self.layer2(F.relu(self.layer1(self.conv1(x)))))
        x_p, x_d = self.layer3_(x), self.layer3_d(x)
        x = F.relu(self.layer3(x))
        x_p = self.pag3(x_p, self.compression3(x))
        x_d = x_d + _up(self.diff3(x), size8)
        x = F.relu(self.layer4(x))
        x_p, x_d = self.layer4_(F.relu(x_p)), self.layer4_d(F.relu(x_d))
        x_p = self.pag4(x_p, self.compression4(x))
        x_d = x_d + _up(self.diff4(x), size8)
        x_p, x_d = self.layer5_(F.relu(x_p)), self.layer5_d(F.relu(x_d))
        x = _up(self.spp(self.layer5(x)), size8)
        return self.final_layer(self.dfm(x_p, x, x_d))


class PIDNetVictim(Victim):
    """``forward(x RGB in [0,1]) -> logits [B, K, H, W]``: the I-branch logits resized to the input."""

    def forward(self, x: Tensor) -> Tensor:
        out = self.net((x - self.mean) / self.std)
        return _up(out, x.shape[-2:]) if out.shape[-2:] != x.shape[-2:] else out


def released_to_net(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """The network's ``state_dict`` from a released PIDNet file: ``model.*`` keys without the prefix; the loss
    buffers (:data:`IGNORED_PREFIXES`) dropped; any other key is an error."""
    net, unknown = {}, []
    for k, v in state.items():
        if k.startswith("model."):
            net[k[len("model.") :]] = v
        elif not any(k.startswith(p) for p in IGNORED_PREFIXES):
            unknown.append(k)
    if unknown or not net:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' is not in PIDNet's released layout (keys 'model.*' of its FullModel"
            f"{'; unexpected ' + str(unknown[:5]) if unknown else ''}). Download it from {RELEASES}."
        )
    return net


class PIDNetBuilder(VictimBuilder):
    Config = PIDNetConfig
    trainable = False  # the published checkpoint (victim.checkpoint), not trained by advlab

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        m, n, planes, ppm, head = VARIANTS[self.params.variant]
        return PIDNet(m, n, planes, ppm, head, num_outputs)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return PIDNetVictim(self.build_net(info, num_outputs), IMAGENET_MEAN, IMAGENET_STD)

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return released_to_net(load_state_dict_file(path), path)


for _variant, _config in PIDNET_CONFIGS.items():
    VICTIMS.register(f"pidnet_{_variant}_official")(
        type(f"PIDNet{_variant.upper()}OfficialVictim", (PIDNetBuilder,), {"Config": _config})
    )

__all__ = ["PIDNet", "PIDNetBuilder", "PIDNetVictim", "VARIANTS", "released_to_net"]
