"""FAN: the Face Alignment Network of Bulat & Tzimiropoulos ("How far are we from solving the 2D & 3D face
alignment problem?", ICCV 2017), as published in the ``face-alignment`` package (1adrianb/face-alignment,
``face_alignment/models.py`` / ``models/fan.py``), the landmark victim of SemanticAdv's section 4.3.

Architecture (2DFAN-4 with the defaults): a stem ``conv1`` (7x7, stride 2, 64 channels, with bias) -> ``bn1`` ->
ReLU -> ``conv2`` ConvBlock(64, 128) -> 2x average pool -> ``conv3`` ConvBlock(128, 128) -> ``conv4``
ConvBlock(128, 256); then ``num_modules`` stacks ``i``, each an hour-glass ``m<i>`` (depth 4: per level ``b1_<l>``
on the full-resolution branch, 2x average pool, ``b2_<l>``, the next level or ``b2_plus_1`` at the bottom, ``b3_<l>``,
nearest 2x up-sampling, sum) -> ``top_m_<i>`` ConvBlock -> ``conv_last<i>`` (1x1) -> ``bn_end<i>`` -> ReLU -> ``l<i>``
(1x1 to 68 heatmaps); between stacks ``bl<i>`` (1x1 on the features) and ``al<i>`` (1x1 from the heatmaps) are
added to the stack's input. The ConvBlock is the hierarchical, parallel and multi-scale block of Bulat &
Tzimiropoulos 2017a: three pre-activated 3x3 convolutions to out/2, out/4, out/4 channels, concatenated, plus
the (BN-ReLU-1x1 ``downsample`` when the width changes) residual. The victim returns the last stack's heatmaps.
Early package versions used max pooling where the later ones (those shipped with ``2DFAN4-11f355bf06.pth.tar``
since v1.0) use average pooling; advlab follows the later ones.

Published weights (read from a local ``victim.checkpoint``; the input is the face crop scaled to [0, 1], the
package's ``x / 255``, resized to 256x256 here):

- ``2DFAN4-11f355bf06.pth.tar`` (face-alignment up to 1.2; ``api.py``'s ``models_urls['2DFAN-4']``): a plain
  ``state_dict`` of ``FAN(4)`` (``load_state_dict(load_url(...))``, no wrapper): keys such as ``conv1.weight``
  [64, 3, 7, 7], ``conv1.bias`` [64], ``m0.b1_4.bn1.weight`` [256], ``m3.b2_plus_1.conv3.weight`` [64, 64, 3, 3],
  ``l3.weight`` [68, 256, 1, 1], ``al2.weight`` [256, 68, 1, 1]; ``num_batches_tracked`` counters may be absent
  (files written before PyTorch 0.4.1 have none; they do not affect evaluation) and are then filled with 0;
- ``2DFAN4-cd938726ad.zip`` (face-alignment >= 1.3, and ``2DFAN4_1.6-c827573f02.zip``): a TorchScript archive of
  the same module (``torch.jit.load``); advlab reads its ``state_dict()`` (TorchScript archives run no pickled
  Python code) and checks it exactly like the ``.pth.tar``. Only the ``.pth.tar`` layout is tested against a
  fixture written key by key; the archive path is the same check on the archive's own parameter names.

Every key of the file must be a parameter or buffer of the configured network with the same shape, and every
parameter must be in the file (:func:`check_fan_weights`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_weights_only, published_layout_mismatch
from advlab.victims.configs import FANConfig  # noqa: F401

WHERE = (
    " (download 2DFAN4-11f355bf06.pth.tar from https://www.adrianbulat.com/downloads/python-fan/ "
    "(face-alignment's 2DFAN-4); see docs/papers/semanticadv.md)"
)


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """The hierarchical, parallel, multi-scale residual block (Bulat & Tzimiropoulos 2017a)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = conv3x3(quarter, quarter)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))
            if cin != cout
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], dim=1) + residual


