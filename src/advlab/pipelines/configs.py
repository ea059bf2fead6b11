"""The pipeline configs: every parameter dataclass of ``advlab.pipelines``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from advlab.attacks.configs import ATTACKS
from advlab.errors import ConfigError
from advlab.loops.configs import GANTrainConfig, LabelMapTrainConfig
from advlab.metrics.corruption import CORRUPTIONS
from advlab.registry import ComponentConfig, Registry, check


@dataclasses.dataclass
class ASLPARPipelineConfig(ComponentConfig):
    attribute_table: bool = True  # write attributes.md (per-attribute mA of every phase)
    require_perturbation: bool = False  # transfer runs: attack.perturbation_path must be given


@dataclasses.dataclass
class PipelineConfig(ComponentConfig):
    pass


@dataclasses.dataclass
class CorruptionSuiteConfig:
    enabled: bool = True
    source: str = (
        "generate"  # generate (imagecorruptions) | npy (CIFAR-10-C under root) | imagenet_c (ImageNet-C)
    )
    root: str | None = None
    names: list[str] = dataclasses.field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])
    num_examples: int | None = None  # first N test images per corruption/severity (null = all)
    batch_size: int = 256


@dataclasses.dataclass
class BaselineConfig:
    model: str | None = None  # a model of this suite or of pipeline.baselines, or of the results file below
    results: str | None = None  # results.json of another robustness_suite run
    checkpoint: str | None = None  # a victim state_dict (architecture: the run's victim + victim_overrides)
    victim_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class StarGANConfig:
    conv_dim: int = 128  # SemanticAdv's StarGAN: conv_dim 128, 6 residual blocks (Choi et al. 2018 use 64)
    repeat_num: int = 6
    d_conv_dim: int = 64
    d_repeat_num: int = 4  # CelebA at 112 px: 112 = 7 * 2^4
    checkpoint: str | None = None  # a published/pre-trained generator state_dict (skips training)
    #: the attributes the generator was trained with, in order (checked against dataset.attributes); None = the
    #: dataset's
    attributes: list[str] | None = None

    def validate(self, key: str) -> None:
        check(self.conv_dim >= 4 and self.d_conv_dim >= 4, key, "conv_dim and d_conv_dim must be >= 4")
        check(
            self.repeat_num >= 1 and self.d_repeat_num >= 1, key, "repeat_num and d_repeat_num must be >= 1"
        )


@dataclasses.dataclass
class LabelMapGeneratorConfig:
    """The label-map-conditioned generator (generators/label_map_manipulation.py)."""

    base_channels: int = 64  # channels of the first conv; doubled by every down-sampling (capped below)
    feature_channels: int = 1024  # channels of the encoder's features (Hong et al. / SemanticAdv: 1024)
    n_down: int = 4  # stride-2 convs: 256 px -> 16 x 16 features (SemanticAdv's 1024 x 16 x 16)
    n_res: int = 2  # residual blocks on the features, in the encoder and again in the decoder
    edge_kernel: int = 7  # kernel of the first and the last conv (pix2pixHD: 7; 3 is cheaper on small images)
    checkpoint: str | None = None  # a generator state_dict saved by advlab (skips training)

    def validate(self, key: str) -> None:
        check(self.base_channels >= 4, f"{key}.base_channels", f"must be >= 4 (got {self.base_channels})")
        check(self.feature_channels >= 4, f"{key}.feature_channels", "must be >= 4")
        check(1 <= self.n_down <= 6, f"{key}.n_down", f"must be in [1, 6] (got {self.n_down})")
        check(self.n_res >= 0, f"{key}.n_res", "must be >= 0")
        check(
            self.edge_kernel in (3, 5, 7), f"{key}.edge_kernel", f"must be 3, 5 or 7 (got {self.edge_kernel})"
        )


STREET_MODES = ("vanish", "target")


@dataclasses.dataclass
class StreetCase:
    """One case of SemanticAdv's Fig. 7: attack instances of ``source_class`` by inserting an ``insert_class``
    object next to each; ``vanish`` succeeds on the share of the instance no longer labelled ``source_class``,
    ``target`` on the share labelled ``target_class`` (both optimise towards ``target_class``)."""

    name: str = "pedestrian_vanishes"
    source_class: str = "person"
    mode: str = "vanish"  # vanish | target
    target_class: str = "road"
    insert_class: str = "car"

    def validate(self, key: str) -> None:
        check(self.mode in STREET_MODES, f"{key}.mode", f"must be one of {STREET_MODES} (got '{self.mode}')")
        check(self.target_class != self.source_class, f"{key}.target_class", "must differ from source_class")


def _fig7_cases() -> list[StreetCase]:
    return [
        StreetCase("pedestrian_vanishes", "person", "vanish", "road", "car"),
        StreetCase("cyclist_to_pedestrian", "rider", "target", "person", "car"),
    ]


@dataclasses.dataclass
class SemanticAdvStreetPipelineConfig(PipelineConfig):
    generator: LabelMapGeneratorConfig = dataclasses.field(default_factory=LabelMapGeneratorConfig)
    gen_train: LabelMapTrainConfig = dataclasses.field(default_factory=LabelMapTrainConfig)
    cases: list[StreetCase] = dataclasses.field(default_factory=_fig7_cases)
    num_images: int = 50  # attacked test images per case (each with one target instance)
    min_instance_pixels: int = 64  # smallest target instance (pixels at the dataset's resolution)
    insert_scale: float = 1.0  # the inserted object's height / the target instance's height
    batch_size: int = 16
    grid_examples: int = 6
    image_seed: int = 0  # which test images / instances are attacked

    def validate(self, key: str) -> None:
        check(len(self.cases) >= 1, f"{key}.cases", "must list at least one case")
        names = [c.name for c in self.cases]
        check(len(set(names)) == len(names), f"{key}.cases", f"case names must be unique (got {names})")
        for i, case in enumerate(self.cases):
            case.validate(f"{key}.cases[{i}]")
        self.generator.validate(f"{key}.generator")
        self.gen_train.validate(f"{key}.gen_train")
        check(self.num_images >= 1, f"{key}.num_images", "must be >= 1")
        check(self.min_instance_pixels >= 1, f"{key}.min_instance_pixels", "must be >= 1")
        check(0.2 <= self.insert_scale <= 4, f"{key}.insert_scale", "must be in [0.2, 4]")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.grid_examples >= 0, f"{key}.grid_examples", "must be >= 0")


@dataclasses.dataclass
class RobustnessSuiteConfig(PipelineConfig):
    models: dict[str, Any] = dataclasses.field(default_factory=dict)
    attacks: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_examples: int | None = None  # test images attacked per model (null = eval.num_examples)
    union: list[str] | None = None  # attacks that make up adv/union (null = all of them)
    corruption: CorruptionSuiteConfig = dataclasses.field(default_factory=CorruptionSuiteConfig)
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)
    # models that only normalise mCE (prepared like models, not attacked, not in the table): {name: overrides},
    # e.g. the paper's AlexNet {alexnet: {victim: {name: alexnet_cifar}}} with baseline.model=alexnet
    baselines: dict[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self, key: str) -> None:
        check(len(self.models) > 0, f"{key}.models", "list at least one model ({name: overrides})")
        clash = sorted(set(self.baselines) & set(self.models))
        check(not clash, f"{key}.baselines", f"{clash} are already names of pipeline.models")
        for name in [*self.models, *self.attacks, *self.baselines]:
            check(
                "/" not in name and name not in ("union",),
                f"{key}",
                f"'{name}' cannot be a model/attack name",
            )
        if self.union is not None:
            unknown_u = sorted(set(self.union) - set(self.attacks))
            check(
                not unknown_u, f"{key}.union", f"{unknown_u} not in pipeline.attacks ({list(self.attacks)})"
            )
        for name, node in self.attacks.items():
            parsed = ATTACKS.parse(node, key=f"{key}.attacks.{name}")
            check(parsed.name != "none", f"{key}.attacks.{name}", "'none' is not an attack")
        c = self.corruption
        check(
            c.source in ("generate", "npy", "imagenet_c"),
            f"{key}.corruption.source",
            f"must be generate, npy or imagenet_c (got '{c.source}')",
        )
        unknown = sorted(set(c.names) - set(CORRUPTIONS))
        check(
            not unknown, f"{key}.corruption.names", f"unknown {unknown}; available: {', '.join(CORRUPTIONS)}"
        )
        check(all(1 <= s <= 5 for s in c.severities) and c.severities, f"{key}.corruption.severities", "1..5")
        if c.enabled and c.source in ("npy", "imagenet_c"):
            what = "CIFAR-10-C" if c.source == "npy" else "ImageNet-C"
            check(
                c.root is not None, f"{key}.corruption.root", f"set the {what} folder for source={c.source}"
            )
        b = self.baseline
        chosen = [n for n, v in (("results", b.results), ("checkpoint", b.checkpoint)) if v]
        check(len(chosen) <= 1, f"{key}.baseline", "set at most one of results / checkpoint")
        if not chosen and b.model is not None:
            check(
                b.model in self.models or b.model in self.baselines,
                f"{key}.baseline.model",
                f"'{b.model}' is neither in pipeline.models {list(self.models)} nor in pipeline.baselines "
                f"{list(self.baselines)}",
            )
        for name, path in (("results", b.results), ("checkpoint", b.checkpoint)):
            if path and not Path(os.path.expanduser(path)).is_file():
                raise ConfigError(f"{key}.baseline.{name}: file '{path}' does not exist")


@dataclasses.dataclass
class GFPRSetting:
    """The optimiser settings used at one generating FPR (the paper's appendix: 200 steps at lr 0.05 when
    G-FPR <= 1e-4, otherwise up to 500 steps at lr 0.01); ``None`` keeps the attack's own value."""

    fpr: float = 1e-3
    steps: int | None = None
    lr: float | None = None


