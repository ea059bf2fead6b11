"""The attack configs: every parameter dataclass of ``advlab.attacks``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from advlab.perceptual.configs import LPIPSConfig
from advlab.registry import ComponentConfig, Registry, check

PLACEMENTS = ("centre", "random", "top_left", "top_right", "bottom_left", "bottom_right")
EOT_LOSSES = ("correct", "all", "gamma")  # eot_patch: the loss over the pixels


NORMS = ("linf", "l2")
VERSIONS = ("standard", "plus", "rand")  # AutoAttack
PROJECTIONS = ("boundary", "authors")  # perceptual attacks: where the LPIPS projection lands


@dataclasses.dataclass
class AttackConfig(ComponentConfig):
    targeted: bool = False  # targets drawn by the task (e.g. a random wrong class), seeded


@dataclasses.dataclass
class CWL2Config(AttackConfig):
    steps: int = 1000
    binary_search_steps: int = 9
    lr: float = 0.01
    initial_const: float = 1e-3
    kappa: float = 0.0  # confidence
    abort_early: bool = True
    distortion_weight: float = 1.0  # w on ||x' - x||^2 (SemanticAdv's C&W baseline: 5)

    def validate(self, key: str) -> None:
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.binary_search_steps >= 1, f"{key}.binary_search_steps", "must be >= 1")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(self.initial_const > 0, f"{key}.initial_const", f"must be > 0 (got {self.initial_const})")
        check(self.kappa >= 0, f"{key}.kappa", f"must be >= 0 (got {self.kappa})")
        check(self.distortion_weight > 0, f"{key}.distortion_weight", "must be > 0")


@dataclasses.dataclass
class ECOCAttackConfig(AttackConfig):
    targeted: bool = True
    steps: int = 2000  # n_it,max per binary-search step
    binary_search_steps: int = 10  # n_bs
    lr: float = 0.01
    initial_const: float = 0.1  # lambda
    eta: float = 0.1  # confidence threshold of the worst target bit (decision-score units)
    abort_early: bool = True

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "the ECOC attack is targeted; set attack.targeted=true")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.binary_search_steps >= 1, f"{key}.binary_search_steps", "must be >= 1")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(self.initial_const > 0, f"{key}.initial_const", f"must be > 0 (got {self.initial_const})")
        check(self.eta > 0, f"{key}.eta", f"must be > 0 (got {self.eta})")


@dataclasses.dataclass
class FGSMConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")


@dataclasses.dataclass
class JMAConfig(AttackConfig):
    targeted: bool = True
    step: float = 0.5  # epsilon: L2 length of the update when the linear step misses the target
    max_iters: int = 100  # n_it,max (paper: 100 one-hot/ECOC, 200 VOC)
    binary_search_steps: int = 6  # n_bs
    confidence: float = 0.0  # margin asked of the linearised target region (logit units)
    boundary_margin: float = 1e-4  # relative tightening so a confidence-0 step lands inside the target region
    box_iters: int = (
        20  # active-set rounds of the box-constrained step where x + delta leaves [0,1] (0: clip)
    )
    jacobian_chunk: int | None = None  # outputs per vectorised backward (None = all at once); lowers memory

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "JMA is a targeted attack; set attack.targeted=true")
        check(self.step > 0, f"{key}.step", f"must be > 0 (got {self.step})")
        check(self.max_iters >= 1, f"{key}.max_iters", f"must be >= 1 (got {self.max_iters})")
        check(self.binary_search_steps >= 0, f"{key}.binary_search_steps", "must be >= 0")
        check(self.confidence >= 0, f"{key}.confidence", f"must be >= 0 (got {self.confidence})")
        check(
            0 <= self.boundary_margin < 0.1,
            f"{key}.boundary_margin",
            f"must be in [0, 0.1) (got {self.boundary_margin})",
        )
        check(self.box_iters >= 0, f"{key}.box_iters", f"must be >= 0 (got {self.box_iters})")
        check(
            self.jacobian_chunk is None or self.jacobian_chunk >= 1,
            f"{key}.jacobian_chunk",
            "must be >= 1 or null",
        )


@dataclasses.dataclass
class LOTSConfig(AttackConfig):
    targeted: bool = True
    max_iters: int = 2000
    step: float = 1 / 255
    num_target_images: int = 20
    batch_size: int = 256  # for computing the training logits
    seed: int = 0

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "LOTS is a targeted attack; set attack.targeted=true")
        check(self.max_iters >= 1, f"{key}.max_iters", f"must be >= 1 (got {self.max_iters})")
        check(self.step > 0, f"{key}.step", f"must be > 0 (got {self.step})")
        check(self.num_target_images >= 1, f"{key}.num_target_images", "must be >= 1")


@dataclasses.dataclass
class MLALPConfig(AttackConfig):
    targeted: bool = True
    max_iters: int = 100  # n_it,max (paper: 100 multi-label, up to 3000 ECOC)
    confidence: float = 0.0  # initial logit margin kappa asked of every label
    margin_step: float = 0.1  # extra margin for labels still on the wrong side after a step
    jacobian_chunk: int | None = None  # outputs per vectorised backward (None = all at once)

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "MLA-LP is a targeted attack; set attack.targeted=true")
        check(self.max_iters >= 1, f"{key}.max_iters", f"must be >= 1 (got {self.max_iters})")
        check(self.confidence >= 0, f"{key}.confidence", f"must be >= 0 (got {self.confidence})")
        check(self.margin_step >= 0, f"{key}.margin_step", f"must be >= 0 (got {self.margin_step})")
        check(
            self.jacobian_chunk is None or self.jacobian_chunk >= 1,
            f"{key}.jacobian_chunk",
            "must be >= 1 or null",
        )


@dataclasses.dataclass
class PerceptualConfig(AttackConfig):
    bound: float = 0.5  # LPIPS bound epsilon
    steps: int = 40
    step_size: float | None = None  # attack-specific default
    # margin loss: maximise min(-margin, kappa) (C&W f6); null = uncapped (the authors' kappa = inf)
    kappa: float | None = 1.0
    init_std: float = 0.01  # start from x + N(0, init_std^2)
    lpips: LPIPSConfig = dataclasses.field(default_factory=LPIPSConfig)

    def validate(self, key: str) -> None:
        check(self.bound > 0, f"{key}.bound", f"must be > 0 (got {self.bound})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(
            self.kappa is None or (math.isfinite(self.kappa) and self.kappa >= 0),
            f"{key}.kappa",
            f"must be a finite number >= 0, or null for an uncapped margin (got {self.kappa}); "
            "the authors' kappa = inf is kappa: null",
        )
        check(self.init_std >= 0, f"{key}.init_std", f"must be >= 0 (got {self.init_std})")
        check(
            self.step_size is None or self.step_size > 0,
            f"{key}.step_size",
            f"must be > 0 (got {self.step_size})",
        )
        self.lpips.validate(f"{key}.lpips")


@dataclasses.dataclass
class ProjectedPerceptualConfig(PerceptualConfig):
    """Perceptual attacks that end (LPA) or every step (PPGD) project onto the LPIPS ball."""

    newton_steps: int = 10  # the authors' max_iterations; bisection takes over for examples still outside
    # where the Newton projection lands. 'boundary': each step aims 1% inside the bound, i.e. at the ball's
    # boundary, as a projection onto the ball does. 'authors': their NewtonsPerceptualProjection, which aims 0.1
    # inside the bound, lengthens the step by 10% and sums the gradients of its successive iterations (it never
    # zeroes them): it lands well inside (mean LPIPS ~0.42 of a 0.5 bound in PPGD), a weaker attack
    projection: str = "boundary"

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.newton_steps >= 0, f"{key}.newton_steps", f"must be >= 0 (got {self.newton_steps})")
        check(
            self.projection in PROJECTIONS,
            f"{key}.projection",
            f"must be one of {PROJECTIONS} (got '{self.projection}')",
        )


@dataclasses.dataclass
class PGDConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255
    step_size: float | None = None  # default 2.5 * eps / steps
    steps: int = 10
    restarts: int = 1
    random_start: bool = True
    early_stop: bool = True

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.restarts >= 1, f"{key}.restarts", f"must be >= 1 (got {self.restarts})")
        check(
            self.step_size is None or self.step_size > 0,
            f"{key}.step_size",
            f"must be > 0 (got {self.step_size})",
        )


@dataclasses.dataclass
class SemAMLConfig(AttackConfig):
    targeted: bool = True
    max_iters: int = 300  # n_it,max (the JMA paper: 300, following the official code)
    norm: str = "linf"  # linf | l2: the perturbation bound
    eps: float = 0.03  # radius of the perturbation ball
    step_size: float = 0.002  # per-step move (linf: per pixel; l2: L2 length)
    confidence: float = 0.0  # kappa: logit margin asked of every label
    keep_weight: float = 1.0  # weight of the hinges of the labels that must keep their value
    graph_path: str | None = None  # label implications [child, parent]; null = the dataset's, or none

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "SemA-ML is a targeted attack; set attack.targeted=true")
        check(self.max_iters >= 1, f"{key}.max_iters", f"must be >= 1 (got {self.max_iters})")
        check(self.norm in ("linf", "l2"), f"{key}.norm", f"must be linf or l2 (got '{self.norm}')")
        check(self.eps > 0, f"{key}.eps", f"must be > 0 (got {self.eps})")
        check(self.step_size > 0, f"{key}.step_size", f"must be > 0 (got {self.step_size})")
        check(self.confidence >= 0, f"{key}.confidence", f"must be >= 0 (got {self.confidence})")
        check(self.keep_weight >= 0, f"{key}.keep_weight", f"must be >= 0 (got {self.keep_weight})")


@dataclasses.dataclass
class SemanticAdvConfig(AttackConfig):
    targeted: bool = True
    interpolation: str = "feature"  # feature | attribute
    feature_layer: str = "last_res"  # f0 = last_res (paper default) | f-2 | f-1 | f1 | f2 | up1 | res<k>
    recon_steps: int = 300
    recon_lr: float = 0.01
    recon_image_weight: float = 0.0  # weight of MSE(x', x) in the pre-step (official code: 1.0)
    steps: int = 200
    lr: float = 0.05
    alpha_init: float = 0.8
    alpha_min: float = 0.6
    alpha_max: float = 1.0
    tv_weight: float = 0.01
    early_stop: bool = True
    attributes: list[str] | None = None  # attributes to edit, one attack each (None = all)

    def validate(self, key: str) -> None:
        check(
            self.interpolation in ("feature", "attribute"),
            f"{key}.interpolation",
            f"must be feature or attribute (got '{self.interpolation}')",
        )
        check(self.recon_steps >= 0, f"{key}.recon_steps", "must be >= 0")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.lr > 0 and self.recon_lr > 0, key, "lr and recon_lr must be > 0")
        check(
            0.0 <= self.alpha_min <= self.alpha_init <= self.alpha_max <= 1.0,
            f"{key}.alpha_init",
            f"need 0 <= alpha_min <= alpha_init <= alpha_max <= 1 (got {self.alpha_min}, {self.alpha_init}, "
            f"{self.alpha_max})",
        )
        check(self.tv_weight >= 0, f"{key}.tv_weight", "must be >= 0")
        check(self.recon_image_weight >= 0, f"{key}.recon_image_weight", "must be >= 0")
        if self.attributes is not None:
            check(
                len(self.attributes) >= 1, f"{key}.attributes", "must list at least one attribute or be null"
            )


@dataclasses.dataclass
class UniversalConfig(AttackConfig):
    epochs: int = 5  # passes over the training split
    batch_size: int = 32
    lr: float = 0.01
    max_batches_per_epoch: int | None = None  # cap the optimisation (None = the whole split)
    perturbation_path: str | None = None  # a saved perturbation.pt to apply instead of optimising

    def validate(self, key: str) -> None:
        check(self.epochs >= 1, f"{key}.epochs", f"must be >= 1 (got {self.epochs})")
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1 (got {self.batch_size})")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(
            self.max_batches_per_epoch is None or self.max_batches_per_epoch >= 1,
            f"{key}.max_batches_per_epoch",
            "must be >= 1 or null",
        )
        if self.perturbation_path:
            path = Path(os.path.expanduser(self.perturbation_path))
            check(path.is_file(), f"{key}.perturbation_path", f"file '{path}' does not exist")


@dataclasses.dataclass
class MLCWConfig(CWL2Config):
    """C&W's parameters (steps = n_it,max per binary-search step, initial_const = lambda, kappa = gamma, the
    confidence of every hinge) with the JMA paper's ML-C&W defaults; always targeted."""

    targeted: bool = True
    binary_search_steps: int = 10
    initial_const: float = 0.01

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "ML-C&W is a targeted attack; set attack.targeted=true")
        super().validate(key)