class HourGlass(nn.Module):
    """Recursive hour-glass of ``depth`` levels (module names ``b1_<l>``, ``b2_<l>``, ``b2_plus_1``, ``b3_<l>``)."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        for level in range(depth, 0, -1):  # the published registration order: b1, b2 of each level, down
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def level(self, n: int, x: Tensor) -> Tensor:
        up = self._modules[f"b1_{n}"](x)
        low = self._modules[f"b2_{n}"](F.avg_pool2d(x, 2, stride=2))
        low = self.level(n - 1, low) if n > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{n}"](low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        return self.level(self.depth, x)


class FAN(nn.Module):
    """Stacked hour-glasses -> ``num_landmarks`` heatmaps of the last stack ``[B, N, H/4, W/4]`` (stem stride 2)."""

    def __init__(
        self,
        num_modules: int = 4,
        num_landmarks: int = 68,
        features: int = 256,
        hg_depth: int = 4,
        stem_stride: int = 2,
        input_size: int | None = None,
    ):
        super().__init__()
        self.num_modules, self.input_size = num_modules, input_size
        c1, c2 = features // 4, features // 2
        self.conv1 = nn.Conv2d(3, c1, kernel_size=7, stride=stem_stride, padding=3)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = ConvBlock(c1, c2)
        self.conv3 = ConvBlock(c2, c2)
        self.conv4 = ConvBlock(c2, features)
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(hg_depth, features))
            self.add_module(f"top_m_{i}", ConvBlock(features, features))
            self.add_module(f"conv_last{i}", nn.Conv2d(features, features, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(features))
            self.add_module(f"l{i}", nn.Conv2d(features, num_landmarks, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(features, features, 1))
                self.add_module(f"al{i}", nn.Conv2d(num_landmarks, features, 1))

    def stacks(self, x: Tensor) -> list[Tensor]:
        """The heatmaps of every stack (the published ``forward``'s list)."""
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
            )
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.avg_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        previous, outputs = x, []
        for i in range(self.num_modules):
            ll = self._modules[f"top_m_{i}"](self._modules[f"m{i}"](previous))
            ll = F.relu(self._modules[f"bn_end{i}"](self._modules[f"conv_last{i}"](ll)))
            heatmaps = self._modules[f"l{i}"](ll)
            outputs.append(heatmaps)
            if i < self.num_modules - 1:
                previous = previous + self._modules[f"bl{i}"](ll) + self._modules[f"al{i}"](heatmaps)
        return outputs

    def forward(self, x: Tensor) -> Tensor:
        return self.stacks(x)[-1]


def is_torchscript_archive(path: Path) -> bool:
    """A TorchScript archive is a zip file holding ``<name>/code/`` and ``<name>/constants.pkl``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_fan_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """The weights of a published FAN file: the ``.pth.tar`` state_dict or the TorchScript ``.zip``'s."""
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        raise CheckpointError(f"victim.checkpoint: file '{p}' does not exist{WHERE}")
    if is_torchscript_archive(p):
        try:
            module = torch.jit.load(str(p), map_location="cpu")
        except Exception as exc:
            raise CheckpointError(
                f"victim.checkpoint: '{p}' is a zip file but not a readable TorchScript archive ({exc})"
            ) from None
        return {k: v.detach() for k, v in module.state_dict().items()}
    obj = load_weights_only(p, "victim.checkpoint", WHERE)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a training checkpoint around the weights
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(f"victim.checkpoint: '{p}' does not hold a FAN state_dict of tensors{WHERE}")
    return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel prefix, if any


def check_fan_weights(net: FAN, state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` checked key by key and shape by shape against ``net``: every file key must be used and every
    parameter present; absent batch-norm counters are filled with 0."""
    state, mismatch = published_layout_mismatch(net.state_dict(), state)
    if mismatch:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' does not fit victim=fan with num_modules={net.num_modules} ({mismatch}); "
            "the published 2DFAN-4 needs num_modules=4, features=256, hg_depth=4, stem_stride=2"
        )
    return state


@VICTIMS.register("fan")
class FANVictim(VictimBuilder):
    """FAN heatmap regressor; trained by advlab on embedded landmark data, or the published 2DFAN-4 weights."""

    Config = FANConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        p = self.params
        size = p.input_size or info.image_shape[1]
        down = (2 * p.stem_stride) * 2**p.hg_depth
        if size % down:
            raise ConfigError(
                f"victim.hg_depth: the {size}x{size} input does not halve {p.hg_depth} times after the stem; lower "
                "victim.hg_depth or set victim.input_size"
            )
        return FAN(p.num_modules, num_outputs, p.features, p.hg_depth, p.stem_stride, p.input_size)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), tuple(self.params.mean), tuple(self.params.std))

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """The published file's weights, checked against the configured network (68 landmarks)."""
        state = read_fan_file(path)
        p = self.params
        with torch.device("meta"):
            net = FAN(p.num_modules, 68, p.features, p.hg_depth, p.stem_stride, p.input_size)
        return check_fan_weights(net, state, path)