@dataclasses.dataclass
class SemanticAdvPipelineConfig(PipelineConfig):
    generator: StarGANConfig = dataclasses.field(default_factory=StarGANConfig)
    gan_train: GANTrainConfig = dataclasses.field(default_factory=GANTrainConfig)
    fprs: list[float] = dataclasses.field(default_factory=lambda: [1e-3, 3e-4, 1e-4])
    thresholds: list[float] | None = None  # given distance thresholds, one per FPR (else chosen on dev)
    threshold_distance: str = (
        "l2"  # l2 | squared_l2: the unit of `thresholds` (squared_l2: the official code)
    )
    per_fpr: list[GFPRSetting] = dataclasses.field(default_factory=list)  # steps / lr per G-FPR
    max_dev_pairs: int = 2_000_000
    num_pairs: int = 100
    pair_seed: int = 0
    batch_size: int = 16  # source images per attack batch (x the number of attributes)
    grid_examples: int = 6
    victim_label: str | None = None  # the generating model's id in the transfer table (None = victim.name)
    transfer_victims: list[Any] = dataclasses.field(default_factory=list)  # victim nodes (+ TARGET_KEYS)
    adaptive: bool = False  # attack through the defense (True) or the bare victim, scored through it (False)
    strawman: bool = False  # pixel attack on G(x', c_new) per attribute (Table H's StrawMan [CW + x_new])
    strawman_recon_steps: int = 300  # the StrawMan's reconstruction pre-step (SemanticAdv's)

    def validate(self, key: str) -> None:
        check(len(self.fprs) >= 1, f"{key}.fprs", "must list at least one FPR")
        check(all(0 < f < 1 for f in self.fprs), f"{key}.fprs", f"must be in (0, 1) (got {self.fprs})")
        check(len(set(self.fprs)) == len(self.fprs), f"{key}.fprs", f"has duplicates ({self.fprs})")
        check(
            self.threshold_distance in ("l2", "squared_l2"),
            f"{key}.threshold_distance",
            f"must be l2 or squared_l2 (got '{self.threshold_distance}')",
        )
        if self.thresholds is not None:
            check(
                len(self.thresholds) == len(self.fprs),
                f"{key}.thresholds",
                f"needs one threshold per FPR ({len(self.fprs)}), got {len(self.thresholds)}",
            )
            top = 2 if self.threshold_distance == "l2" else 4
            check(
                all(0 < t <= top for t in self.thresholds),
                f"{key}.thresholds",
                f"must be in (0, {top}] for {self.threshold_distance} distances (got {self.thresholds})",
            )
        for i, s in enumerate(self.per_fpr):
            where = f"{key}.per_fpr[{i}]"
            check(
                any(math.isclose(s.fpr, f) for f in self.fprs),
                f"{where}.fpr",
                f"{s.fpr} is not one of pipeline.fprs {self.fprs}",
            )
            check(s.steps is None or s.steps >= 1, f"{where}.steps", f"must be >= 1 (got {s.steps})")
            check(s.lr is None or s.lr > 0, f"{where}.lr", f"must be > 0 (got {s.lr})")
        check(self.num_pairs >= 1, f"{key}.num_pairs", "must be >= 1")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.max_dev_pairs >= 1, f"{key}.max_dev_pairs", "must be >= 1")
        check(self.grid_examples >= 0, f"{key}.grid_examples", "must be >= 0")
        check(self.strawman_recon_steps >= 0, f"{key}.strawman_recon_steps", "must be >= 0")
        for i, node in enumerate(self.transfer_victims):
            check(
                isinstance(node, dict) and "name" in node,
                f"{key}.transfer_victims[{i}]",
                "must be a victim node with a name, e.g. {name: face_resnet50, checkpoint: r50s.pt, label: R-50-S}",
            )
            if not isinstance(node, dict):
                continue
            dim = node.get("embedding_dim")
            check(
                dim is None or (isinstance(dim, int) and dim >= 1),
                f"{key}.transfer_victims[{i}].embedding_dim",
                f"must be a positive integer (the target's task.embedding_dim) or absent (got {dim!r})",
            )
            thr = node.get("thresholds")
            check(
                thr is None or (isinstance(thr, (list, tuple)) and len(thr) == len(self.fprs)),
                f"{key}.transfer_victims[{i}].thresholds",
                f"needs one threshold per FPR of pipeline.fprs ({len(self.fprs)}) or null (chosen on the "
                f"target's own dev pairs), got {thr!r}",
            )
        ids = target_ids(self.transfer_victims)
        dup = sorted({i for i in ids if ids.count(i) > 1})
        check(
            not dup,
            f"{key}.transfer_victims",
            f"labels {dup} are used twice; give every target its own label",
        )
        self.generator.validate(f"{key}.generator")
        self.gan_train.validate(f"{key}.gan_train")


