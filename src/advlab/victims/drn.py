"""DRN-D-22 for semantic segmentation (Yu, Koltun, Funkhouser, "Dilated Residual Networks", CVPR 2017), in the
layout of the authors' ``fyu/drn`` repository (``drn.py`` ``drn_d_22`` inside ``segment.py``'s ``DRNSeg``), so
the released ``drn_d_22_cityscapes.pth`` loads key by key.

``base`` (the DRN's children without ``avgpool`` / ``fc``), eight levels with channels ``c0..c7`` (published:
16, 32, 64, 128, 256, 512, 512, 512), output stride 8:

- ``base.0``: 7x7 conv (3 -> c0) + BN + ReLU; ``base.1``: 3x3 conv + BN + ReLU; ``base.2``: 3x3 stride-2 conv
  (c0 -> c1) + BN + ReLU (DRN-D replaces DRN-C's first residual blocks by plain convs);
- ``base.3`` / ``base.4``: two basic residual blocks each, the first with stride 2 (1/4, 1/8) and a 1x1 conv +
  BN ``downsample`` shortcut; ``base.5`` / ``base.6``: two blocks each at dilation 2 / 4 instead of striding
  (``downsample`` when the channel count changes);
- ``base.7`` / ``base.8``: 3x3 conv + BN + ReLU at dilation 2 / 1 (DRN-D's degridding layers, no residual);

then ``seg`` (1x1 conv to the classes, with bias) and ``up``: a per-class transposed conv (kernel 16, stride 8,
padding 4, no bias) fixed to bilinear interpolation weights (``fill_up_weights``) and never trained. ``DRNSeg``
returns ``log_softmax(up(seg(base(x))))``; advlab's victim returns ``up(seg(base(x)))`` (the logits: the
log-softmax only shifts every pixel's scores by one constant, so arg-max, cross-entropy and the Houdini score
gaps are the same). Normalisation: the Cityscapes ``info.json`` of the repository (``victim.mean`` / ``std``).

The released file is ``DRNSeg.state_dict()`` as saved by ``segment.py`` (``--pretrained`` loads it with
``load_state_dict``): keys ``base.<level>.<...>``, ``seg.weight``, ``seg.bias``, ``up.weight``. :func:`load_released`
also accepts a ``--resume`` training checkpoint (``{'state_dict': ...}`` of the ``DataParallel`` wrapper,
``module.`` prefixes). Every key is consumed; BatchNorm ``num_batches_tracked`` counters, which files written
before PyTorch 0.4.1 do not have, are set to 0 (they only matter for BN with ``momentum=None``, unused here).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_weights_only
from advlab.victims.configs import DRNConfig  # noqa: F401

#: residual blocks / conv layers per level of DRN-D-22 (``drn_d_22``: [1, 1, 2, 2, 2, 2, 1, 1])
DRN_D_22_LAYERS = (1, 1, 2, 2, 2, 2, 1, 1)
WHERE = " (drn_d_22_cityscapes.pth from http://go.yf.io/drn-cityscapes-models; docs/papers/semanticadv.md)"


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    pad = dilation * (kernel // 2)
    return [
        nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN (dilations ``d1`` / ``d2``), identity or 1x1-conv + BN shortcut, ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        d1, d2 = dilation
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, d1, dilation=d1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, d2, dilation=d2, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def residual_level(cin: int, cout: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """``_make_layer`` with ``new_level=False`` at dilated levels: every block at ``dilation``."""
    layers = [BasicBlock(cin, cout, stride, (dilation, dilation))]
    layers += [BasicBlock(cout, cout, 1, (dilation, dilation)) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


def conv_level(cin: int, cout: int, convs: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """``_make_conv_layers``: ``convs`` times 3x3 conv + BN + ReLU, the first with ``stride``."""
    mods: list[nn.Module] = []
    for i in range(convs):
        mods += conv_bn_relu(cin if i == 0 else cout, cout, 3, stride if i == 0 else 1, dilation)
    return nn.Sequential(*mods)


def bilinear_up_weights(weight: Tensor) -> None:
    """``fill_up_weights``: the separable bilinear kernel of a transposed conv, the same for every class."""
    k = weight.shape[-1]
    f = math.ceil(k / 2)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    ramp = 1 - (torch.arange(k, dtype=torch.float64) / f - c).abs()
    weight.copy_((ramp[:, None] * ramp[None, :]).to(weight.dtype).expand_as(weight))


class DRNSeg(nn.Module):
    """DRN-D-22 + 1x1 classifier + fixed bilinear 8x up-sampling; ``forward -> logits [B, K, H, W]``."""

    def __init__(self, num_classes: int, channels: list[int] | tuple[int, ...]):
        super().__init__()
        c, n = list(channels), DRN_D_22_LAYERS
        self.base = nn.Sequential(
            nn.Sequential(*conv_bn_relu(3, c[0], 7)),
            conv_level(c[0], c[0], n[0]),
            conv_level(c[0], c[1], n[1], stride=2),
            residual_level(c[1], c[2], n[2], stride=2, dilation=1),
            residual_level(c[2], c[3], n[3], stride=2, dilation=1),
            residual_level(c[3], c[4], n[4], stride=1, dilation=2),
            residual_level(c[4], c[5], n[5], stride=1, dilation=4),
            conv_level(c[5], c[6], n[6], dilation=2),
            conv_level(c[6], c[7], n[7], dilation=1),
        )
        self.seg = nn.Conv2d(c[7], num_classes, 1, bias=True)
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 16, 8, 4, groups=num_classes, bias=False)
        with torch.no_grad():
            bilinear_up_weights(self.up.weight)
        self.up.weight.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.up(self.seg(self.base(x)))
        if out.shape[-2:] != x.shape[-2:]:  # sides not divisible by 8
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


def released_state(obj: object, source: str) -> dict[str, Tensor]:
    """The ``DRNSeg`` state_dict in a released / training file: unwrap ``{'state_dict': ...}``, drop
    ``DataParallel``'s ``module.`` prefix, add the BN counters files from before PyTorch 0.4.1 lack."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # segment.py's checkpoint_*.pth.tar (epoch, arch, best_prec1 unused)
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"victim.checkpoint: '{source}' holds no DRNSeg state_dict of tensors{WHERE}")
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}
    foreign = sorted(k for k in state if not k.startswith(("base.", "seg.", "up.")))
    if foreign:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' has keys outside DRNSeg's base / seg / up, e.g. {foreign[:3]}: not a "
            f"fyu/drn segmentation checkpoint{WHERE}"
        )
    for k in [k for k in state if k.endswith(".running_mean")]:
        state.setdefault(k[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0))
    return state


def load_released(path: str) -> dict[str, Tensor]:
    return released_state(load_weights_only(path, "victim.checkpoint", WHERE), path)


@VICTIMS.register("drn_d_22")
class DRNBuilder(VictimBuilder):
    Config = DRNConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        ch = info.image_shape[0]
        check(ch == 3, "victim", f"drn_d_22 needs 3-channel RGB images (dataset has {ch} channels)")
        return DRNSeg(num_outputs, self.params.channels)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), tuple(self.params.mean), tuple(self.params.std))

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        return load_released(path)


__all__ = ["DRNBuilder", "DRNSeg", "bilinear_up_weights", "load_released", "released_state"]
