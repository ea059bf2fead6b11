"""The pipeline configs: every parameter dataclass of ``advlab.pipelines``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from advlab.attacks.configs import ATTACKS
from advlab.errors import ConfigError
from advlab.loops.configs import GANTrainConfig
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
    source: str = "generate"  # generate (imagecorruptions, any dataset) | npy (CIFAR-10-C layout under root)
    root: str | None = None
    names: list[str] = dataclasses.field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 4, 5])
    num_examples: int | None = None  # first N test images per corruption/severity (null = all)
    batch_size: int = 256


@dataclasses.dataclass
class BaselineConfig:
    model: str | None = None  # a model of this suite, or of the results file below
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
class RobustnessSuiteConfig(PipelineConfig):
    models: dict[str, Any] = dataclasses.field(default_factory=dict)
    attacks: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_examples: int | None = None  # test images attacked per model (null = eval.num_examples)
    union: list[str] | None = None  # attacks that make up adv/union (null = all of them)
    corruption: CorruptionSuiteConfig = dataclasses.field(default_factory=CorruptionSuiteConfig)
    baseline: BaselineConfig = dataclasses.field(default_factory=BaselineConfig)

    def validate(self, key: str) -> None:
        check(len(self.models) > 0, f"{key}.models", "list at least one model ({name: overrides})")
        for name in [*self.models, *self.attacks]:
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
        check(c.source in ("generate", "npy"), f"{key}.corruption.source", "must be generate or npy")
        unknown = sorted(set(c.names) - set(CORRUPTIONS))
        check(
            not unknown, f"{key}.corruption.names", f"unknown {unknown}; available: {', '.join(CORRUPTIONS)}"
        )
        check(all(1 <= s <= 5 for s in c.severities) and c.severities, f"{key}.corruption.severities", "1..5")
        if c.enabled and c.source == "npy":
            check(c.root is not None, f"{key}.corruption.root", "set the CIFAR-10-C folder for source=npy")
        b = self.baseline
        chosen = [n for n, v in (("results", b.results), ("checkpoint", b.checkpoint)) if v]
        check(len(chosen) <= 1, f"{key}.baseline", "set at most one of results / checkpoint")
        if not chosen and b.model is not None:
            check(
                b.model in self.models, f"{key}.baseline.model", f"'{b.model}' is not in {list(self.models)}"
            )
        for name, path in (("results", b.results), ("checkpoint", b.checkpoint)):
            if path and not Path(os.path.expanduser(path)).is_file():
                raise ConfigError(f"{key}.baseline.{name}: file '{path}' does not exist")


@dataclasses.dataclass
class SemanticAdvPipelineConfig(PipelineConfig):
    generator: StarGANConfig = dataclasses.field(default_factory=StarGANConfig)
    gan_train: GANTrainConfig = dataclasses.field(default_factory=GANTrainConfig)
    fprs: list[float] = dataclasses.field(default_factory=lambda: [1e-3, 1e-4])
    thresholds: list[float] | None = None  # given distance thresholds, one per FPR (else chosen on dev)
    max_dev_pairs: int = 2_000_000
    num_pairs: int = 100
    pair_seed: int = 0
    batch_size: int = 16  # source images per attack batch (x the number of attributes)
    grid_examples: int = 6
    transfer_victims: list[Any] = dataclasses.field(default_factory=list)  # victim config nodes

    def validate(self, key: str) -> None:
        check(len(self.fprs) >= 1, f"{key}.fprs", "must list at least one FPR")
        check(all(0 < f < 1 for f in self.fprs), f"{key}.fprs", f"must be in (0, 1) (got {self.fprs})")
        if self.thresholds is not None:
            check(
                len(self.thresholds) == len(self.fprs),
                f"{key}.thresholds",
                f"needs one threshold per FPR ({len(self.fprs)}), got {len(self.thresholds)}",
            )
            check(all(0 < t <= 2 for t in self.thresholds), f"{key}.thresholds", "must be in (0, 2]")
        check(self.num_pairs >= 1, f"{key}.num_pairs", "must be >= 1")
        check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        check(self.max_dev_pairs >= 1, f"{key}.max_dev_pairs", "must be >= 1")
        check(self.grid_examples >= 0, f"{key}.grid_examples", "must be >= 0")
        self.generator.validate(f"{key}.generator")
        self.gan_train.validate(f"{key}.gan_train")


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
PIPELINES.declare("standard", "advlab.pipelines.standard", PipelineConfig)
PIPELINES.declare("transfer", "advlab.pipelines.transfer", TransferConfig)