LANDMARK_REFERENCES = ("auto", "ground_truth", "prediction")


@dataclasses.dataclass
class SemanticAdvLandmarksPipelineConfig(PipelineConfig):
    """SemanticAdv on face landmark detection (section 4.3, appendix B, Table D)."""

    generator: StarGANConfig = dataclasses.field(default_factory=StarGANConfig)
    gan_train: GANTrainConfig = dataclasses.field(default_factory=GANTrainConfig)
    goals: list[str] = dataclasses.field(default_factory=lambda: ["rotating_eyes", "out_of_region"])
    num_images: int = 100  # test images attacked (each with every attribute of attack.attributes)
    image_seed: int = 0
    batch_size: int = 16  # source images per attack batch (x the number of attributes)
    #: the landmarks the targets and the NME box come from: the dataset's annotations (ground_truth), the victim's
    #: prediction on the source image (prediction), or auto (annotations when the dataset has them)
    reference: str = "auto"
    eval_images: int | None = 500  # test images for the victim's own NME to the annotations (null = all)
    grid_examples: int = 6

    def validate(self, key: str) -> None:
        from advlab.tasks.configs import LANDMARK_GOALS

        check(len(self.goals) >= 1, f"{key}.goals", "must list at least one goal")
        bad = [g for g in self.goals if g not in LANDMARK_GOALS]
        check(not bad, f"{key}.goals", f"{bad} are not goals; use {list(LANDMARK_GOALS)}")
        check(len(set(self.goals)) == len(self.goals), f"{key}.goals", f"has duplicates ({self.goals})")
        check(self.num_images >= 1, f"{key}.num_images", "must be >= 1")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(
            self.reference in LANDMARK_REFERENCES,
            f"{key}.reference",
            f"must be one of {LANDMARK_REFERENCES} (got '{self.reference}')",
        )
        check(self.eval_images is None or self.eval_images >= 1, f"{key}.eval_images", "must be >= 1 or null")
        check(self.grid_examples >= 0, f"{key}.grid_examples", "must be >= 0")
        self.generator.validate(f"{key}.generator")
        self.gan_train.validate(f"{key}.gan_train")


