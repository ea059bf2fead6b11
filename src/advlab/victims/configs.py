"""The victim configs: every parameter dataclass of ``advlab.victims``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from advlab.errors import CheckpointError, ConfigError
from advlab.registry import ComponentConfig, Registry, check

OPENAI_CLIP = "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt"


TINY_MODEL = "advlab-tiny-clip"


#: victim name -> shipped config (relative to mmseg/.mim/configs); the matching Cityscapes checkpoint is the
#: config's ``Weights`` entry in the same folder's ``metafile.yaml`` (see :func:`zoo_weights`)
MMSEG_MODELS: dict[str, str] = {
    "pidnet_s": "pidnet/pidnet-s_2xb6-120k_1024x1024-cityscapes.py",
    "pidnet_m": "pidnet/pidnet-m_2xb6-120k_1024x1024-cityscapes.py",
    "pidnet_l": "pidnet/pidnet-l_2xb6-120k_1024x1024-cityscapes.py",
    "bisenetv1": "bisenetv1/bisenetv1_r18-d32-in1k-pre_4xb4-160k_cityscapes-1024x1024.py",
    "bisenetv2": "bisenetv2/bisenetv2_fcn_4xb4-160k_cityscapes-1024x1024.py",
    "icnet": "icnet/icnet_r18-d8-in1k-pre_4xb2-160k_cityscapes-832x832.py",
    **{
        f"segformer_b{i}": f"segformer/segformer_mit-b{i}_8xb1-160k_cityscapes-1024x1024.py" for i in range(6)
    },
    "ddrnet": "ddrnet/ddrnet_23_in1k-pre_2xb6-120k_cityscapes-1024x1024.py",
    "stdc1": "stdc/stdc1_in1k-pre_4xb12-80k_cityscapes-512x1024.py",
    "stdc2": "stdc/stdc2_in1k-pre_4xb12-80k_cityscapes-512x1024.py",
}


#: ``precision``: the dtype the victim's forward runs in under autocast (fp32: no autocast)
PRECISIONS = ("fp32", "bf16", "fp16")
#: ``compile``: torch.compile modes for the victim (false: eager)
COMPILE_MODES = ("default", "max-autotune")


@dataclasses.dataclass(frozen=True)
class Acceleration:
    """How a victim's forward runs: the top-level keys ``precision``, ``channels_last`` and ``compile`` (see
    :mod:`advlab.victims.acceleration`). The default runs the victim exactly as built (fp32, eager)."""

    precision: str = "fp32"  # fp32 | bf16 | fp16: autocast dtype of the victim's forward
    channels_last: bool = False  # victim weights and its 4-D inputs in torch.channels_last memory format
    compile: str | None = None  # None (false) | default | max-autotune: torch.compile mode of the victim

    @property
    def is_default(self) -> bool:
        return self.precision == "fp32" and not self.channels_last and self.compile is None

    @classmethod
    def parse(cls, precision: Any, channels_last: Any, compile: Any) -> Acceleration:
        """From the config values; one ConfigError naming every bad key, its value and the choices."""
        errors = []
        if precision not in PRECISIONS:
            errors.append(f"precision: must be one of {', '.join(PRECISIONS)} (got {precision!r})")
        if not isinstance(channels_last, bool):
            errors.append(f"channels_last: must be true or false (got {channels_last!r})")
        if compile is False or compile is None:
            compile = None
        elif compile not in COMPILE_MODES:
            errors.append(
                f"compile: must be false, {' or '.join(COMPILE_MODES)} (got {compile!r}); e.g. compile=default"
            )
        if errors:
            raise ConfigError(*errors)
        return cls(precision, channels_last, compile)


@dataclasses.dataclass
class VictimConfig(ComponentConfig):
    checkpoint: str | None = None  # a state_dict file; loaded with weights_only=True


@dataclasses.dataclass
class CLIPMLPConfig(VictimConfig):
    model: str = "ViT-B-16"
    model_config: str | None = None  # a JSON open_clip model config file registered before building
    pretrained: str | None = None  # local checkpoint file for the encoder
    hidden: int = 512
    freeze_encoder: bool = True

    def validate(self, key: str) -> None:
        check(self.hidden >= 1, f"{key}.hidden", f"must be >= 1 (got {self.hidden})")


@dataclasses.dataclass
class FANConfig(VictimConfig):
    """Face Alignment Network (Bulat & Tzimiropoulos 2017, :mod:`advlab.victims.fan`); defaults: 2DFAN-4."""

    num_modules: int = 4  # stacked hour-glasses (2DFAN-4)
    hg_depth: int = 4  # down-sampling levels of each hour-glass
    features: int = 256  # channels inside the hour-glasses (the stem has features/4 and features/2)
    #: 2: the published stem (stride-2 7x7 convolution, then a 2x average pool: heatmaps at 1/4 of the input);
    #: 1: a stride-1 convolution (heatmaps at 1/2), for small embedded images
    stem_stride: int = 2
    input_size: int | None = 256  # the victim resizes its input to this square size (None: as given)
    mean: list[float] = dataclasses.field(
        default_factory=lambda: [0.0, 0.0, 0.0]
    )  # the package feeds x / 255
    std: list[float] = dataclasses.field(default_factory=lambda: [1.0, 1.0, 1.0])

    def validate(self, key: str) -> None:
        check(self.num_modules >= 1, f"{key}.num_modules", f"must be >= 1 (got {self.num_modules})")
        check(self.hg_depth >= 1, f"{key}.hg_depth", f"must be >= 1 (got {self.hg_depth})")
        check(
            self.features >= 8 and self.features % 8 == 0,
            f"{key}.features",
            f"must be a multiple of 8 (ConvBlock halves and quarters it), got {self.features}",
        )
        check(self.stem_stride in (1, 2), f"{key}.stem_stride", f"must be 1 or 2 (got {self.stem_stride})")
        if self.input_size is not None:
            down = 2 * self.stem_stride * 2**self.hg_depth
            check(
                self.input_size % down == 0,
                f"{key}.input_size",
                f"must be divisible by {down} (stem x 2^hg_depth), got {self.input_size}",
            )


@dataclasses.dataclass
class FaceResNetConfig(VictimConfig):
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])

    def validate(self, key: str) -> None:
        check(len(self.mean) == 3 and len(self.std) == 3, key, "mean and std need 3 values (RGB)")
        check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")


@dataclasses.dataclass
class FaceResNet101SemanticAdvConfig(VictimConfig):
    checkpoint: str | None = None  # res101_softmax.pth.tar as downloaded
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.25, 0.25, 0.25])  # (x - 0.5) * 4

    def validate(self, key: str) -> None:
        check(len(self.mean) == 3 and len(self.std) == 3, key, "mean and std need 3 values (RGB)")
        check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")


@dataclasses.dataclass
class MMSegConfig(VictimConfig):
    config: str = "???"  # a config shipped in mmseg/.mim/configs (relative) or a config file path
    cfg_options: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # dotted keys, as mmseg's --cfg-options
    norm: str = "BN"  # replaces SyncBN (single-device runs)
    trusted_checkpoint: bool = False  # opt-in: load a full pickle (only for files you trust)
    init_weights: bool = True  # mmseg's own initialisation (without pretrained downloads) before training
    window_batch: int | None = None  # test_cfg mode=slide: windows per forward pass (null = all at once)

    def validate(self, key: str) -> None:
        check(self.norm in ("BN", "SyncBN", "GN", "LN"), f"{key}.norm", f"unknown norm '{self.norm}'")
        check(
            self.window_batch is None or self.window_batch >= 1,
            f"{key}.window_batch",
            f"must be >= 1 or null (got {self.window_batch})",
        )


@dataclasses.dataclass
class PARResNetConfig(VictimConfig):
    depth: int = 50  # 18 | 34 | 50 | 101
    pretrained: str | None = None  # torchvision ImageNet weights file (e.g. resnet50-11ad3fa6.pth)

    def validate(self, key: str) -> None:
        check(
            self.depth in (18, 34, 50, 101), f"{key}.depth", f"must be 18, 34, 50 or 101 (got {self.depth})"
        )
        if self.pretrained and not Path(os.path.expanduser(self.pretrained)).is_file():
            raise CheckpointError(
                f"{key}.pretrained: '{self.pretrained}' does not exist (torchvision ImageNet weights, "
                "https://download.pytorch.org/models/)"
            )


@dataclasses.dataclass
class PromptPARConfig(VictimConfig):
    model_name: str = "ViT-L-14"  # an open_clip model config name (advlab-tiny-clip: the embedded tiny CLIP)
    pretrained: str | None = None  # local open_clip / OpenAI checkpoint file for the CLIP weights
    force_quick_gelu: bool = True  # OpenAI CLIP weights use QuickGELU
    freeze_clip: str = "auto"  # auto (frozen iff pretrained is given) | true | false
    prompts_per_group: int = 10
    num_parts: int = 4
    part_mask: bool = True
    text_prompts: int = 0  # learnable text prompt vectors (the ASL-PAR defense adds them)
    prompt_lr_scale: float = 0.5  # prompts' lr relative to train.lr (paper: 4e-3 vs 8e-3)
    clip_lr_scale: float = 1.0  # CLIP's lr relative to train.lr when it is not frozen
    # OpenPAR's token use, as its released checkpoints were trained: the global feature is the first prompt
    # token (x[1], not CLS), the fusion block sees every output token (prompts too), patches attend to the part
    # groups. true for victim.checkpoint=<an OpenPAR PromptPAR .pth> (victim=promptpar_openpar)
    openpar_tokens: bool = False

    def validate(self, key: str) -> None:
        check(str(self.freeze_clip).lower() in ("auto", "true", "false"), f"{key}.freeze_clip",
              f"must be auto, true or false (got {self.freeze_clip!r})")  # fmt: skip
        check(self.prompts_per_group >= 0, f"{key}.prompts_per_group", "must be >= 0")
        check(self.num_parts >= 1, f"{key}.num_parts", f"must be >= 1 (got {self.num_parts})")
        check(self.text_prompts >= 0, f"{key}.text_prompts", "must be >= 0")
        check(not self.openpar_tokens or self.prompts_per_group >= 1, f"{key}.openpar_tokens",
              "needs prompts_per_group >= 1 (its global feature is the first prompt token)")  # fmt: skip
        if (
            not self.pretrained
            and not self.checkpoint
            and self.model_name != TINY_MODEL
            and str(self.freeze_clip).lower() != "false"
        ):
            raise ConfigError(
                f"{key}.pretrained: PromptPAR on {self.model_name} needs CLIP weights: download OpenAI's ViT-L/14 "
                f"({OPENAI_CLIP}) and set {key}.pretrained=<file>, or load a released PromptPAR checkpoint "
                f"(victim=promptpar_openpar {key}.checkpoint=<file>; it holds the CLIP weights), or set "
                f"{key}.freeze_clip=false to train CLIP from scratch"
            )
        if self.pretrained:
            path = Path(os.path.expanduser(self.pretrained))
            if not path.is_file():
                raise CheckpointError(
                    f"{key}.pretrained: CLIP checkpoint '{path}' does not exist. PromptPAR uses OpenAI's "
                    f"ViT-L/14 ({OPENAI_CLIP}, or open_clip's 'ViT-L-14' 'openai' weights); download it and "
                    f"set {key}.pretrained=<file>."
                )

    @property
    def frozen_clip(self) -> bool:
        """``auto``: frozen when CLIP comes with weights (``pretrained``, or a ``checkpoint`` holding them)."""
        mode = str(self.freeze_clip).lower()
        return bool(self.pretrained or self.checkpoint) if mode == "auto" else mode == "true"


@dataclasses.dataclass
class MambaPARConfig(VictimConfig):
    # defaults: the official setting (Vim-S/16 at 224, mamba-130M text branch, fusion width 768)
    patch_size: int = 16
    vision_width: int = 384
    vision_depth: int = 24
    text_width: int = 768
    text_depth: int = 24
    text_vocab: int = 50280  # mamba-130M's padded GPT-NeoX vocabulary
    text_length: int = 10  # tokens per attribute word (padded)
    # bytes: UTF-8 bytes + 1 (0 = padding; the embedded tiny config) | a local Hugging Face tokenizer folder
    # (the official code uses bert-base-cased)
    tokenizer: str = "bytes"
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    fusion_layers: int = 2

    def validate(self, key: str) -> None:
        for name in ("patch_size", "vision_width", "vision_depth", "text_width", "text_depth", "text_length",
                     "d_state", "d_conv", "expand"):  # fmt: skip
            check(getattr(self, name) >= 1, f"{key}.{name}", f"must be >= 1 (got {getattr(self, name)})")
        check(self.fusion_layers >= 0, f"{key}.fusion_layers", "must be >= 0")
        check(self.tokenizer != "bytes" or self.text_vocab >= 257, f"{key}.text_vocab",
              "must be >= 257 with tokenizer=bytes (256 byte values + padding)")  # fmt: skip


@dataclasses.dataclass
class ResNetConfig(VictimConfig):
    small_input: bool = True  # 3x3 stride-1 stem without max-pool (for inputs <= 64 px)


#: how ``victim.checkpoint`` is read: advlab (a state_dict) | perceptual_advex (the PAT authors' files)
CHECKPOINT_LAYOUTS = ("advlab", "perceptual_advex")


@dataclasses.dataclass
class ResNet50Config(VictimConfig):
    pretrained: str | None = None  # ImageNet backbone weights file
    small_input: bool = False  # CIFAR stem: 3x3 stride-1 first convolution, no max-pool
    checkpoint_layout: str = "advlab"  # advlab | perceptual_advex (docs/papers/pat.md)

    def validate(self, key: str) -> None:
        check(
            self.checkpoint_layout in CHECKPOINT_LAYOUTS,
            f"{key}.checkpoint_layout",
            f"must be one of {CHECKPOINT_LAYOUTS} (got '{self.checkpoint_layout}')",
        )


@dataclasses.dataclass
class AlexNetConfig(VictimConfig):
    """torchvision's ImageNet AlexNet with its last layer replaced (the PAT authors' ImageNet-100 mCE baseline)."""

    pretrained: str | None = (
        None  # torchvision ImageNet weights file (alexnet-owt-7be5be79.pth) to fine-tune from
    )

    def validate(self, key: str) -> None:
        if self.pretrained and not Path(os.path.expanduser(self.pretrained)).is_file():
            raise CheckpointError(
                f"{key}.pretrained: '{self.pretrained}' does not exist (torchvision ImageNet AlexNet weights, "
                "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth)"
            )


@dataclasses.dataclass
class AlexNetCifarConfig(VictimConfig):
    hidden: int = 4096  # width of the two hidden fully-connected layers (the PAT authors': 4096)

    def validate(self, key: str) -> None:
        check(self.hidden > 0, f"{key}.hidden", f"must be > 0 (got {self.hidden})")


#: DRN-D-22's channels per level (Yu et al. 2017; fyu/drn ``drn.py``)
DRN_D_22_CHANNELS = [16, 32, 64, 128, 256, 512, 512, 512]


@dataclasses.dataclass
class DRNConfig(VictimConfig):
    #: channels of the eight levels; the published DRN-D-22 by default (a narrower list for embedded data)
    channels: list[int] = dataclasses.field(default_factory=lambda: list(DRN_D_22_CHANNELS))
    #: input normalisation of the released Cityscapes models (fyu/drn README, Cityscapes ``info.json``)
    mean: list[float] = dataclasses.field(default_factory=lambda: [0.290101, 0.328081, 0.286964])
    std: list[float] = dataclasses.field(default_factory=lambda: [0.182954, 0.186566, 0.184475])

    def validate(self, key: str) -> None:
        check(
            len(self.channels) == 8 and all(c >= 1 for c in self.channels),
            f"{key}.channels",
            f"must list 8 positive channel counts (got {self.channels})",
        )
        check(len(self.mean) == 3 and len(self.std) == 3, key, "mean and std need 3 values (RGB)")
        check(all(s > 0 for s in self.std), f"{key}.std", "must be positive")


@dataclasses.dataclass
class SmallCNNConfig(VictimConfig):
    width: int = 32
    hidden: int = 256

    def validate(self, key: str) -> None:
        check(self.width > 0 and self.hidden > 0, key, "width and hidden must be positive")


@dataclasses.dataclass
class ViTConfig(VictimConfig):
    pretrained: str | None = None


@dataclasses.dataclass
class InceptionV3Config(VictimConfig):
    pretrained: str | None = None  # ImageNet backbone weights file


@dataclasses.dataclass
class SwinBConfig(VictimConfig):
    pretrained: str | None = None  # ImageNet backbone weights file
    width: int = 128  # embedding size of the first stage (Swin-B: 128)

    def validate(self, key: str) -> None:
        check(
            self.width >= 32 and self.width % 32 == 0,
            f"{key}.width",
            f"must be a multiple of 32 (got {self.width})",
        )


@dataclasses.dataclass
class VGG16ECOCConfig(VictimConfig):
    pretrained: str | None = None  # torchvision ImageNet VGG16 state_dict
    shared_convs: int = 6  # convolutions in the shared bottom (paper: 6)
    branches: int | None = None  # ensemble branches h (None: one per output bit)
    width: int = 64  # VGG16: 64
    fc: int = 4096  # units of each branch's two fully connected layers (VGG16: 4096)

    def validate(self, key: str) -> None:
        check(
            0 <= self.shared_convs <= 13,
            f"{key}.shared_convs",
            f"must be in [0, 13] (got {self.shared_convs})",
        )
        check(self.branches is None or self.branches >= 1, f"{key}.branches", "must be >= 1 or null")
        check(self.width >= 1 and self.fc >= 1, key, "width and fc must be >= 1")


@dataclasses.dataclass
class ViTIn21kConfig(VictimConfig):
    pretrained: str | None = None  # timm-layout ImageNet-21K (or ImageNet2K fine-tuned) checkpoint
    width: int = 768  # hidden size (ViT-B: 768)
    representation: bool = False  # the in21k pre-logits layer (true for the original in21k checkpoints)

    def validate(self, key: str) -> None:
        check(
            self.width >= 64 and self.width % 64 == 0,
            f"{key}.width",
            f"must be a multiple of 64 (got {self.width})",
        )


#: PIDNet variant -> (m, n, planes, ppm_planes, head_planes), as the official ``get_pred_model``
PIDNET_VARIANTS: dict[str, tuple[int, int, int, int, int]] = {
    "s": (2, 3, 32, 96, 128),
    "m": (2, 3, 64, 96, 128),
    "l": (3, 4, 64, 112, 256),
}


@dataclasses.dataclass
class PIDNetConfig(VictimConfig):
    variant: str = "s"  # s | m | l

    def validate(self, key: str) -> None:
        check(self.variant in PIDNET_VARIANTS, f"{key}.variant", f"must be one of {sorted(PIDNET_VARIANTS)}")


def pidnet_config(variant: str) -> type:
    """The config dataclass of ``pidnet_<variant>_official``: :class:`PIDNetConfig` with its variant."""
    return dataclasses.make_dataclass(
        f"PIDNet{variant.upper()}OfficialConfig",
        [("variant", str, dataclasses.field(default=variant))],
        bases=(PIDNetConfig,),
    )


PIDNET_CONFIGS = {v: pidnet_config(v) for v in PIDNET_VARIANTS}
SEGFORMER_HF_MODES = ("processor", "whole", "slide")


@dataclasses.dataclass
class SegformerHFConfig(VictimConfig):
    checkpoint: str | None = (
        None  # the downloaded model directory (config.json + weights + preprocessor_config)
    )
    mode: str = "processor"  # processor (HF resize) | whole (full resolution, the EOT code) | slide (mmseg's)
    crop: list[int] = dataclasses.field(default_factory=lambda: [1024, 1024])  # mode=slide: window (h, w)
    stride: list[int] = dataclasses.field(default_factory=lambda: [768, 768])  # mode=slide: step (h, w)
    window_batch: int | None = None  # mode=slide: windows per forward pass (null = all at once)
    hf_config: dict[str, Any] = dataclasses.field(
        default_factory=dict
    )  # no checkpoint: SegformerConfig fields

    def validate(self, key: str) -> None:
        check(
            self.mode in SEGFORMER_HF_MODES,
            f"{key}.mode",
            f"must be one of {SEGFORMER_HF_MODES} (got '{self.mode}')",
        )
        for name in ("crop", "stride"):
            v = getattr(self, name)
            check(len(v) == 2 and min(v) >= 1, f"{key}.{name}", f"must be [height, width] (got {v})")
        check(
            self.window_batch is None or self.window_batch >= 1, f"{key}.window_batch", "must be >= 1 or null"
        )


def mmseg_config(name: str, config: str) -> type:
    """The config dataclass of mmseg model ``name``: :class:`MMSegConfig` with ``config`` as its default."""
    return dataclasses.make_dataclass(
        f"{name.title().replace('_', '')}Config",
        [("config", str, dataclasses.field(default=config))],
        bases=(MMSegConfig,),
    )


VICTIMS: Registry = Registry("victim", "victim")
#: name -> (implementing module, config): the implementation is imported on first use
VICTIMS.declare("alexnet_cifar", "advlab.victims.alexnet_cifar", AlexNetCifarConfig)
VICTIMS.declare("clip_mlp", "advlab.victims.clip_mlp", CLIPMLPConfig)
VICTIMS.declare("drn_d_22", "advlab.victims.drn", DRNConfig)
VICTIMS.declare("fan", "advlab.victims.fan", FANConfig)
VICTIMS.declare("face_resnet101", "advlab.victims.face_resnet", FaceResNetConfig)
VICTIMS.declare("face_resnet50", "advlab.victims.face_resnet", FaceResNetConfig)
VICTIMS.declare(
    "face_resnet101_semanticadv", "advlab.victims.face_resnet_semanticadv", FaceResNet101SemanticAdvConfig
)
VICTIMS.declare("par_resnet", "advlab.victims.par_baseline", PARResNetConfig)
VICTIMS.declare("promptpar", "advlab.victims.promptpar", PromptPARConfig)
VICTIMS.declare("mambapar", "advlab.victims.mambapar", MambaPARConfig)
VICTIMS.declare("resnet18", "advlab.victims.resnet", ResNetConfig)
VICTIMS.declare("resnet50", "advlab.victims.resnet50", ResNet50Config)
VICTIMS.declare("alexnet", "advlab.victims.alexnet", AlexNetConfig)
VICTIMS.declare("smallcnn", "advlab.victims.smallcnn", SmallCNNConfig)
VICTIMS.declare("vit_b16", "advlab.victims.vit", ViTConfig)
VICTIMS.declare("inception_v3", "advlab.victims.inception_v3", InceptionV3Config)
VICTIMS.declare("swin_b", "advlab.victims.swin_b", SwinBConfig)
VICTIMS.declare("vgg16_ecoc", "advlab.victims.vgg16_ecoc", VGG16ECOCConfig)
VICTIMS.declare("vit_b16_in21k", "advlab.victims.vit_in21k", ViTIn21kConfig)
for _name, _config in MMSEG_MODELS.items():  # one config class per mmseg model: its config file as default
    VICTIMS.declare(_name, "advlab.victims.mmseg", mmseg_config(_name, _config))
# the EOT patch paper's own victims: the checkpoints its code loads, each in its published layout
for _variant, _cfg in PIDNET_CONFIGS.items():
    VICTIMS.declare(f"pidnet_{_variant}_official", "advlab.victims.pidnet", _cfg)
VICTIMS.declare("segformer_b5_hf", "advlab.victims.segformer_hf", SegformerHFConfig)
VICTIMS.declare("bisenetv1_coincheung", "advlab.victims.bisenet_v1", VictimConfig)
VICTIMS.declare("bisenetv2_coincheung", "advlab.victims.bisenet_v2", VictimConfig)
VICTIMS.declare("icnet_r50", "advlab.victims.icnet_r50", VictimConfig)