@dataclasses.dataclass
class LPAConfig(ProjectedPerceptualConfig):
    """LPA as the PAT authors evaluate with it (``LagrangePerceptualAttack(num_iterations=40)``)."""

    steps: int = 40  # per binary-search round (the authors' evaluation command: 40)
    binary_steps: int = 5
    lam: float = 0.01  # initial lambda
    lam_factor: float = 10.0  # lambda *= lam_factor after a round for the examples still outside the bound
    h: float = 0.1  # finite-difference size for the LPIPS step normalisation
    # which iterate a frozen example keeps: 'found' (the one found adversarial within the bound) or
    # 'after_step' (the authors' code: the iterate one step later, as their loop steps before it tests)
    freeze: str = "found"

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.binary_steps >= 1, f"{key}.binary_steps", "must be >= 1")
        check(
            self.freeze in ("found", "after_step"),
            f"{key}.freeze",
            f"must be 'found' or 'after_step' (got '{self.freeze}')",
        )
        check(self.lam > 0, f"{key}.lam", f"must be > 0 (got {self.lam})")
        check(self.lam_factor >= 1, f"{key}.lam_factor", f"must be >= 1 (got {self.lam_factor})")
        check(self.h > 0, f"{key}.h", f"must be > 0 (got {self.h})")


