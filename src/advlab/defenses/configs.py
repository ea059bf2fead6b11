"""The defense configs: every parameter dataclass of ``advlab.defenses``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
from typing import Any

from advlab.attacks.configs import ATTACKS
from advlab.loops.configs import TrainConfig
from advlab.registry import ComponentConfig, Registry, check


@dataclasses.dataclass
class AdvTrainingConfig(ComponentConfig):
    attack: Any = None  # a full attack config; conf/defense/adv_training.yaml composes pgd_linf_train
    clean_fraction: float = 0.0  # share of each batch kept clean (0 = pure adversarial training)

    def validate(self, key: str) -> None:
        check(0.0 <= self.clean_fraction < 1.0, f"{key}.clean_fraction", "must be in [0, 1)")
        check(
            self.attack is not None,
            f"{key}.attack",
            "missing: set the training attack, e.g. attack@defense.attack=pgd_linf_train",
        )
        parsed = ATTACKS.parse(self.attack, key=f"{key}.attack")
        check(parsed.name != "none", f"{key}.attack.name", "adversarial training needs an attack")
        check(not getattr(parsed, "targeted", False), f"{key}.attack.targeted", "must be false")
        self.attack = dataclasses.asdict(parsed)


@dataclasses.dataclass
class ASLPARDefenseConfig(ComponentConfig):
    # the official schedule (AttackPAR train_defense.sh / config.py): 3 text prompts, 1 epoch, batch 32, SGD
    # momentum 0.9, weight decay 1e-4, filter lr 8e-4, prompts 4e-4 (defense=asl_par_long: 10 epochs, batch 16,
    # 4 text prompts, advlab's earlier settings, no source)
    kernel_size: int = 3
    text_prompts: int = 3  # learnable text prompt vectors (0 = filter only)
    filter_lr: float = 8e-4
    prompt_lr: float = 4e-4
    epochs: int = 1
    batch_size: int = 32
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_epochs: int = 0
    clean_fraction: float = 0.0  # share of each fine-tuning batch left clean (paper: 0, all noisy)

    def validate(self, key: str) -> None:
        check(self.kernel_size >= 1 and self.kernel_size % 2 == 1, f"{key}.kernel_size",
              f"must be an odd number >= 1 (got {self.kernel_size})")  # fmt: skip
        check(self.text_prompts >= 0, f"{key}.text_prompts", "must be >= 0")
        check(self.filter_lr > 0 and self.prompt_lr > 0, f"{key}.filter_lr", "learning rates must be > 0")
        check(0.0 <= self.clean_fraction < 1.0, f"{key}.clean_fraction", "must be in [0, 1)")
        self.train_config().validate(key)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            lr=self.filter_lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            schedule=self.schedule,
            warmup_epochs=self.warmup_epochs,
        )


@dataclasses.dataclass
class PATConfig(AdvTrainingConfig):
    attack_correct_only: bool = True

    def validate(self, key: str) -> None:
        super().validate(key)
        check(
            self.attack["name"] in ("fast_lpa", "lpa", "ppgd"),
            f"{key}.attack.name",
            f"PAT trains against a perceptual attack (fast_lpa, lpa, ppgd), got '{self.attack['name']}'; "
            "use defense=adv_training for Lp attacks",
        )


TRANSFORMS = ("jpeg", "blur", "squeeze")


@dataclasses.dataclass
class InputTransformConfig(ComponentConfig):
    transform: str = "jpeg"  # jpeg | blur | squeeze
    jpeg_quality: int = 75
    jpeg_gradient: str = "bpda"  # bpda (real codec forward, identity backward) | differentiable (kornia)
    blur_kernel: int = 3
    blur_sigma: float = 1.0
    bits: int = 4
    detector: bool = False  # feature squeezing's L1 detector score (transform=squeeze)
    detector_outputs: str = "softmax"  # softmax | raw

    def validate(self, key: str) -> None:
        check(
            self.transform in TRANSFORMS,
            f"{key}.transform",
            f"must be one of {TRANSFORMS} (got '{self.transform}')",
        )
        check(
            1 <= self.jpeg_quality <= 100,
            f"{key}.jpeg_quality",
            f"must be in [1, 100] (got {self.jpeg_quality})",
        )
        check(
            self.jpeg_gradient in ("bpda", "differentiable"),
            f"{key}.jpeg_gradient",
            f"must be bpda or differentiable (got '{self.jpeg_gradient}')",
        )
        check(
            self.blur_kernel >= 1 and self.blur_kernel % 2 == 1,
            f"{key}.blur_kernel",
            f"must be an odd size >= 1 (got {self.blur_kernel})",
        )
        check(self.blur_sigma > 0, f"{key}.blur_sigma", f"must be > 0 (got {self.blur_sigma})")
        check(1 <= self.bits <= 8, f"{key}.bits", f"must be in [1, 8] (got {self.bits})")
        check(
            not self.detector or self.transform == "squeeze",
            f"{key}.detector",
            f"the feature-squeezing detector compares with the squeezed input; set {key}.transform=squeeze",
        )
        check(
            self.detector_outputs in ("softmax", "raw"),
            f"{key}.detector_outputs",
            f"must be softmax or raw (got '{self.detector_outputs}')",
        )


DEFENSES: Registry = Registry("defense", "defense")
#: name -> (implementing module, config): the implementation is imported on first use
DEFENSES.declare("adv_training", "advlab.defenses.adv_training", AdvTrainingConfig)
DEFENSES.declare("asl_par", "advlab.defenses.asl_par_defense", ASLPARDefenseConfig)
DEFENSES.declare("input_transform", "advlab.defenses.input_transform", InputTransformConfig)
DEFENSES.declare("none", "advlab.defenses.base", ComponentConfig)
DEFENSES.declare("pat", "advlab.defenses.pat", PATConfig)
