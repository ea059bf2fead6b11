"""What the BiSeNet victims in CoinCheung's layout (github.com/CoinCheung/BiSeNet) share: the released files,
their input normalisation, the layers both networks are built from and the loader that maps a released
``state_dict`` onto the network.

Released Cityscapes files (``releases/download/0.0.0/``): ``model_final_v1_city_new.pth`` (BiSeNetV1) and
``model_final_v2_city.pth`` (BiSeNetV2) -- plain ``state_dict`` s of the networks built with
``aux_mode='train'``, so they carry the training-time auxiliary heads too; the repository's own evaluation
builds ``aux_mode='eval'`` and loads with ``strict=False``, i.e. drops them. advlab does the same, by name (every
other key must match). Input: RGB in [0, 1] normalised with the Cityscapes statistics the repository's data
loader uses (``mean=(0.3257, 0.3690, 0.3223)``, ``std=(0.2112, 0.2148, 0.2115)``); the networks upsample their
logits to the input resolution themselves (bilinear, 8x).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from advlab.errors import CheckpointError
from advlab.victims.base import Victim, load_state_dict_file

RELEASES = "https://github.com/CoinCheung/BiSeNet/releases/tag/0.0.0"
CITY_MEAN = (0.3257, 0.3690, 0.3223)
CITY_STD = (0.2112, 0.2148, 0.2115)


class ConvBNReLU(nn.Module):
    """conv (no bias) - BN - ReLU, keys ``conv`` / ``bn``."""

    def __init__(
        self, cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None, groups=1
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, k, stride, k // 2 if padding is None else padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class CoinCheungVictim(Victim):
    """``forward(x RGB in [0,1]) -> logits [B, K, H, W]`` (already at the input resolution)."""

    def __init__(self, net: nn.Module):
        super().__init__(net, CITY_MEAN, CITY_STD)

    def forward(self, x: Tensor) -> Tensor:
        out = self.net((x - self.mean) / self.std)
        if out.shape[-2:] != x.shape[-2:]:  # the repository's evaluation resizes with align_corners=True
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return out


def released_to_net(
    state: dict[str, Tensor], aux_prefixes: tuple[str, ...], source: str
) -> dict[str, Tensor]:
    """The released ``state_dict`` without its auxiliary heads (``aux_prefixes``: training only)."""
    net = {k: v for k, v in state.items() if not k.startswith(aux_prefixes)}
    if not net:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' holds no network weights (download from {RELEASES})"
        )
    return net


def load_released(path: str, aux_prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    return released_to_net(load_state_dict_file(path), aux_prefixes, path)


__all__ = ["CITY_MEAN", "CITY_STD", "RELEASES", "CoinCheungVictim", "ConvBNReLU", "load_released"]