@dataclasses.dataclass
class FastLPAConfig(PerceptualConfig):
    """Fast-LPA as the authors define it (``FastLagrangePerceptualAttack``: kappa = inf, lambda ramp to
    ``lam * 0.1 ** (1 / steps)``, no projection)."""

    steps: int = 20
    kappa: float | None = None  # uncapped margin (the authors' kappa = inf)
    lam: float = (
        10.0  # lambda at step i: lam * 0.1 ** (1 - i / steps), from lam / 10 to lam * 0.1 ** (1 / steps)
    )
    h: float = 0.1

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.lam > 0, f"{key}.lam", f"must be > 0 (got {self.lam})")
        check(self.h > 0, f"{key}.h", f"must be > 0 (got {self.h})")


@dataclasses.dataclass
class PPGDConfig(ProjectedPerceptualConfig):
    """PPGD as the PAT authors evaluate with it (``PerceptualPGDAttack(num_iterations=40,
    projection='newtons')``)."""

    cg_iterations: int = 5
    # (J^T J + damping I): keeps CG well-posed where J is rank-deficient (the authors: no damping; advlab's
    # deliberate difference, negligible next to J^T J's non-zero eigenvalues)
    cg_damping: float = 1e-4
    cg_tolerance: float = 0.1  # an example's CG stops once its squared residual r.r < this (the authors')
    # J v in J^T J v and in the step's LPIPS size ||J delta||: null = exact Jacobian-vector products; a number
    # h = the authors' finite difference (phi(x + h v) - phi(x)) / h (their h = 1e-3), which is not small where
    # h * v is not: their steps come out ~10% shorter in LPIPS
    finite_difference_h: float | None = None

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.cg_iterations >= 1, f"{key}.cg_iterations", "must be >= 1")
        check(self.cg_damping >= 0, f"{key}.cg_damping", f"must be >= 0 (got {self.cg_damping})")
        check(self.cg_tolerance >= 0, f"{key}.cg_tolerance", f"must be >= 0 (got {self.cg_tolerance})")
        check(
            self.finite_difference_h is None or self.finite_difference_h > 0,
            f"{key}.finite_difference_h",
            f"must be > 0 or null (got {self.finite_difference_h})",
        )