#: keys of a ``pipeline.transfer_victims`` node that belong to the pipeline, not to the victim: the target's id in
#: the tables, its embedding size (``task.embedding_dim`` of the target) and its given thresholds (one per
#: ``pipeline.fprs``, in the unit of ``pipeline.threshold_distance``; absent: chosen on its own dev pairs)
TARGET_KEYS = ("label", "embedding_dim", "thresholds")


def target_ids(nodes: list[Any]) -> list[str]:
    """Unique ids of the transfer targets: ``label`` when given, else the victim name, suffixed ``_<index>``
    when several unlabelled targets share that name."""
    names = [str(n.get("name")) for n in nodes]
    out = []
    for i, n in enumerate(nodes):
        if n.get("label") is not None:
            out.append(str(n["label"]))
        else:
            out.append(names[i] if names.count(names[i]) == 1 else f"{names[i]}_{i}")
    return out


@dataclasses.dataclass
class TransferConfig(PipelineConfig):
    targets: list[str] = dataclasses.field(default_factory=list)  # victim config names
    target_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> victim keys
    patches: dict[str, str] = dataclasses.field(default_factory=dict)  # source name -> perturbation.pt
    source: str | None = None  # name of attack.perturbation_path's source when `patches` is empty
    metric: str = "mIoU"  # the matrix's metric (any of the task's metrics)

    def validate(self, key: str) -> None:
        check(len(self.targets) >= 1, f"{key}.targets", "list at least one victim (conf/victim/<name>.yaml)")
        for source, path in self.patches.items():
            p = Path(os.path.expanduser(str(path)))
            check(p.is_file(), f"{key}.patches.{source}", f"file '{p}' does not exist")


PIPELINES: Registry = Registry("pipeline", "pipeline")
#: name -> (implementing module, config): the implementation is imported on first use
PIPELINES.declare("asl_par", "advlab.pipelines.asl_par", ASLPARPipelineConfig)
PIPELINES.declare("robustness_suite", "advlab.pipelines.robustness_suite", RobustnessSuiteConfig)
PIPELINES.declare("semantic_adv", "advlab.pipelines.semantic_adv", SemanticAdvPipelineConfig)
PIPELINES.declare(
    "semantic_adv_landmarks", "advlab.pipelines.semantic_adv_landmarks", SemanticAdvLandmarksPipelineConfig
)
PIPELINES.declare(
    "semantic_adv_street", "advlab.pipelines.semantic_adv_street", SemanticAdvStreetPipelineConfig
)
PIPELINES.declare("standard", "advlab.pipelines.standard", PipelineConfig)
PIPELINES.declare("transfer", "advlab.pipelines.transfer", TransferConfig)
