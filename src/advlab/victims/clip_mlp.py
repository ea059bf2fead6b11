"""CLIP+MLP: an open_clip image encoder (frozen by default) followed by a 2-layer MLP head with one output
per label/bit/class, as in the JMA paper's multi-label experiments.

``model``: an open_clip architecture name (``ViT-B-32``, ``ViT-B-16``, ...) or, with ``model_config``, the name
of a JSON model config registered from that file (``open_clip.add_model_config``; tiny configs for tests and
CPU runs). ``pretrained``: a local open_clip checkpoint file (e.g. the OpenAI ``ViT-B-32.pt`` or a LAION
``open_clip_pytorch_model.bin``); null = random init. Inputs are normalised with CLIP's mean/std inside the
victim, whatever the dataset's statistics, since the encoder was trained that way.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.victims.base import VICTIMS, Victim, VictimBuilder
from advlab.victims.configs import CLIPMLPConfig  # noqa: F401

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SOURCE = (
    "https://github.com/mlfoundations/open_clip (pretrained checkpoints on the Hugging Face Hub / OpenAI)"
)


class CLIPMLP(nn.Module):
    def __init__(self, encoder: nn.Module, embed_dim: int, hidden: int, num_outputs: int, freeze: bool):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs))
        if freeze:
            self.encoder.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).float())


@VICTIMS.register("clip_mlp")
class CLIPMLPBuilder(VictimBuilder):
    Config = CLIPMLPConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        try:
            import open_clip
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ConfigError(f"victim: clip_mlp needs open_clip_torch ({exc})") from None
        p = self.params
        if p.model_config:
            cfg = Path(os.path.expanduser(p.model_config))
            if not cfg.is_file():
                raise ConfigError(f"victim.model_config: file '{cfg}' does not exist")
            open_clip.add_model_config(cfg)
        pretrained = None
        if p.pretrained:
            pretrained = Path(os.path.expanduser(p.pretrained))
            if not pretrained.is_file():
                raise CheckpointError(
                    f"victim.pretrained: open_clip checkpoint '{pretrained}' does not exist. Download the "
                    f"'{p.model}' weights from {SOURCE} and set victim.pretrained=<file>."
                )
        try:
            model = open_clip.create_model(p.model, pretrained=str(pretrained) if pretrained else None)
        except RuntimeError as exc:
            raise ConfigError(
                f"victim.model: open_clip cannot build '{p.model}' ({str(exc).splitlines()[0]})"
            ) from None
        visual = model.visual
        size = getattr(visual, "image_size", None)
        size = size[0] if isinstance(size, (tuple, list)) else size
        c, h, w = info.image_shape
        if c != 3 or (size is not None and (h, w) != (size, size)):
            raise ConfigError(
                f"victim: the open_clip encoder '{p.model}' takes 3x{size}x{size} images, the dataset gives "
                f"{c}x{h}x{w}; set dataset.size={size}"
            )
        with torch.no_grad():
            embed = visual(torch.zeros(1, 3, h, w)).shape[1]
        return CLIPMLP(visual, embed, p.hidden, num_outputs, p.freeze_encoder)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        return Victim(self.build_net(info, num_outputs), CLIP_MEAN, CLIP_STD)