@dataclasses.dataclass
class ASLPARConfig(UniversalConfig):
    eps: float | None = 10 / 255  # Linf bound; null = unconstrained (image box only)
    mode: str = "global"  # global | patch
    patch_size: int = 30  # side of the centred square patch at 224 px (scaled to the image size)
    objective: str = "both"  # both | label | semantic  (the paper's ablation switches)
    semantic_weight: float = 0.5  # weight of L_GL
    label_seed: int = 0  # seed of the label perturbation (per-group derangements)
    #: per_image: each image its own shift, fixed by the image and label_seed | fixed: one shift for every image
    #: (saved) | per_sample: redrawn per image and step | random: the random-label baseline (each group's
    #: positive count kept, positions drawn at random per image, fixed by the image and label_seed)
    label_shift: str = "per_image"
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    init: str = "zeros"  # zeros | uniform (uniform in [-eps, eps])
    epochs: int = 40
    batch_size: int = 48
    lr: float = 3e-3

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.eps is None or self.eps > 0, f"{key}.eps", f"must be > 0 or null (got {self.eps})")
        check(self.mode in ("global", "patch"), f"{key}.mode", f"must be global or patch (got '{self.mode}')")
        check(self.patch_size >= 1, f"{key}.patch_size", f"must be >= 1 (got {self.patch_size})")
        check(self.objective in ("both", "label", "semantic"), f"{key}.objective",
              f"must be both, label or semantic (got '{self.objective}')")  # fmt: skip
        check(self.semantic_weight >= 0, f"{key}.semantic_weight", "must be >= 0")
        check(0 <= self.momentum < 1, f"{key}.momentum", "must be in [0, 1)")
        check(self.warmup_epochs >= 0, f"{key}.warmup_epochs", "must be >= 0")
        check(
            self.init in ("zeros", "uniform"), f"{key}.init", f"must be zeros or uniform (got '{self.init}')"
        )
        check(
            not self.targeted, f"{key}.targeted", "ASL-PAR sets its own targets (shifted labels); leave false"
        )
        check(self.label_shift in LABEL_SHIFTS, f"{key}.label_shift",
              f"must be one of {', '.join(LABEL_SHIFTS)} (got '{self.label_shift}')")  # fmt: skip


