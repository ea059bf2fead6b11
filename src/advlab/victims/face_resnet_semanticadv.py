"""SemanticAdv's released face-verification model (``res101_softmax.pth.tar``, R-101-S of the paper).

The architecture of ``Face/verification_model.py`` in AI-secure/SemanticAdv: a ResNet-101 (bottleneck blocks
[3, 4, 23, 3], stride on the 3x3 convolution) whose first 7x7 convolution has stride 1, with the usual 3x3
max-pool, *no* average pool, and ``fc = Linear(2048 * 7 * 7, 256)`` on the flattened last feature map, so it
takes exactly 112x112 faces (112 -> 56 -> 56 -> 28 -> 14 -> 7). Its input transform is the authors'
``rec_transform``: ``(x - 0.5) * 4`` on images in [0, 1] (mean 0.5, std 0.25); the embedding is divided by its
L2 norm (the authors' ``End_Model``), so the victim returns 256-d unit vectors.

The file, as the download script fetches it, is a training checkpoint: a dict whose ``state_dict`` holds the
weights of ``DataParallel(IdentityMapping(resnet101))``, i.e. keys ``module.base.<torchvision-style name>``
(``module.base.conv1.weight`` [64, 3, 7, 7], ``module.base.layer3.22.bn3.running_var`` [1024],
``module.base.fc.weight`` [256, 100352], ...). :meth:`FaceResNet101SemanticAdv.load_checkpoint` consumes every
key of ``state_dict``; the other entries of the wrapper (training metadata such as ``epoch``, ``best_prec1``,
``optimizer``) are ignored because they do not describe the network, and batch-norm ``num_batches_tracked``
counters may be absent (files written before PyTorch 0.4.1 have none; they do not affect evaluation).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck, ResNet

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_weights_only, published_layout_mismatch
from advlab.victims.configs import FaceResNet101SemanticAdvConfig  # noqa: F401

#: the released model's input size and embedding size (fixed by its fc layer)
INPUT_SIZE = 112
EMBEDDING_DIM = 256
#: key prefix of the released file: DataParallel ("module.") around IdentityMapping ("base.")
KEY_PREFIX = "module.base."
#: entries of the checkpoint wrapper besides ``state_dict``: training state, not part of the network
IGNORED_WRAPPER_KEYS = ("epoch", "best_prec1", "optimizer", "arch")


class SemanticAdvResNet(ResNet):
    """ResNet-101 with a stride-1 stem, no average pool and an fc on the flattened 2048x7x7 map."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 23, 3), feature_dim: int = EMBEDDING_DIM):
        super().__init__(Bottleneck, list(layers))
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        del self.avgpool
        self.fc = nn.Linear(512 * Bottleneck.expansion * 7 * 7, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            raise ConfigError(
                f"victim=face_resnet101_semanticadv takes {INPUT_SIZE}x{INPUT_SIZE} faces (its fc layer is fixed "
                f"to a 7x7 map), got {tuple(x.shape[-2:])}; set dataset.image_size={INPUT_SIZE}"
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.normalize(self.fc(x.flatten(1)), dim=1)


def released_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The network weights of the released ``res101_softmax.pth.tar`` (``module.base.`` stripped), checked to
    be the wrapper the authors' ``load_ckpt`` reads."""
    where = (
        "; download res101_softmax.pth.tar with Face/scripts/download_pretrained_face_model.sh of "
        "AI-secure/SemanticAdv (docs/papers/semanticadv.md)"
    )
    obj = load_weights_only(path, "victim.checkpoint", where)
    path = Path(os.path.expanduser(str(path)))
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(
            f"victim.checkpoint: '{path}' is not the released training checkpoint (a dict with 'state_dict')"
        )
    unknown = sorted(set(obj) - {"state_dict", *IGNORED_WRAPPER_KEYS})
    if unknown:
        raise CheckpointError(f"victim.checkpoint: '{path}' has unexpected wrapper entries {unknown}")
    state = obj["state_dict"]
    outside = [k for k in state if not k.startswith(KEY_PREFIX)]
    if outside:
        raise CheckpointError(
            f"victim.checkpoint: '{path}': keys {outside[:3]} lack the released '{KEY_PREFIX}' prefix"
        )
    return {k[len(KEY_PREFIX) :]: v for k, v in state.items()}


def check_released_weights(state: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """``state`` (prefix stripped) checked key by key and shape by shape against the architecture (built on the
    meta device, no memory): every file key must be used; absent batch-norm counters are filled with 0."""
    with torch.device("meta"):
        own = SemanticAdvResNet().state_dict()
    state, mismatch = published_layout_mismatch(own, state)
    if mismatch:
        raise CheckpointError(
            f"victim.checkpoint: '{source}' is not the released ResNet-101 face model ({mismatch})"
        )
    return state


@VICTIMS.register("face_resnet101_semanticadv")
class FaceResNet101SemanticAdv(VictimBuilder):
    """SemanticAdv's released R-101-S face model (256-d unit embeddings of 112x112 faces)."""

    Config = FaceResNet101SemanticAdvConfig
    trainable = False  # the released weights come from victim.checkpoint

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        if num_outputs != EMBEDDING_DIM:
            raise ConfigError(
                f"task.embedding_dim: the released face model embeds into {EMBEDDING_DIM} dimensions, got "
                f"{num_outputs}; set task.embedding_dim={EMBEDDING_DIM}"
            )
        return SemanticAdvResNet()

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), tuple(self.params.mean), tuple(self.params.std))

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        """The released file's weights, as a state_dict of the bare network."""
        return check_released_weights(released_state_dict(path), path)
