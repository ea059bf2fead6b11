"""SegFormer through HuggingFace ``transformers`` (``SegformerForSemanticSegmentation``), loading a model directory
as downloaded from the hub -- for the EOT patch paper ``nvidia/segformer-b5-finetuned-cityscapes-1024-1024``:
``config.json`` (architecture, 19 labels), the weights (``model.safetensors`` or ``pytorch_model.bin``, keys
``segformer.encoder.*`` / ``decode_head.*`` as ``transformers`` 4.x names them) and ``preprocessor_config.json``
(the image processor's resize and normalisation).

The image processor's work happens inside the wrapper so that attacks stay in [0, 1] pixel space: the input
(RGB in [0, 1]) is resized to the processor's ``size`` (bilinear with antialiasing, as its PIL ``resample=2``),
normalised with its ``image_mean`` / ``image_std``, and the logits (1/4 resolution) are resized bilinearly
(``align_corners=False``, as ``post_process_semantic_segmentation``) to the input. ``victim.mode`` chooses how an
image is run in eval mode: ``processor`` (the above), ``whole`` (full resolution, no resize -- what the EOT
paper's code does: it loads the processor but feeds normalised full images), or ``slide`` (mmseg's
SegFormer-Cityscapes evaluation: ``crop`` windows every ``stride`` pixels, logits averaged where they overlap;
``victims/inference.py``). Without ``victim.checkpoint`` a SegFormer-B5 with random weights is built (for
composing and tests).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.data.info import DataInfo
from advlab.errors import CheckpointError, ConfigError
from advlab.registry import check
from advlab.victims.base import VICTIMS, Victim, VictimBuilder, load_state_dict_file
from advlab.victims.configs import SegformerHFConfig
from advlab.victims.inference import slide_inference

HUB = "https://huggingface.co/nvidia/segformer-b5-finetuned-cityscapes-1024-1024"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: MiT-B5 (the hub model's config.json; SegformerConfig's own defaults are B0)
B5 = {
    "depths": [3, 6, 40, 3],
    "hidden_sizes": [64, 128, 320, 512],
    "num_attention_heads": [1, 2, 5, 8],
    "decoder_hidden_size": 768,
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def processor_settings(folder: Path | None) -> tuple[tuple[int, int] | None, tuple, tuple]:
    """``(resize (h, w) or None, mean, std)`` from a model directory's ``preprocessor_config.json`` (the current
    ``size: {height, width}`` or the older ``size: N`` form); ImageNet statistics and no resize without one."""
    path = None if folder is None else folder / "preprocessor_config.json"
    if path is None or not path.is_file():
        return None, IMAGENET_MEAN, IMAGENET_STD
    cfg = json.loads(path.read_text())
    mean = tuple(cfg.get("image_mean", IMAGENET_MEAN)) if cfg.get("do_normalize", True) else (0.0, 0.0, 0.0)
    std = tuple(cfg.get("image_std", IMAGENET_STD)) if cfg.get("do_normalize", True) else (1.0, 1.0, 1.0)
    size = cfg.get("size")
    if not cfg.get("do_resize", True) or size is None:
        return None, mean, std
    if isinstance(size, int):
        return (size, size), mean, std
    if isinstance(size, dict) and {"height", "width"} <= set(size):
        return (int(size["height"]), int(size["width"])), mean, std
    raise CheckpointError(
        f"victim.checkpoint: {path} has a processor size {size} advlab does not read (expected an int or "
        "{height, width}); set victim.mode=whole or slide to skip the processor resize"
    )


class HFSegformerVictim(Victim):
    """``forward(x RGB in [0,1]) -> logits [B, K, H, W]`` at the input resolution."""

    def __init__(
        self, net: nn.Module, mean: tuple, std: tuple, mode: str, resize, crop, stride, window_batch
    ):
        super().__init__(net, mean, std)
        self.mode, self.resize = mode, resize
        self.crop, self.stride, self.window_batch = tuple(crop), tuple(stride), window_batch

    def logits(self, z: Tensor) -> Tensor:
        """Logits of normalised inputs ``z`` at ``z``'s resolution."""
        out = self.net(pixel_values=z).logits
        return F.interpolate(out, size=z.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        if self.mode == "slide" and not self.training:
            return slide_inference(
                self.logits, (x - self.mean) / self.std, self.crop, self.stride, self.window_batch
            )
        if self.mode == "processor" and self.resize is not None and tuple(size) != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        out = self.net(pixel_values=(x - self.mean) / self.std).logits
        return F.interpolate(out, size=size, mode="bilinear", align_corners=False)


def _import_segformer():
    try:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation
    except ImportError as exc:  # pragma: no cover - the install brings it
        raise ConfigError(f"victim: transformers is not importable ({exc}); run `make install`") from None
    return SegformerConfig, SegformerForSemanticSegmentation


class SegformerHFBuilder(VictimBuilder):
    Config = SegformerHFConfig
    trainable = False  # the published checkpoint (victim.checkpoint), not trained by advlab

    def folder(self) -> Path | None:
        if not self.params.checkpoint:
            return None
        folder = Path(os.path.expanduser(self.params.checkpoint))
        if not (folder / "config.json").is_file():
            raise CheckpointError(
                f"victim.checkpoint: '{folder}' is not a downloaded model directory with config.json (get "
                f"{HUB}: config.json, model.safetensors or pytorch_model.bin, preprocessor_config.json)"
            )
        return folder

    def build_net(self, info: DataInfo, num_outputs: int) -> nn.Module:
        c = info.image_shape[0]
        check(c == 3, "victim", f"{self.params.name} needs 3-channel RGB images (dataset has {c} channels)")
        config_cls, model_cls = _import_segformer()
        folder = self.folder()
        if folder is None:
            config = config_cls(**{**B5, "num_labels": num_outputs, **self.params.hf_config})
        else:
            config = config_cls.from_json_file(str(folder / "config.json"))
        if config.num_labels != num_outputs:
            raise CheckpointError(
                f"victim.checkpoint: the model has {config.num_labels} labels but the dataset {num_outputs} classes"
            )
        return model_cls(config)

    def build(self, info: DataInfo, num_outputs: int) -> Victim:
        p = self.params
        resize, mean, std = processor_settings(self.folder())
        net = self.build_net(info, num_outputs)
        return HFSegformerVictim(net, mean, std, p.mode, resize, p.crop, p.stride, p.window_batch)

    def load_checkpoint(self, path: str) -> dict[str, Tensor]:
        folder = self.folder()
        for name in WEIGHT_FILES:
            file = folder / name
            if not file.is_file():
                continue
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(str(file))
            else:
                state = load_state_dict_file(file)
            # a step counter of the decode head's one BatchNorm, unused in eval; older exports may lack it
            state.setdefault("decode_head.batch_norm.num_batches_tracked", torch.tensor(0))
            return state
        raise CheckpointError(
            f"victim.checkpoint: '{folder}' has none of {WEIGHT_FILES} (download them from {HUB})"
        )


VICTIMS.register("segformer_b5_hf")(SegformerHFBuilder)

__all__ = ["HFSegformerVictim", "SegformerHFBuilder", "processor_settings"]
