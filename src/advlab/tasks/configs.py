"""The task configs: every parameter dataclass of ``advlab.tasks``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from advlab.registry import ComponentConfig, Registry, check

IGNORE = 255


TARGET_MODES = ("flip", "train", "all_zero")


@dataclasses.dataclass
class TargetFileConfig(ComponentConfig):
    """Parameters shared by the tasks whose attack targets can come from a file (``advlab.data.subset``)."""

    #: not part of a trained victim's cache key (they only decide the attack targets)
    eval_only_fields: ClassVar[tuple[str, ...]] = ("target_file",)
    target_file: str | None = None  # .npy of one target row per attacked image (official JMA target files)


@dataclasses.dataclass
class ECOCConfig(TargetFileConfig):
    code_length: int = 16  # bits per codeword (a power of two >= the number of classes)
    decode: str = "logits"  # logits | tanh: the scores correlated with the codewords
    hinge_margin: float = 1.0
    #: Hadamard row of class 0 (null: 1 when the code has room, skipping the all-ones row; 0: the JMA authors'
    #: hadamard16/32.npy codebooks, needed for their Keras models)
    first_row: int | None = None

    def validate(self, key: str) -> None:
        check(self.first_row is None or self.first_row >= 0, f"{key}.first_row", "must be >= 0 or null")
        check(
            self.decode in ("logits", "tanh"),
            f"{key}.decode",
            f"must be logits or tanh (got '{self.decode}')",
        )
        check(self.hinge_margin > 0, f"{key}.hinge_margin", f"must be > 0 (got {self.hinge_margin})")
        check(self.code_length >= 2, f"{key}.code_length", f"must be >= 2 (got {self.code_length})")


MULTILABEL_LOSSES = ("bce", "asl", "categorical_hinge")


@dataclasses.dataclass
class MultiLabelConfig(TargetFileConfig):
    #: not part of a trained victim's cache key (they only decide how attack targets are drawn)
    eval_only_fields: ClassVar[tuple[str, ...]] = ("target_mode", "flip_bits", "target_file")
    loss: str = (
        "bce"  # bce | asl | categorical_hinge (Keras', on the sigmoid outputs: the JMA paper's VOC model)
    )
    asl_gamma_neg: float = 4.0  # ASL focusing on negatives
    asl_gamma_pos: float = 0.0
    asl_clip: float = 0.05  # ASL probability margin on negatives
    target_mode: str = "flip"  # flip | train | all_zero
    flip_bits: int = 3

    def validate(self, key: str) -> None:
        check(
            self.loss in MULTILABEL_LOSSES,
            f"{key}.loss",
            f"must be one of {', '.join(MULTILABEL_LOSSES)} (got '{self.loss}')",
        )
        check(
            self.target_mode in TARGET_MODES,
            f"{key}.target_mode",
            f"must be one of {TARGET_MODES} (got '{self.target_mode}')",
        )
        check(self.flip_bits >= 1, f"{key}.flip_bits", f"must be >= 1 (got {self.flip_bits})")
        check(self.asl_gamma_neg >= 0 and self.asl_gamma_pos >= 0, key, "ASL gammas must be >= 0")
        check(0 <= self.asl_clip < 1, f"{key}.asl_clip", f"must be in [0, 1) (got {self.asl_clip})")


@dataclasses.dataclass
class PARTaskConfig(ComponentConfig):
    threshold: float = 0.45  # PromptPAR; 0.5 for the Rethinking-of-PAR protocol
    aux_weight: float = 0.5  # weight of the auxiliary heads' loss (PromptPAR: 0.5 * L_GL)
    weighted: bool = True  # PromptPAR's weighted BCE (positive rates of the training split)
    f1: str = "means"  # means: 2PR/(P+R) of the mean P and R (PromptPAR) | instances: mean per-sample F1

    def validate(self, key: str) -> None:
        check(0.0 < self.threshold < 1.0, f"{key}.threshold", f"must be in (0, 1) (got {self.threshold})")
        check(self.aux_weight >= 0, f"{key}.aux_weight", f"must be >= 0 (got {self.aux_weight})")
        check(self.f1 in ("means", "instances"), f"{key}.f1", f"must be means or instances (got '{self.f1}')")


SEGMENTATION_OBJECTIVES = ("ce", "houdini")


@dataclasses.dataclass
class SegmentationConfig(ComponentConfig):
    #: not part of a trained victim's cache key (it only shapes the attack objective)
    eval_only_fields: ClassVar[tuple[str, ...]] = ("objective",)
    ignore_index: int = IGNORE
    success_pixel_acc: float = 0.5  # per-sample correctness / attack-success threshold (see module doc)
    objective: str = "ce"  # ce | houdini: the per-pixel attack objective (tasks/segmentation.py)

    def validate(self, key: str) -> None:
        check(
            self.objective in SEGMENTATION_OBJECTIVES,
            f"{key}.objective",
            f"must be one of {SEGMENTATION_OBJECTIVES} (got '{self.objective}')",
        )
        check(
            0.0 < self.success_pixel_acc <= 1.0,
            f"{key}.success_pixel_acc",
            f"must be in (0, 1] (got {self.success_pixel_acc})",
        )


@dataclasses.dataclass
class VerificationConfig(ComponentConfig):
    embedding_dim: int = 64
    temperature: float = 0.1  # supervised-contrastive training temperature
    threshold: float = 1.0  # distance threshold in use (the pipeline sets it from an FPR)

    def validate(self, key: str) -> None:
        check(self.embedding_dim >= 2, f"{key}.embedding_dim", f"must be >= 2 (got {self.embedding_dim})")
        check(self.temperature > 0, f"{key}.temperature", f"must be > 0 (got {self.temperature})")
        check(0 < self.threshold <= 2, f"{key}.threshold", f"must be in (0, 2] (got {self.threshold})")


TASKS: Registry = Registry("task", "task")
#: name -> (implementing module, config): the implementation is imported on first use
TASKS.declare("classification", "advlab.tasks.classification", TargetFileConfig)
TASKS.declare("ecoc", "advlab.tasks.ecoc", ECOCConfig)
TASKS.declare("multilabel", "advlab.tasks.multilabel", MultiLabelConfig)
TASKS.declare("par", "advlab.tasks.par", PARTaskConfig)
TASKS.declare("segmentation", "advlab.tasks.segmentation", SegmentationConfig)
TASKS.declare("verification", "advlab.tasks.verification", VerificationConfig)

#: task -> the kind of ground truth it consumes (``advlab.data.info.LABEL_KINDS``); a dataset's kind is its
#: ``default_task``'s, so ``task.name`` must name a task of the same kind
LABEL_KIND = {
    "classification": "class",
    "ecoc": "class",
    "multilabel": "multi-hot",
    "par": "multi-hot",
    "segmentation": "mask",
    "verification": "identity",
}
