"""A small VGG-style CNN (4 conv + 2 fc) for the embedded datasets; trains in seconds on CPU."""

from __future__ import annotations

from torch import nn

from advlab.data.info import DataInfo
from advlab.registry import check
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import SmallCNNConfig  # noqa: F401


def small_cnn(
    in_channels: int, num_outputs: int, size: int, width: int = 32, hidden: int = 256
) -> nn.Sequential:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    feat = size // 4
    return nn.Sequential(
        *block(in_channels, width),
        *block(width, width),
        nn.MaxPool2d(2),
        *block(width, 2 * width),
        *block(2 * width, 2 * width),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * feat * feat, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, num_outputs),
    )


@VICTIMS.register("smallcnn")
class SmallCNN(VictimBuilder):
    Config = SmallCNNConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        check(
            h == w and h % 4 == 0,
            "victim",
            f"smallcnn needs square inputs with size divisible by 4, got {h}x{w}",
        )
        return small_cnn(c, num_outputs, h, self.params.width, self.params.hidden)
