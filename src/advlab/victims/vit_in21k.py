"""ViT-B/16 pretrained on ImageNet-21K with a classifier of one output per class/label/bit: the JMA paper's
ImageNet2K victim (Table II: a 2000-class one-hot head). The network is torchvision's VisionTransformer;
``pretrained`` is a local checkpoint in timm's layout (``cls_token``, ``pos_embed``, ``patch_embed.proj``,
``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``, ``head``, and the in21k
``pre_logits.fc`` representation layer where the file has one), converted key by key (timm's fused ``qkv``
is torchvision's ``in_proj``, in the same q, k, v order). The file's ``head`` is loaded when it has one row
per output (a fine-tuned 2000-class head), else it is left out and a new head is trained (the 21,843 ImageNet-21K
classes are not the task's). ``width`` (768 for ViT-B) with 12 layers of ``width / 64`` heads keeps the
layout at smaller sizes, for tests."""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn
from torchvision.models.vision_transformer import VisionTransformer

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.victims.base import VICTIMS, VictimBuilder
from advlab.victims.configs import ViTIn21kConfig  # noqa: F401
from advlab.victims.pretrained import load_backbone_weights

SOURCE = (
    "timm's vit_base_patch16_224_in21k (https://storage.googleapis.com/vit_models/augreg/ or the original "
    "jx_vit_base_patch16_224_in21k-e5005f0a.pth), or the JMA authors' ImageNet2K fine-tune, saved as a state_dict"
)

_BLOCK = {
    "norm1": "ln_1",
    "attn.qkv.weight": "self_attention.in_proj_weight",
    "attn.qkv.bias": "self_attention.in_proj_bias",
    "attn.proj": "self_attention.out_proj",
    "norm2": "ln_2",
    "mlp.fc1": "mlp.0",
    "mlp.fc2": "mlp.3",
}


def timm_to_torchvision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm ViT keys -> torchvision VisionTransformer keys (every key mapped; unknown keys kept as they are so
    the loader reports them)."""
    top = {
        "cls_token": "class_token",
        "pos_embed": "encoder.pos_embedding",
        "patch_embed.proj.weight": "conv_proj.weight",
        "patch_embed.proj.bias": "conv_proj.bias",
        "norm.weight": "encoder.ln.weight",
        "norm.bias": "encoder.ln.bias",
        "pre_logits.fc.weight": "heads.pre_logits.weight",
        "pre_logits.fc.bias": "heads.pre_logits.bias",
        "head.weight": "heads.head.weight",
        "head.bias": "heads.head.bias",
    }
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
        if key in top:
            out[top[key]] = value
        elif m:
            rest = m.group(2)
            for src, dst in _BLOCK.items():
                if rest == src or rest.startswith(src + "."):
                    rest = dst + rest[len(src) :]
                    break
            out[f"encoder.layers.encoder_layer_{m.group(1)}.{rest}"] = value
        else:
            out[key] = value
    return out


@VICTIMS.register("vit_b16_in21k")
class ViTB16In21k(VictimBuilder):
    Config = ViTIn21kConfig

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c, h, w = info.image_shape
        if c != 3 or h != w or h % 16:
            raise ConfigError(
                f"victim: vit_b16_in21k needs 3-channel square images with a side divisible by 16, got {c}x{h}x{w}"
            )
        p = self.params
        net = VisionTransformer(
            image_size=h,
            patch_size=16,
            num_layers=12,
            num_heads=p.width // 64,
            hidden_dim=p.width,
            mlp_dim=4 * p.width,
            num_classes=num_outputs,
            representation_size=p.width if p.representation else None,
        )
        if p.pretrained:
            head: dict[str, Tensor] = {}

            def convert(state):
                out = timm_to_torchvision(state)
                head.update({k: out[k] for k in ("heads.head.weight", "heads.head.bias") if k in out})
                return out

            load_backbone_weights(net, p.pretrained, "timm ViT-B/16", SOURCE, ("heads.head.",), convert)
            if (
                head.get("heads.head.weight") is not None
                and head["heads.head.weight"].shape[0] == num_outputs
            ):
                with torch.no_grad():  # a head for exactly these classes (the ImageNet2K fine-tune): keep it
                    net.heads.head.weight.copy_(head["heads.head.weight"])
                    net.heads.head.bias.copy_(head["heads.head.bias"])
        return net