LABEL_SHIFTS = ("per_image", "fixed", "per_sample", "random")


@dataclasses.dataclass
class EOTPatchConfig(UniversalConfig):
    patch_size: list[int] = dataclasses.field(default_factory=lambda: [200, 200])  # height, width (pixels)
    placement: str = "centre"  # centre | random | top_left | top_right | bottom_left | bottom_right
    lr: float = 0.005  # signed-gradient ascent step
    epochs: int = 30
    batch_size: int = 6
    eot: bool = True  # scene transforms during training (scale, crop, flip)
    scale_min: float = 0.5
    scale_max: float = 2.0
    crop: list[int] | None = dataclasses.field(default_factory=lambda: [1024, 1024])  # null = image size
    hflip: bool = True
    loss: str = "correct"  # correct (paper: CE over correctly classified pixels) | all | gamma (ref. [13])
    gamma: float | None = (
        None  # loss=gamma: weight of the correct-pixel term; null = |Omega_x|/|Omega| per batch
    )
    init: str = "uniform"  # uniform (paper) | grey
    curve_examples: int = 0  # test images scored after every epoch for the mIoU curve (0 = no curve)
    patch_path: str | None = None  # alias of perturbation_path: apply a saved patch (transfer)

    def validate(self, key: str) -> None:
        if self.patch_path and not self.perturbation_path:
            self.perturbation_path = self.patch_path
        super().validate(key)
        check(
            len(self.patch_size) == 2 and min(self.patch_size) >= 1,
            f"{key}.patch_size",
            f"must be [height, width] with positive sides (got {self.patch_size})",
        )
        check(self.placement in PLACEMENTS, f"{key}.placement", f"must be one of {PLACEMENTS}")
        check(
            0 < self.scale_min <= self.scale_max,
            f"{key}.scale_min",
            f"need 0 < scale_min <= scale_max (got {self.scale_min}, {self.scale_max})",
        )
        check(
            self.crop is None or (len(self.crop) == 2 and min(self.crop) >= 1),
            f"{key}.crop",
            f"must be [height, width] or null (got {self.crop})",
        )
        check(self.loss in EOT_LOSSES, f"{key}.loss", f"must be one of {EOT_LOSSES} (got '{self.loss}')")
        check(
            self.gamma is None or 0.0 <= self.gamma <= 1.0,
            f"{key}.gamma",
            f"must be in [0, 1] or null for the adaptive |Omega_x|/|Omega| (got {self.gamma})",
        )
        check(
            self.gamma is None or self.loss == "gamma",
            f"{key}.gamma",
            f"only weighs loss=gamma (got loss={self.loss}); set attack.loss=gamma or drop attack.gamma",
        )
        check(self.init in ("uniform", "grey"), f"{key}.init", f"must be uniform or grey (got '{self.init}')")
        check(self.curve_examples >= 0, f"{key}.curve_examples", "must be >= 0")


