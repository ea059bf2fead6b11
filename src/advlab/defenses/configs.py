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


@dataclasses.dataclass
class TRADESConfig(ComponentConfig):
    beta: float = 6.0  # weight of the robust (KL) term
    eps: float = 0.031  # Linf radius of the inner maximisation
    step_size: float = 0.007
    steps: int = 10
    init_std: float = 0.001  # x'_0 = x + init_std * N(0, I)

    def validate(self, key: str) -> None:
        check(self.beta >= 0, f"{key}.beta", f"must be >= 0 (got {self.beta})")
        check(self.eps > 0, f"{key}.eps", f"must be > 0 (got {self.eps})")
        check(self.step_size > 0, f"{key}.step_size", f"must be > 0 (got {self.step_size})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.init_std >= 0, f"{key}.init_std", f"must be >= 0 (got {self.init_std})")


MODES = ("random", "average", "max")


@dataclasses.dataclass
class MultiAdvTrainingConfig(ComponentConfig):
    attacks: dict[str, Any] = dataclasses.field(default_factory=dict)  # {name: attack config}
    mode: str = "random"  # random | average | max
    seed: int = 0  # draws of the random mode

    def validate(self, key: str) -> None:
        check(self.mode in MODES, f"{key}.mode", f"must be one of {MODES} (got '{self.mode}')")
        check(len(self.attacks) > 0, f"{key}.attacks", "list at least one attack ({name: attack config})")
        parsed = {}
        for name, node in self.attacks.items():
            attack = ATTACKS.parse(node, key=f"{key}.attacks.{name}")
            check(attack.name != "none", f"{key}.attacks.{name}", "'none' is not an attack")
            check(not getattr(attack, "targeted", False), f"{key}.attacks.{name}.targeted", "must be false")
            parsed[name] = dataclasses.asdict(attack)
        self.attacks = parsed


@dataclasses.dataclass
class AMIConfig(ComponentConfig):
    """Attacks Meet Interpretability (Tao et al. 2018): attribute witnesses of one layer, an attribute-steered
    copy of the victim, and a detector flagging inputs on which the two decide differently."""

    layer: str | None = (
        None  # module name in the victim (``victim.named_modules()``), e.g. net.12 for smallcnn
    )
    change_threshold: float = 0.5  # a neuron changes on a pair when |delta| > this x its std over the images
    consistency: float = 0.5  # ... on at least this share of the substitution pairs (and stays put on the
    #                           preservation pairs at least this share of the time)
    strengthen: float = 1.5  # witnesses' activations x this in the steered model
    weaken: float = 0.5  # the layer's other neurons x this
    attributes: list[str] | None = (
        None  # attributes whose witnesses are searched (None: all of the dataset's)
    )
    pairs_per_attribute: int = (
        64  # source images per attribute (one substitution + one preservation pair each)
    )
    pair_split: str = "dev"  # split the pairs are drawn from (never the attacked test split)
    detection: str = "consistency"  # consistency (SemanticAdv's use: cosine of the two outputs) | decision
    benign_fpr: float = (
        0.1  # consistency: flag threshold at this false-positive rate on clean pair_split images
    )

    def validate(self, key: str) -> None:
        check(self.layer is not None, f"{key}.layer", "name the victim layer to steer (a name from "
              "victim.named_modules(), e.g. net.12 for smallcnn)")  # fmt: skip
        check(
            self.change_threshold > 0, f"{key}.change_threshold", f"must be > 0 (got {self.change_threshold})"
        )
        check(0 < self.consistency <= 1, f"{key}.consistency", f"must be in (0, 1] (got {self.consistency})")
        check(self.strengthen >= 1, f"{key}.strengthen", f"must be >= 1 (got {self.strengthen})")
        check(0 <= self.weaken <= 1, f"{key}.weaken", f"must be in [0, 1] (got {self.weaken})")
        check(self.pairs_per_attribute >= 2, f"{key}.pairs_per_attribute", "must be >= 2")
        check(self.pair_split in ("train", "dev"), f"{key}.pair_split", "must be train or dev")
        check(
            self.detection in ("consistency", "decision"),
            f"{key}.detection",
            f"must be consistency or decision (got '{self.detection}')",
        )
        check(0 < self.benign_fpr < 1, f"{key}.benign_fpr", f"must be in (0, 1) (got {self.benign_fpr})")
        if self.attributes is not None:
            check(
                len(self.attributes) >= 1, f"{key}.attributes", "must list at least one attribute or be null"
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
DEFENSES.declare("ami", "advlab.defenses.ami", AMIConfig)
DEFENSES.declare("asl_par", "advlab.defenses.asl_par_defense", ASLPARDefenseConfig)
DEFENSES.declare("input_transform", "advlab.defenses.input_transform", InputTransformConfig)
DEFENSES.declare("none", "advlab.defenses.base", ComponentConfig)
DEFENSES.declare("multi_adv_training", "advlab.defenses.multi_adv_training", MultiAdvTrainingConfig)
DEFENSES.declare("pat", "advlab.defenses.pat", PATConfig)
DEFENSES.declare("trades", "advlab.defenses.trades", TRADESConfig)
