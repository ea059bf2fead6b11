"""``victim=alexnet_cifar``: the CIFAR-10 AlexNet of Laidlaw et al. 2021 (``CifarAlexNet`` in perceptual-advex),
the network their CIFAR-10 LPIPS (PAT-AlexNet, PPGD/LPA evaluation) and their mCE baseline are built on.

Architecture (the authors' layer indices, so their checkpoint maps one to one)::

    features:   0 Conv(C, 64, 3, stride 2, pad 1)   1 ReLU   2 MaxPool(2)
                3 Conv(64, 192, 3, pad 1)           4 ReLU   5 MaxPool(2)
                6 Conv(192, 384, 3, pad 1)          7 ReLU
                8 Conv(384, 256, 3, pad 1)          9 ReLU
               10 Conv(256, 256, 3, pad 1)         11 ReLU  12 MaxPool(2)
    classifier: 0 Dropout  1 Linear(256 * s * s, 4096)  2 ReLU  3 Dropout  4 Linear(4096, 4096)  5 ReLU
                6 Linear(4096, num_classes)

``s`` is the trunk's output size (2 at 32x32; 1 at the embedded digits' 16x16). The authors feed it images
normalised with the ImageNet mean/std (their ``AlexNetFeatureModel``'s normaliser), whatever the dataset; the
victim does the same for RGB inputs. The LPIPS features are the five ReLU outputs (1, 4, 7, 9, 11), as for the
ImageNet AlexNet. Trained by advlab (``victim=alexnet_cifar``) or loaded from the authors' ``alexnet_cifar.pt``
(``victim.checkpoint=<file>``; layout in :mod:`advlab.victims.perceptual_advex`).
"""

from __future__ import annotations

from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
from advlab.victims.configs import AlexNetCifarConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: indices of the ReLUs in ``features`` whose outputs make up the LPIPS features
LPIPS_RELUS = (1, 4, 7, 9, 11)


def trunk_size(size: int) -> int:
    """Spatial size after the trunk: a stride-2 convolution, then three 2x2 max-pools."""
    s = (size - 1) // 2 + 1
    for _ in range(3):
        s //= 2
    return s


def alexnet_cifar_trunk(in_channels: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 64, kernel_size=3, stride=2, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2),
        nn.Conv2d(64, 192, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=2),
    )


class AlexNetCifar(nn.Module):
    """``classifier(flatten(features(x)))`` on normalised inputs."""

    def __init__(self, in_channels: int, num_classes: int, size: int = 32, hidden: int = 4096):
        super().__init__()
        s = trunk_size(size)
        self.features = alexnet_cifar_trunk(in_channels)
        self.classifier = nn.Sequential(
            nn.Dropout(),
            nn.Linear(256 * s * s, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).flatten(1))


@VICTIMS.register("alexnet_cifar")
class AlexNetCifarVictim(VictimBuilder):
    """The PAT authors' CIFAR-10 AlexNet: their LPIPS network and mCE baseline; trained here or loaded."""

    Config = AlexNetCifarConfig
    paper = "Laidlaw, Singla, Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://github.com/cassidylaidlaw/perceptual-advex"

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        check(
            h == w and trunk_size(h) >= 1,
            "victim",
            f"alexnet_cifar needs square inputs of at least 15 px, got {h}x{w}",
        )
        return AlexNetCifar(c, num_outputs, h, self.params.hidden)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        rgb = info.image_shape[0] == 3
        return Victim(
            self.build_net(info, num_outputs),
            IMAGENET_MEAN if rgb else info.mean,
            IMAGENET_STD if rgb else info.std,
        )

    def load_checkpoint(self, path: str):
        from advlab.victims.perceptual_advex import load_alexnet_cifar

        return load_alexnet_cifar(path, key="victim.checkpoint")
