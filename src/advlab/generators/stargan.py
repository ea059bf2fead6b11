"""StarGAN (Choi et al. 2018): an attribute-conditional image-to-image generator and its discriminator.

Generator: the attribute vector ``c`` [B, A] is tiled over the image and concatenated to it; 7x7 conv ->
two stride-2 4x4 down-sampling convs -> ``repeat_num`` residual blocks -> two stride-2 4x4 transposed convs
-> 7x7 conv -> tanh; instance norm (affine) and ReLU after every conv but the last. Discriminator (PatchGAN):
``repeat_num`` stride-2 4x4 convs with LeakyReLU(0.01), then a 3x3 conv giving the real/fake map and a conv
over the whole remaining map giving the attribute logits. SemanticAdv: conv_dim 128, 6 residual blocks, 17
attributes, 112x112 images.

Parameter names follow the StarGAN reference layout (``main.<i>...``, ``conv1``, ``conv2``), so published
``*-G.ckpt`` / ``*-D.ckpt`` state dicts load directly; SemanticAdv's released ``200000-G.ckpt`` (its
``Generator_dissection``, layers named ``conv1``, ``norm1``, ``conv2_1`` ... ``res1`` ... ``conv4``) is mapped onto
that layout by :func:`from_dissection_layout`. Instance norm always normalises with the statistics of
the input (also in eval mode); the running statistics the reference layout stores are kept only so such
checkpoints load.

:class:`AttributeGenerator` wraps the network for advlab's conventions (images in [0, 1], the StarGAN
network works in [-1, 1]) and splits it at a named feature layer into ``encode`` / ``decode`` for SemanticAdv's
feature-map interpolation at SemanticAdv's split points ``f-2`` (second down-sampling conv + norm, before its
ReLU), ``f-1`` (after the first residual block), ``f0`` (after the last residual block, the paper's default;
also ``last_res``), ``f1`` / ``f2`` (first / second up-sampling transposed conv + norm, before its ReLU), or
``res<k>`` (after the k-th residual block) and ``up1`` (after the first up-sampling block's ReLU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.errors import CheckpointError, ConfigError


class InstanceNorm(nn.InstanceNorm2d):
    """Affine instance norm that always uses the input's statistics (running buffers kept for loading)."""

    def __init__(self, channels: int):
        super().__init__(channels, affine=True, track_running_stats=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            InstanceNorm(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            InstanceNorm(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.main(x)


class StarGANGenerator(nn.Module):
    def __init__(self, c_dim: int, conv_dim: int = 64, repeat_num: int = 6):
        super().__init__()
        self.c_dim, self.conv_dim, self.repeat_num = c_dim, conv_dim, repeat_num
        layers: list[nn.Module] = [
            nn.Conv2d(3 + c_dim, conv_dim, 7, 1, 3, bias=False),
            InstanceNorm(conv_dim),
            nn.ReLU(inplace=True),
        ]
        ch = conv_dim
        for _ in range(2):
            layers += [
                nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False),
                InstanceNorm(ch * 2),
                nn.ReLU(inplace=True),
            ]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(repeat_num)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                InstanceNorm(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.Conv2d(ch, 3, 7, 1, 3, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def split_index(self, layer: str) -> int:
        """Index into ``main`` where the named feature layer ends (encoder = ``main[:i]``)."""
        first_res = 9  # main: conv, norm, relu, 2 x (down conv, norm, relu), residual blocks, ...
        after_res = first_res + self.repeat_num
        official = {  # SemanticAdv's split points (Generator_dissection h02, h01, h0, h1, h2)
            "f-2": 8,  # 2nd down-sampling conv + norm, before its ReLU (before the residual blocks)
            "f-1": first_res + 1,  # after the first residual block
            "f0": after_res,  # after the last residual block (the paper's default)
            "f1": after_res + 2,  # 1st up-sampling transposed conv + norm, before its ReLU
            "f2": after_res + 5,  # 2nd up-sampling transposed conv + norm, before its ReLU
        }
        if layer in official:
            return official[layer]
        if layer == "last_res":
            return after_res
        if (
            layer == "up1"
        ):  # after the 1st up-sampling block's ReLU (advlab's older split; f1 is the official)
            return after_res + 3
        if layer.startswith("res") and layer[3:].isdigit() and 1 <= int(layer[3:]) <= self.repeat_num:
            return first_res + int(layer[3:])
        raise ConfigError(
            f"feature layer '{layer}' does not exist in a StarGAN generator with {self.repeat_num} residual "
            f"blocks; use f-2, f-1, f0, f1, f2 (SemanticAdv's split points), last_res, up1 or "
            f"res1..res{self.repeat_num}"
        )

    @staticmethod
    def with_condition(x: Tensor, c: Tensor) -> Tensor:
        c = c.to(x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        return torch.cat([x, c], dim=1)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.main(self.with_condition(x, c))


class StarGANDiscriminator(nn.Module):
    def __init__(self, image_size: int, c_dim: int, conv_dim: int = 64, repeat_num: int = 6):
        super().__init__()
        if image_size % (2**repeat_num):
            raise ConfigError(
                f"discriminator: image size {image_size} is not divisible by 2^repeat_num = {2**repeat_num}; "
                f"use d_repeat_num <= {int(math.log2(image_size & -image_size))}"
            )
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        ch = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            ch *= 2
        self.main = nn.Sequential(*layers)
        self.conv1 = nn.Conv2d(ch, 1, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(ch, c_dim, image_size // 2**repeat_num, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.main(x)
        return self.conv1(h), self.conv2(h).flatten(1)


class AttributeGenerator(nn.Module):
    """A StarGAN generator on advlab images in [0, 1]: ``G(x, c)``, ``encode(x, c)`` -> feature map,
    ``decode(f)`` -> image, split at ``feature_layer``."""

    def __init__(self, net: StarGANGenerator, feature_layer: str = "last_res"):
        super().__init__()
        self.net = net
        self.feature_layer = feature_layer
        self.split = net.split_index(feature_layer)

    @property
    def c_dim(self) -> int:
        return self.net.c_dim

    def _check(self, c: Tensor) -> None:
        if c.shape[1] != self.net.c_dim:
            raise ConfigError(
                f"generator expects {self.net.c_dim} attributes, got a condition with {c.shape[1]}: the "
                "dataset's attribute list and the generator (its config or checkpoint) disagree"
            )

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        self._check(c)
        return (self.net(x * 2 - 1, c) + 1) / 2

    def encode(self, x: Tensor, c: Tensor) -> Tensor:
        self._check(c)
        return self.net.main[: self.split](self.net.with_condition(x * 2 - 1, c))

    def decode(self, f: Tensor) -> Tensor:
        return (self.net.main[self.split :](f) + 1) / 2


#: SemanticAdv's released generator (``200000-G.ckpt``) is saved from its ``Generator_dissection``: the same
#: layers under their own names; ``main.<i>`` is the index of each in the reference ``nn.Sequential``
DISSECTION_TO_MAIN = {
    "conv1": 0, "norm1": 1, "conv2_1": 3, "norm2_1": 4, "conv2_2": 6, "norm2_2": 7,
    **{f"res{k}": 8 + k for k in range(1, 7)},
    "conv3_1": 15, "norm3_1": 16, "conv3_2": 18, "norm3_2": 19, "conv4": 21,
}  # fmt: skip


def from_dissection_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A ``Generator_dissection`` state_dict (``conv1.weight``, ``res3.main.0.weight``, ``conv4.weight``, ...) in
    the reference ``main.<i>`` layout; other state_dicts are returned unchanged. Every key is mapped (an unknown
    layer name is an error), so nothing of the file is dropped."""
    if "conv1.weight" not in state or "main.0.weight" in state:
        return state
    out = {}
    for k, v in state.items():
        layer, rest = k.split(".", 1)
        if layer not in DISSECTION_TO_MAIN:
            raise CheckpointError(
                f"generator checkpoint: '{k}' is not a layer of SemanticAdv's Generator_dissection"
            )
        out[f"main.{DISSECTION_TO_MAIN[layer]}.{rest}"] = v
    return out


def checkpoint_c_dim(state: dict[str, Tensor]) -> int:
    """Number of attributes a StarGAN generator state_dict was trained with (input channels - 3)."""
    state = from_dissection_layout(state)
    if "main.0.weight" not in state:
        raise CheckpointError(
            "generator checkpoint has no 'main.0.weight': not a StarGAN generator state_dict"
        )
    return int(state["main.0.weight"].shape[1]) - 3


def load_generator_state(net: StarGANGenerator, state: dict[str, Tensor], source: str) -> None:
    """Load a generator state_dict (reference or SemanticAdv's dissection layout), with a clear message when its
    attribute count or size differs."""
    state = from_dissection_layout(state)
    c_file = checkpoint_c_dim(state)
    if c_file != net.c_dim:
        raise ConfigError(
            f"generator checkpoint '{source}' was trained with {c_file} attributes but the config uses "
            f"{net.c_dim} (dataset.attributes); list the generator's attributes, in its order"
        )
    own = net.state_dict()
    # checkpoints written before PyTorch 0.4.1 have no norm-layer batch counters; they carry no information
    state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
    bad = [k for k in own if k not in state or state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own]
    if bad or extra:
        raise CheckpointError(
            f"generator checkpoint '{source}' does not fit a StarGAN generator with conv_dim {net.conv_dim} and "
            f"{net.repeat_num} residual blocks (mismatched keys {bad[:3]}, unexpected {extra[:3]}); check "
            "generator.conv_dim / generator.repeat_num"
        )
    net.load_state_dict(state)
