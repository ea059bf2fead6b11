"""The training and evaluation loop configs: every parameter dataclass of ``advlab.loops``, with its checks.

Importable without torch (or any model library), so that a command line is validated in full before
anything heavy is imported; the implementations import their config from here."""

from __future__ import annotations

import dataclasses

from advlab.registry import check


@dataclasses.dataclass
class EvalConfig:
    batch_size: int = 256
    num_examples: int | None = None  # evaluate N test images (None = all)
    subset: str = "first"  # first | random_correct | file: which N (advlab.data.subset)
    subset_file: str | None = None  # subset=file: .npy of test-set indices (the official JMA index files)
    grid_examples: int = 8  # adversarial examples shown in adv_examples.png (0 = no picture)
    # attack/lpips: null (off) | alex | vgg | squeeze (the lpips package's calibrated LPIPS; trunk weights from
    # TORCH_HOME) | alex_random (uncalibrated random trunk, tests only) | self (the victim's own features)
    lpips: str | None = None
    # sharded evaluation: this run evaluates shard `shard` of `num_shards` contiguous, equal slices of the
    # evaluated images (after subset / num_examples); advlab-merge combines the shards' run folders into the
    # unsharded run's results.json (advlab/merge.py, docs/cluster.md)
    shard: int = 0
    num_shards: int = 1

    def validate(self, key: str) -> None:
        check(self.num_shards >= 1, f"{key}.num_shards", f"must be >= 1 (got {self.num_shards})")
        check(
            0 <= self.shard < max(self.num_shards, 1),
            f"{key}.shard",
            f"must be in [0, {key}.num_shards) = [0, {self.num_shards}) (got {self.shard}); shards are numbered "
            "from 0, e.g. eval.shard=$SLURM_ARRAY_TASK_ID with --array=0-<num_shards - 1>",
        )
        check(
            self.lpips in (None, "alex", "vgg", "squeeze", "alex_random", "self"),
            f"{key}.lpips",
            f"must be null, alex, vgg, squeeze, alex_random or self (got '{self.lpips}')",
        )
        check(self.grid_examples >= 0, f"{key}.grid_examples", f"must be >= 0 (got {self.grid_examples})")
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1 (got {self.batch_size})")
        check(
            self.num_examples is None or self.num_examples >= 1, f"{key}.num_examples", "must be >= 1 or null"
        )
        check(
            self.subset in ("first", "random_correct", "file"),
            f"{key}.subset",
            f"must be first, random_correct or file (got '{self.subset}')",
        )
        check(
            (self.subset == "file") == (self.subset_file is not None),
            f"{key}.subset_file",
            f"set it exactly when {key}.subset=file (got subset={self.subset}, subset_file={self.subset_file})",
        )


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 64
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # none | cosine | multistep
    milestones: list[int] = dataclasses.field(default_factory=list)  # multistep epochs (x0.1 at each)
    warmup_epochs: int = 0
    grad_clip: float | None = None  # clip the gradient's global L2 norm
    grad_clip_value: float | None = (
        None  # clip every gradient entry to [-v, v] (the PAT authors' trainer: 1.0)
    )
    sync_bn: bool = True  # distributed training on GPUs: BatchNorm statistics over the global batch

    def validate(self, key: str) -> None:
        check(self.epochs >= 1, f"{key}.epochs", f"must be >= 1 (got {self.epochs})")
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1 (got {self.batch_size})")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(
            self.optimizer in ("adam", "sgd"),
            f"{key}.optimizer",
            f"must be adam or sgd (got '{self.optimizer}')",
        )
        check(
            self.schedule in ("none", "cosine", "multistep"),
            f"{key}.schedule",
            f"must be none, cosine or multistep (got '{self.schedule}')",
        )
        check(
            0 <= self.warmup_epochs < self.epochs,
            f"{key}.warmup_epochs",
            f"must be in [0, {key}.epochs) (got {key}.warmup_epochs={self.warmup_epochs}, {key}.epochs={self.epochs})",
        )
        for name in ("grad_clip", "grad_clip_value"):
            value = getattr(self, name)
            check(value is None or value > 0, f"{key}.{name}", f"must be > 0 or null (got {value})")


@dataclasses.dataclass
class LabelMapTrainConfig:
    """Training of the label-map-conditioned generator (loops/label_map_fit.py): L1 reconstruction of the image
    from its context (the image with an object's box erased) and the full label map, Adam."""

    iters: int = 20000
    batch_size: int = 16
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    box_margin: float = 0.25  # the erased box: an instance's bounding box grown by this share of its side
    box_weight: float = 4.0  # extra weight of the L1 inside the erased box (the region to synthesise)
    checkpoint_every: int = 500
    log_every: int = 100

    def validate(self, key: str) -> None:
        check(self.iters >= 1, f"{key}.iters", f"must be >= 1 (got {self.iters})")
        check(self.batch_size >= 1, f"{key}.batch_size", f"must be >= 1 (got {self.batch_size})")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(self.box_margin >= 0 and self.box_weight >= 0, key, "box_margin and box_weight must be >= 0")
        check(
            self.checkpoint_every >= 1 and self.log_every >= 1, key, "checkpoint_every/log_every must be >= 1"
        )


@dataclasses.dataclass
class GANTrainConfig:
    iters: int = 200000
    batch_size: int = 16
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    n_critic: int = 5
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_gp: float = 10.0
    lambda_adv: float = 1.0  # weight of the Wasserstein terms (StarGAN: 1)
    #: L1 to the exact counterfactual ``x(c')`` when the dataset can render it (synthfaces); StarGAN: 0.
    #: With lambda_adv = lambda_cls = 0 the discriminator is not trained at all (a supervised editor).
    lambda_paired: float = 0.0
    decay_iters: int = 100000  # linear lr decay to 0 over the last decay_iters
    checkpoint_every: int = 1000
    log_every: int = 100

    def validate(self, key: str) -> None:
        check(self.iters >= 1, f"{key}.iters", f"must be >= 1 (got {self.iters})")
        check(self.batch_size >= 2, f"{key}.batch_size", f"must be >= 2 (got {self.batch_size})")
        check(self.g_lr > 0 and self.d_lr > 0, key, "g_lr and d_lr must be > 0")
        check(self.n_critic >= 1, f"{key}.n_critic", "must be >= 1")
        check(0 <= self.decay_iters <= self.iters, f"{key}.decay_iters", "must be in [0, iters]")
        check(
            self.checkpoint_every >= 1 and self.log_every >= 1, key, "checkpoint_every/log_every must be >= 1"
        )
        check(
            min(self.lambda_adv, self.lambda_cls, self.lambda_rec, self.lambda_gp, self.lambda_paired) >= 0,
            key,
            "loss weights must be >= 0",
        )
