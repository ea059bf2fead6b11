"""Multi-label classification: ``n`` independent presence labels per image, targets are multi-hot float
vectors in {0, 1}. The victim outputs one logit per label; a label is predicted present when its sigmoid is
above 0.5, i.e. when its logit is positive. Training uses binary cross-entropy, the asymmetric loss (ASL,
Ridnik et al. 2021), as the JMA paper does for MS-COCO / NUS-WIDE, or Keras' categorical hinge on the sigmoid
outputs (``loss: categorical_hinge``), as the JMA paper trains its VOC InceptionV3.

Targeted attacks need a whole label vector: ``target_mode`` picks how the evaluation draws it (seeded by the
evaluation's generator and saved to ``targets.pt`` in the run folder):

- ``flip``: ``flip_bits`` random labels of the ground truth are inverted (the JMA paper's 5/10/20-bit
  tables),
- ``train``: a label vector drawn uniformly from the distinct vectors of the training split, different from
  the ground truth (the paper's "target from the training set" tables, also what LOTS needs),
- ``all_zero``: every label off (the paper's NUS-WIDE "remove all labels" table).

Attack metrics: ``asr`` (the whole predicted vector equals the target) and ``basr`` (the share of the labels
the target changes, w.r.t. the ground truth, that the attack flipped as asked).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import TARGET_MODES, MultiLabelConfig  # noqa: F401


def asymmetric_loss(logits: Tensor, y: Tensor, gamma_neg: float, gamma_pos: float, clip: float) -> Tensor:
    """ASL (Ridnik et al., ICCV 2021), summed over labels and averaged over the batch: focal weights
    ``(1-p)^gamma_pos`` on positives, and on negatives the shifted probability ``p_m = max(p - clip, 0)`` with
    weight ``p_m^gamma_neg``."""
    p = torch.sigmoid(logits)
    p_neg = (p - clip).clamp(min=0) if clip > 0 else p
    loss_pos = y * (1 - p).pow(gamma_pos) * F.logsigmoid(logits)
    # log(1 - p_m), with 1 - p_m >= 1 - p > 0; clamp for float safety
    loss_neg = (1 - y) * p_neg.pow(gamma_neg) * torch.log((1 - p_neg).clamp(min=1e-8))
    return -(loss_pos + loss_neg).sum(dim=1).mean()


def categorical_hinge(logits: Tensor, y: Tensor) -> Tensor:
    """Keras' ``categorical_hinge``, the loss the JMA authors trained their VOC InceptionV3 with, on the
    model's sigmoid outputs ``p`` (their Keras model ends in a sigmoid layer) and multi-hot ``y`` in {0, 1}:
    per image ``max(0, max_j (1 - y_j) p_j - sum_j y_j p_j + 1)`` -- one hinge per image between the summed
    scores of its labels and the highest score of the others (0 when it has none) -- averaged over the batch."""
    p = torch.sigmoid(logits)
    y = y.to(p.dtype)
    positive = (y * p).sum(dim=1)
    negative = ((1 - y) * p).amax(dim=1)
    return (negative - positive + 1).clamp(min=0).mean()


def average_precision(scores: Tensor, labels: Tensor) -> Tensor:
    """Per-class average precision ``[C]`` (area under the precision-recall curve as the mean of the precision
    at each positive, in score order — scikit-learn's definition, ties broken by sort order). Classes with no
    positive get NaN."""
    order = scores.argsort(dim=0, descending=True)
    lab = labels.gather(0, order).float()
    tp = lab.cumsum(0)
    rank = torch.arange(1, lab.shape[0] + 1, device=lab.device, dtype=lab.dtype)[:, None]
    precision = tp / rank
    npos = lab.sum(0)
    ap = (precision * lab).sum(0) / npos
    return torch.where(npos > 0, ap, torch.full_like(ap, float("nan")))


class MultiLabelMeter(Meter):
    """Means of per-sample values plus ``mAP`` over all scores seen (kept on the device)."""

    def __init__(self) -> None:
        super().__init__()
        self.scores: list[Tensor] = []
        self.labels: list[Tensor] = []

    def add_scores(self, scores: Tensor, labels: Tensor) -> None:
        self.scores.append(scores.detach().float())
        self.labels.append(labels.detach().float())

    def to(self, device: torch.device | str) -> MultiLabelMeter:
        super().to(device)
        self.scores = [s.to(device) for s in self.scores]
        self.labels = [s.to(device) for s in self.labels]
        return self

    def merge(self, other: Meter) -> MultiLabelMeter:
        super().merge(other)
        self.scores += other.scores  # in shard order: the unsharded run's concatenation
        self.labels += other.labels
        return self

    def compute(self) -> dict[str, float]:
        out = super().compute()
        if self.scores:
            ap = average_precision(torch.cat(self.scores), torch.cat(self.labels))
            valid = ~torch.isnan(ap)
            if bool(valid.any()):
                out["mAP"] = float(ap[valid].mean().item())
        return out


def check_target_vectors(y: Tensor, target: Tensor, num_labels: int) -> None:
    """Clear errors for targets an attack cannot use: wrong shape, values outside {0,1}, equal to the truth."""
    if target.dim() != 2 or target.shape[1] != num_labels:
        raise ValueError(
            f"multi-label target must have shape [batch, {num_labels}] (multi-hot), got {tuple(target.shape)}"
        )
    if y.shape != target.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match the labels' {tuple(y.shape)}")
    if not bool(((target == 0) | (target == 1)).all()):
        raise ValueError("multi-label target must contain only 0 and 1 (a multi-hot label vector)")
    same = (target == y).all(dim=1)
    if bool(same.any()):
        idx = same.nonzero().squeeze(1)[:8].tolist()
        raise ValueError(
            f"target equals the ground-truth label vector for samples {idx}: a targeted attack needs a target "
            "different from the image's (correctly predicted) labels"
        )


@TASKS.register("multilabel")
class MultiLabel(Task):
    objective_metric = "exact_match"
    Config = MultiLabelConfig

    def __init__(self, params: Any, info: DataInfo):
        super().__init__(params, info)
        if params.target_mode == "flip" and params.flip_bits > info.num_classes:
            raise ConfigError(
                f"task.flip_bits: {params.flip_bits} bit flips asked but the dataset has only "
                f"{info.num_classes} labels; use task.flip_bits <= {info.num_classes}"
            )
        self.train_vectors: Tensor | None = None

    def attach_data(self, data: Any) -> None:
        """Collect the distinct training label vectors (for ``target_mode=train``)."""
        if self.params.target_mode != "train":
            return
        ds = data.dataset("train")
        if hasattr(ds, "labels"):
            labels = ds.labels
        elif hasattr(ds, "tensors"):
            labels = ds.tensors[1]
        else:
            labels = torch.stack([torch.as_tensor(ds[i][1]) for i in range(len(ds))])
        self.set_train_vectors(labels)

    def set_train_vectors(self, labels: Tensor) -> None:
        vectors = torch.unique(labels.float(), dim=0)
        if vectors.shape[0] < 2:
            raise ConfigError(
                "task.target_mode=train: the training split has fewer than 2 distinct label vectors"
            )
        self.train_vectors = vectors

    @property
    def num_outputs(self) -> int:
        return self.info.num_classes

    def predict(self, outputs: Tensor) -> Tensor:
        return (outputs > 0).float()

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        p = self.params
        if p.loss == "asl":
            return asymmetric_loss(outputs, y.float(), p.asl_gamma_neg, p.asl_gamma_pos, p.asl_clip)
        if p.loss == "categorical_hinge":
            return categorical_hinge(outputs, y)
        return F.binary_cross_entropy_with_logits(outputs, y.float(), reduction="none").sum(dim=1).mean()

    # ---- attacks -------------------------------------------------------------------------------------
    def signs(self, labels: Tensor) -> Tensor:
        """Label vector in {0,1} -> desired logit signs in {-1,+1}."""
        return labels.float() * 2 - 1

    def output_code(self, target: Tensor) -> Tensor:
        """Desired sign of every output for ``target`` (used by per-output hinge attacks such as ML-C&W)."""
        return self.signs(target)

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return F.binary_cross_entropy_with_logits(outputs, y.float(), reduction="none").sum(dim=1)
        return -F.binary_cross_entropy_with_logits(outputs, target.float(), reduction="none").sum(dim=1)

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        # targeted: the worst label's signed logit, negated (negative iff every label is on the target side)
        if target is None:  # untargeted: succeed when some label is on the wrong side
            return (self.signs(y) * outputs).amin(dim=1)
        return -(self.signs(target) * outputs).amin(dim=1)

    def target_constraints(self, outputs: Tensor, target: Tensor, confidence: float) -> tuple[Tensor, Tensor]:
        """Linear constraints ``A d <= b`` on an output displacement ``d`` meaning "``outputs + d`` reaches the
        target with margin ``confidence``": ``t_j (z_j + d_j) >= conf`` for every label, i.e.
        ``A = -diag(t)``, ``b = t * z - conf`` (t in {-1,+1})."""
        t = self.signs(target).to(outputs.dtype)
        return torch.diag_embed(-t), t * outputs - confidence

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        pred = self.predict(outputs)
        if target is None:
            return (pred != y).any(dim=1)
        return (pred == target).all(dim=1)

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return (self.predict(outputs) == y).all(dim=1)

    def targets_from_file(self, rows: Tensor, y: Tensor) -> Tensor:
        """Target label vectors ``[B, labels]`` written in {0,1} or {-1,+1} (``y_tars_*error.npy``)."""
        if rows.dim() != 2 or rows.shape[1] != self.num_outputs:
            raise ConfigError(
                f"task.target_file: need [N, {self.num_outputs}] target label vectors, got rows {tuple(rows.shape)}"
            )
        if not bool(((rows == 0) | (rows == 1) | (rows == -1)).all()):
            raise ConfigError("task.target_file: target label vectors must hold 0/1 or -1/+1")
        return (rows > 0).to(y.dtype)

    def check_target(self, y: Tensor, target: Tensor) -> None:
        check_target_vectors(y, target, self.num_outputs)

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        p = self.params
        n, c = y.shape
        y_cpu = y.detach().float().cpu()
        if p.target_mode == "flip":
            # k distinct random positions per sample: the k smallest of n uniform keys
            keys = torch.rand(n, c, generator=generator)
            idx = keys.argsort(dim=1)[:, : p.flip_bits]
            flip = torch.zeros(n, c).scatter_(1, idx, 1.0)
            target = (y_cpu - flip).abs()
        elif p.target_mode == "all_zero":
            target = torch.zeros(n, c)
            empty = (y_cpu == 0).all(dim=1)
            if bool(empty.any()):
                raise ValueError(
                    f"task.target_mode=all_zero: {int(empty.sum())} test images have no label, so the all-zero "
                    "target equals their ground truth; drop unlabelled images (dataset.drop_empty=true)"
                )
        else:
            if self.train_vectors is None:
                raise ConfigError(
                    "task.target_mode=train needs the training label vectors (the runner attaches the data); "
                    "call task.attach_data(data) or task.set_train_vectors(labels) first"
                )
            pool = self.train_vectors
            draw = torch.randint(len(pool), (n,), generator=generator)
            for _ in range(100):  # redraw the few that hit the ground truth
                same = (pool[draw] == y_cpu).all(dim=1)
                if not bool(same.any()):
                    break
                draw[same] = torch.randint(len(pool), (int(same.sum()),), generator=generator)
            else:
                raise ValueError("task.target_mode=train: could not draw a target different from the labels")
            target = pool[draw].clone()
        return target.to(y.device)

    # ---- metrics -------------------------------------------------------------------------------------
    def meter(self) -> Meter:
        return MultiLabelMeter()

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        pred = self.predict(outputs)
        meter.add("exact_match", (pred == y).all(dim=1).float())
        meter.add("hamming", (pred != y).float().mean(dim=1))  # Hamming loss: share of wrong labels
        if isinstance(meter, MultiLabelMeter):
            meter.add_scores(outputs, y)

    def update_attack_metrics(
        self, meter: Meter, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> None:
        super().update_attack_metrics(meter, clean_outputs, adv_outputs, y, target)
        if target is not None:
            meter.add("basr", bit_success_rate(self.predict(adv_outputs), y, target))


def bit_success_rate(pred: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Per sample: the share of the bits the target changes (``target != y``) that ``pred`` has as the target
    asks. Samples whose target changes no bit count as 1."""
    asked = target != y
    done = (pred == target) & asked
    n = asked.sum(dim=1)
    return torch.where(n > 0, done.sum(dim=1).float() / n.clamp(min=1), torch.ones_like(n, dtype=torch.float))