@dataclasses.dataclass
class UniversalLinfConfig(UniversalConfig):
    eps: float = 8 / 255
    lr: float = 1 / 255

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.eps > 0, f"{key}.eps", f"must be > 0 (got {self.eps})")


@dataclasses.dataclass
class APGDConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255
    steps: int = 100
    restarts: int = 1
    loss: str = "ce"  # ce (the task's objective) | dlr
    rho: float = 0.75
    momentum: float = 0.75
    eot_iter: int = 1  # gradient averaged over this many passes (randomised defenses)

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.restarts >= 1, f"{key}.restarts", f"must be >= 1 (got {self.restarts})")
        check(self.loss in ("ce", "dlr"), f"{key}.loss", f"must be ce or dlr (got '{self.loss}')")
        check(0 < self.rho < 1, f"{key}.rho", f"must be in (0, 1) (got {self.rho})")
        check(0 < self.momentum <= 1, f"{key}.momentum", f"must be in (0, 1] (got {self.momentum})")
        check(self.eot_iter >= 1, f"{key}.eot_iter", f"must be >= 1 (got {self.eot_iter})")


@dataclasses.dataclass
class APGDTConfig(APGDConfig):
    loss: str = "dlr"
    n_target_classes: int = 9

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.n_target_classes >= 1, f"{key}.n_target_classes", "must be >= 1")
        check(not self.targeted, f"{key}.targeted", "APGD-T picks its own targets; must be false")


@dataclasses.dataclass
class FABConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255  # the bound an adversarial point must meet to count
    steps: int = 100
    restarts: int = 1  # restarts after the first start from a random point at eps/2
    alpha_max: float = 0.1
    eta: float = 1.05  # overshoot of the projection
    beta: float = 0.9  # backward step after an adversarial point

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.restarts >= 1, f"{key}.restarts", f"must be >= 1 (got {self.restarts})")
        check(0 <= self.alpha_max <= 1, f"{key}.alpha_max", f"must be in [0, 1] (got {self.alpha_max})")
        check(self.eta >= 1, f"{key}.eta", f"must be >= 1 (got {self.eta})")
        check(0 < self.beta < 1, f"{key}.beta", f"must be in (0, 1) (got {self.beta})")


@dataclasses.dataclass
class FABTConfig(FABConfig):
    n_target_classes: int = 9

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.n_target_classes >= 1, f"{key}.n_target_classes", "must be >= 1")
        check(not self.targeted, f"{key}.targeted", "FAB-T picks its own targets; must be false")


@dataclasses.dataclass
class SquareConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255
    queries: int = 5000  # iterations (one query each) per restart
    restarts: int = 1
    p_init: float = 0.8
    loss: str = "margin"  # margin | ce
    rescale_schedule: bool = False  # AutoAttack's setting; the standalone reference default is true
    compact_every: int = 16  # drop the fooled examples from the batch every this many iterations

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.queries >= 1, f"{key}.queries", f"must be >= 1 (got {self.queries})")
        check(self.restarts >= 1, f"{key}.restarts", f"must be >= 1 (got {self.restarts})")
        check(0 < self.p_init <= 1, f"{key}.p_init", f"must be in (0, 1] (got {self.p_init})")
        check(self.loss in ("margin", "ce"), f"{key}.loss", f"must be margin or ce (got '{self.loss}')")
        check(self.compact_every >= 1, f"{key}.compact_every", f"must be >= 1 (got {self.compact_every})")


