"""The label-map-conditioned image manipulation generator of Hong, Yan, Huang, Lee, "Learning Hierarchical
Semantic Image Manipulation through Structured Representations" (NeurIPS 2018), as SemanticAdv uses it for
street views (Qiu et al. 2020, section 4.4): an encoder from the image *context* and the semantic label map to
features (1024 x 16 x 16 for 256 x 256 Cityscapes regions), a decoder synthesising the image from them.

Hong et al.'s image generator fills a box of the image: its inputs are the image with the box erased (the
context), the label map (the layout, possibly manipulated: an object inserted or removed in the box) and the
box mask; it reconstructs the whole image. advlab's network (:class:`LabelMapGenerator`):

- encoder: ``[context (3), one-hot label map (K), box mask (1)]`` -> 7x7 conv (``base_channels``; ``edge_kernel``) -> ``n_down``
  stride-2 3x3 convs doubling the channels (the last gives ``feature_channels``) -> ``n_res`` residual blocks;
  instance norm + ReLU after every conv (pix2pixHD's global generator, which Hong et al. build on);
- decoder: ``n_res`` residual blocks -> ``n_down`` stride-2 transposed convs halving the channels -> 7x7 conv
  -> sigmoid (images in [0, 1]).

SemanticAdv interpolates ``(1 - alpha) * E(context, L) + alpha * E(context, L')`` between the features of the
original label map ``L`` and the manipulated ``L'`` and decodes. The decoder sees the features only, so every
change the manipulated label map causes passes through them.

Differences from the official generator (``pix2pixHD_condImg`` with ``netG global_twostream``: separate context
and label streams, skip connections, an output gate blending the synthesised box into the context): one
encoder stream on the concatenated inputs, no skips (with skips the decoder would read the unmanipulated
context past the interpolated features) and the whole image decoded. advlab trains it itself (L1,
loops/label_map_fit.py); the official ``pretrained_mask2image_city`` checkpoint is not loaded (its layout is
that of the two-stream network; see docs/papers/semanticadv.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.generators.stargan import InstanceNorm, ResidualBlock


def down_channels(base: int, feature: int, n_down: int) -> list[int]:
    """Channels after the first conv and after each down-sampling: doubling, the last one ``feature``."""
    chans = [min(base * 2**i, feature) for i in range(n_down)]
    return [*chans, feature]


class LabelMapGenerator(nn.Module):
    """``encode(context, labels, box) -> features``; ``decode(features) -> image``; ``forward`` = both."""

    def __init__(
        self,
        num_classes: int,
        base_channels: int = 64,
        feature_channels: int = 1024,
        n_down: int = 4,
        n_res: int = 2,
        edge_kernel: int = 7,
    ):
        super().__init__()
        self.num_classes, self.n_down = num_classes, n_down
        ch = down_channels(base_channels, feature_channels, n_down)
        enc: list[nn.Module] = [
            nn.Conv2d(3 + num_classes + 1, ch[0], edge_kernel, 1, edge_kernel // 2, bias=False),
            InstanceNorm(ch[0]),
            nn.ReLU(inplace=True),
        ]
        for i in range(n_down):
            enc += [
                nn.Conv2d(ch[i], ch[i + 1], 3, 2, 1, bias=False),
                InstanceNorm(ch[i + 1]),
                nn.ReLU(inplace=True),
            ]
        enc += [ResidualBlock(ch[-1]) for _ in range(n_res)]
        dec: list[nn.Module] = [ResidualBlock(ch[-1]) for _ in range(n_res)]
        for i in range(n_down, 0, -1):
            dec += [
                nn.ConvTranspose2d(ch[i], ch[i - 1], 3, 2, 1, output_padding=1, bias=False),
                InstanceNorm(ch[i - 1]),
                nn.ReLU(inplace=True),
            ]
        dec += [nn.Conv2d(ch[0], 3, edge_kernel, 1, edge_kernel // 2), nn.Sigmoid()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def inputs(self, context: Tensor, labels: Tensor, box: Tensor) -> Tensor:
        """The encoder's input: context image, one-hot label map (ignore / out-of-range labels -> all zero), box."""
        valid = (labels >= 0) & (labels < self.num_classes)
        onehot = (
            F.one_hot(torch.where(valid, labels, 0), self.num_classes).permute(0, 3, 1, 2).to(context.dtype)
        )
        onehot = onehot * valid[:, None].to(context.dtype)
        return torch.cat([context, onehot, box[:, None].to(context.dtype)], dim=1)

    def encode(self, context: Tensor, labels: Tensor, box: Tensor) -> Tensor:
        side = 2**self.n_down
        if context.shape[-1] % side or context.shape[-2] % side:
            raise ValueError(
                f"label-map generator: image sides {tuple(context.shape[-2:])} must be divisible by {side}"
            )
        return self.encoder(self.inputs(context, labels, box))

    def decode(self, features: Tensor) -> Tensor:
        return self.decoder(features)

    def forward(self, context: Tensor, labels: Tensor, box: Tensor) -> Tensor:
        return self.decode(self.encode(context, labels, box))


def erase_box(x: Tensor, box: Tensor) -> Tensor:
    """The context image: ``x`` with the box pixels (``box`` ``[B, H, W]`` bool) set to 0."""
    return x * (~box)[:, None].to(x.dtype)


def box_of(mask: Tensor, margin: float) -> Tensor:
    """Per sample, the bounding box of ``mask`` ``[B, H, W]`` grown by ``margin`` times its side on each side, as
    a bool map (an empty mask gives an empty box)."""
    b, h, w = mask.shape
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    ar_h = torch.arange(h, device=mask.device)
    ar_w = torch.arange(w, device=mask.device)
    big = torch.iinfo(torch.int64).max
    top = torch.where(rows, ar_h, big).amin(1)
    bottom = torch.where(rows, ar_h, -1).amax(1)
    left = torch.where(cols, ar_w, big).amin(1)
    right = torch.where(cols, ar_w, -1).amax(1)
    gh = ((bottom - top + 1).clamp(min=0).float() * margin).ceil().long()
    gw = ((right - left + 1).clamp(min=0).float() * margin).ceil().long()
    top, bottom, left, right = top - gh, bottom + gh, left - gw, right + gw
    in_rows = (ar_h[None] >= top[:, None]) & (ar_h[None] <= bottom[:, None])
    in_cols = (ar_w[None] >= left[:, None]) & (ar_w[None] <= right[:, None])
    return in_rows[:, :, None] & in_cols[:, None, :]


__all__ = ["LabelMapGenerator", "box_of", "down_channels", "erase_box"]
