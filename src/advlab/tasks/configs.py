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


LANDMARK_GOALS = ("rotating_eyes", "out_of_region")
LANDMARK_OBJECTIVES = ("houdini", "mse", "ce")


@dataclasses.dataclass
class LandmarksConfig(ComponentConfig):
    """Face landmark detection from heatmaps (:mod:`advlab.tasks.landmarks`)."""

    #: not part of a trained victim's cache key (they only decide the attack's goal and objective)
    eval_only_fields: ClassVar[tuple[str, ...]] = (
        "goal", "objective", "houdini_score", "region_size", "success_nme", "success_r_out", "rotation_deg",
    )  # fmt: skip
    num_landmarks: int = 68
    heatmap_sigma: float = 1.0  # std of the training heatmaps' Gaussians, in heatmap pixels
    #: training loss: mse (FAN's: heatmap MSE to the Gaussians) | spatial_ce (cross-entropy of each heatmap's
    #: softmax over its pixels against the normalised Gaussian: the same arg-max, converges in far fewer epochs)
    train_loss: str = "mse"
    goal: str = (
        "rotating_eyes"  # rotating_eyes | out_of_region: the targeted attack (SemanticAdv section 4.3)
    )
    #: houdini (SemanticAdv Eq. 5) | mse (heatmap MSE to the target's Gaussians) | ce (each heatmap's softmax over
    #: its pixels against the target's normalised Gaussian: the spatial_ce training loss aimed at the target)
    objective: str = "houdini"
    #: Houdini's score g(x, y_k): the heatmap value at y_k (heatmap; FAN's MSE-trained maps lie in [0, 1]), or the
    #: value after rescaling each map to [0, 1] by its minimum and maximum (range; for maps trained as logits with
    #: train_loss=spatial_ce, whose raw gaps are so large that the Gaussian tail's gradient vanishes)
    houdini_score: str = "heatmap"
    rotation_deg: float = (
        90.0  # Rotating Eyes: counter-clockwise (as seen in the image) about the eyes' centre
    )
    region_size: float = 0.5  # Out of Region: side of the centred square box, as a fraction of the image side
    success_nme: float = 0.05  # Rotating Eyes succeeds when NME(prediction, target) on the eyes is below this
    success_r_out: float = 1.0  # Out of Region succeeds when this share of the landmarks is outside the box

    def validate(self, key: str) -> None:
        check(self.num_landmarks >= 1, f"{key}.num_landmarks", f"must be >= 1 (got {self.num_landmarks})")
        check(self.heatmap_sigma > 0, f"{key}.heatmap_sigma", f"must be > 0 (got {self.heatmap_sigma})")
        check(
            self.train_loss in ("mse", "spatial_ce"),
            f"{key}.train_loss",
            f"must be mse or spatial_ce (got '{self.train_loss}')",
        )
        check(
            self.houdini_score in ("heatmap", "range"),
            f"{key}.houdini_score",
            f"must be heatmap or range (got '{self.houdini_score}')",
        )
        check(
            self.goal in LANDMARK_GOALS, f"{key}.goal", f"must be one of {LANDMARK_GOALS} (got '{self.goal}')"
        )
        check(
            self.objective in LANDMARK_OBJECTIVES,
            f"{key}.objective",
            f"must be one of {LANDMARK_OBJECTIVES} (got '{self.objective}')",
        )
        check(0 < self.region_size < 1, f"{key}.region_size", f"must be in (0, 1) (got {self.region_size})")
        check(self.success_nme > 0, f"{key}.success_nme", f"must be > 0 (got {self.success_nme})")
        check(
            0 < self.success_r_out <= 1,
            f"{key}.success_r_out",
            f"must be in (0, 1] (got {self.success_r_out})",
        )
        if self.goal == "rotating_eyes":
            check(
                self.num_landmarks == 68,
                f"{key}.num_landmarks",
                f"goal=rotating_eyes needs the 68-point layout (eyes = points 36-47), got {self.num_landmarks}",
            )


TASKS: Registry = Registry("task", "task")
#: name -> (implementing module, config): the implementation is imported on first use
TASKS.declare("classification", "advlab.tasks.classification", TargetFileConfig)
TASKS.declare("ecoc", "advlab.tasks.ecoc", ECOCConfig)
TASKS.declare("landmarks", "advlab.tasks.landmarks", LandmarksConfig)
TASKS.declare("multilabel", "advlab.tasks.multilabel", MultiLabelConfig)
TASKS.declare("par", "advlab.tasks.par", PARTaskConfig)
TASKS.declare("segmentation", "advlab.tasks.segmentation", SegmentationConfig)
TASKS.declare("verification", "advlab.tasks.verification", VerificationConfig)

#: task -> the kind of ground truth it consumes (``advlab.data.info.LABEL_KINDS``); a dataset's kind is its
#: ``default_task``'s, so ``task.name`` must name a task of the same kind
LABEL_KIND = {
    "classification": "class",
    "ecoc": "class",
    "landmarks": "landmarks",
    "multilabel": "multi-hot",
    "par": "multi-hot",
    "segmentation": "mask",
    "verification": "identity",
}