@dataclasses.dataclass
class AutoAttackConfig(AttackConfig):
    norm: str = "linf"
    eps: float = 8 / 255
    version: str = "standard"  # standard | plus | rand
    steps: int = 100  # APGD and FAB iterations
    n_target_classes: int = 9  # APGD-T and FAB-T
    queries: int = 5000  # Square
    p_init: float = 0.8  # Square
    restarts: int | None = None  # every stage's restarts (null: the version's)
    eot_iter: int = 20  # version rand: EOT passes per APGD gradient
    seed: int | None = None  # re-seed before each stage (the reference's seed); null: the run's stream

    def validate(self, key: str) -> None:
        check(self.norm in NORMS, f"{key}.norm", f"must be one of {NORMS} (got '{self.norm}')")
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.version in VERSIONS, f"{key}.version", f"must be one of {VERSIONS} (got '{self.version}')")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.n_target_classes >= 1, f"{key}.n_target_classes", "must be >= 1")
        check(self.queries >= 1, f"{key}.queries", f"must be >= 1 (got {self.queries})")
        check(
            self.restarts is None or self.restarts >= 1,
            f"{key}.restarts",
            f"must be >= 1 or null ({self.restarts})",
        )
        check(self.eot_iter >= 1, f"{key}.eot_iter", f"must be >= 1 (got {self.eot_iter})")
        check(
            not self.targeted, f"{key}.targeted", "AutoAttack is untargeted (APGD-T/FAB-T pick their targets)"
        )


@dataclasses.dataclass
class ReColorAdvConfig(AttackConfig):
    bound: float = 0.06  # Linf bound of the colour offsets, in the scaled CIELUV space
    steps: int = 100
    resolution: list[int] = dataclasses.field(default_factory=lambda: [16, 32, 32])  # grid points on L, u, v
    smoothness: float | None = None  # weight of the grid smoothness; null: the authors' 0.0036 / bound
    kappa: float | None = None  # margin cap; null: uncapped (the authors')
    optimizer: str = "adam"  # adam (the authors') | sign (signed steps of step_size)
    lr: float = 0.001  # Adam learning rate (the authors')
    step_size: float | None = None  # optimizer=sign: default 2.5 * bound / steps

    def validate(self, key: str) -> None:
        check(self.bound >= 0, f"{key}.bound", f"must be >= 0 (got {self.bound})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(
            len(self.resolution) == 3 and all(r >= 2 for r in self.resolution),
            f"{key}.resolution",
            f"must be three grid sizes >= 2 for L, u, v, e.g. [16, 32, 32] (got {self.resolution})",
        )
        check(self.smoothness is None or self.smoothness >= 0, f"{key}.smoothness", "must be >= 0 or null")
        check(self.kappa is None or self.kappa > 0, f"{key}.kappa", f"must be > 0 or null (got {self.kappa})")
        check(
            self.optimizer in ("adam", "sign"), f"{key}.optimizer", f"must be adam or sign ({self.optimizer})"
        )
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")


@dataclasses.dataclass
class StAdvConfig(AttackConfig):
    bound: float = 0.05
    steps: int = 100
    smoothness: float | None = None  # weight of the flow loss; null: the authors' 0.0025 / bound
    kappa: float | None = None  # margin cap; null: uncapped (the authors')
    optimizer: str = "adam"  # adam (the authors') | sign
    lr: float = 0.01  # Adam learning rate (the authors')
    step_size: float | None = None  # optimizer=sign: default 2.5 * bound / steps

    def validate(self, key: str) -> None:
        check(self.bound >= 0, f"{key}.bound", f"must be >= 0 (got {self.bound})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.smoothness is None or self.smoothness >= 0, f"{key}.smoothness", "must be >= 0 or null")
        check(self.kappa is None or self.kappa > 0, f"{key}.kappa", f"must be > 0 or null (got {self.kappa})")
        check(
            self.optimizer in ("adam", "sign"), f"{key}.optimizer", f"must be adam or sign ({self.optimizer})"
        )
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(self.step_size is None or self.step_size > 0, f"{key}.step_size", "must be > 0 or null")


@dataclasses.dataclass
class JPEGLinfConfig(AttackConfig):
    eps: float = 0.125  # the authors' bound: coefficients move by at most eps/2 quantisation steps
    steps: int = 100
    step_size: float | None = None  # default eps / sqrt(steps) (the authors')
    random_start: bool = True
    chroma_subsampling: bool = True  # 4:2:0 (the authors'); false: Cb and Cr at full resolution

    def validate(self, key: str) -> None:
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")


@dataclasses.dataclass
class MIFGSMConfig(AttackConfig):
    eps: float = 8 / 255
    steps: int = 10
    decay: float = 1.0  # mu, the momentum factor
    early_stop: bool = False

    def validate(self, key: str) -> None:
        check(self.eps >= 0, f"{key}.eps", f"must be >= 0 (got {self.eps})")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.decay >= 0, f"{key}.decay", f"must be >= 0 (got {self.decay})")


@dataclasses.dataclass
class DIFGSMConfig(MIFGSMConfig):
    diversity_prob: float = 0.5
    resize_rate: float = 330 / 299

    def validate(self, key: str) -> None:
        super().validate(key)
        check(
            0 <= self.diversity_prob <= 1,
            f"{key}.diversity_prob",
            f"must be in [0, 1] (got {self.diversity_prob})",
        )
        check(self.resize_rate >= 1, f"{key}.resize_rate", f"must be >= 1 (got {self.resize_rate})")


ATTACKS: Registry = Registry("attack", "attack")
#: name -> (implementing module, config): the implementation is imported on first use
ATTACKS.declare("apgd", "advlab.attacks.apgd", APGDConfig)
ATTACKS.declare("apgd_t", "advlab.attacks.apgd", APGDTConfig)
ATTACKS.declare("asl_par", "advlab.attacks.asl_par", ASLPARConfig)
ATTACKS.declare("apgd_ce_t", "advlab.attacks.apgd", APGDTConfig)
ATTACKS.declare("autoattack", "advlab.attacks.autoattack", AutoAttackConfig)
ATTACKS.declare("cw_l2", "advlab.attacks.cw", CWL2Config)
ATTACKS.declare("di_fgsm", "advlab.attacks.di_fgsm", DIFGSMConfig)
ATTACKS.declare("ecoc_attack", "advlab.attacks.ecoc_attack", ECOCAttackConfig)
ATTACKS.declare("eot_patch", "advlab.attacks.eot_patch", EOTPatchConfig)
ATTACKS.declare("fab", "advlab.attacks.fab", FABConfig)
ATTACKS.declare("fab_t", "advlab.attacks.fab", FABTConfig)
ATTACKS.declare("fast_lpa", "advlab.attacks.lpa", FastLPAConfig)
ATTACKS.declare("fgsm", "advlab.attacks.fgsm", FGSMConfig)
ATTACKS.declare("jma", "advlab.attacks.jma", JMAConfig)
ATTACKS.declare("jpeg_linf", "advlab.attacks.jpeg_linf", JPEGLinfConfig)
ATTACKS.declare("lots", "advlab.attacks.lots", LOTSConfig)
ATTACKS.declare("lpa", "advlab.attacks.lpa", LPAConfig)
ATTACKS.declare("mi_fgsm", "advlab.attacks.mi_fgsm", MIFGSMConfig)
ATTACKS.declare("ml_cw", "advlab.attacks.ml_cw", MLCWConfig)
ATTACKS.declare("mla_lp", "advlab.attacks.mla_lp", MLALPConfig)
ATTACKS.declare("none", "advlab.attacks.base", AttackConfig)
ATTACKS.declare("pgd", "advlab.attacks.pgd", PGDConfig)
ATTACKS.declare("ppgd", "advlab.attacks.ppgd", PPGDConfig)
ATTACKS.declare("recoloradv", "advlab.attacks.recoloradv", ReColorAdvConfig)
ATTACKS.declare("sema_ml", "advlab.attacks.sema_ml", SemAMLConfig)
ATTACKS.declare("semantic_adv", "advlab.attacks.semantic_adv", SemanticAdvConfig)
ATTACKS.declare("square", "advlab.attacks.square", SquareConfig)
ATTACKS.declare("stadv", "advlab.attacks.stadv", StAdvConfig)
ATTACKS.declare("universal_linf", "advlab.attacks.universal_noise", UniversalLinfConfig)
