"""Pedestrian attribute recognition (PAR): multi-label attributes organised in body-part groups.

Targets are float multi-hot vectors ``[B, A]``. A victim's outputs are either logits ``[B, A]`` or stacked
heads ``[B, 1 + K, A]``: the classification logits first, then K auxiliary score maps trained with the same
loss and weighted by ``task.aux_weight`` (PromptPAR's global-local similarity, ``L = L_cls + 0.5 L_GL``).

Loss: PromptPAR's weighted BCE-with-logits, weight ``exp(y (1 - r) + (1 - y) r)`` with ``r`` the attribute's
positive rate in the training split, summed over attributes and averaged over the batch.

Metrics (prediction = sigmoid(logit) > ``threshold``; 0.45 as PromptPAR, 0.5 for the Rethinking-of-PAR
protocol; eps = 1e-20 as both):

- ``mA``: mean over attributes of ``(TP/P + TN/N) / 2`` over the whole split;
- ``instance_acc``, ``precision``, ``recall``: per sample ``|gt & pred| / |gt | pred|``, ``/ |pred|``,
  ``/ |gt|``, averaged over samples;
- ``f1``: ``task.f1=means`` (PromptPAR) ``2 P R / (P + R)`` from the averaged precision and recall;
  ``task.f1=instances`` (Rethinking-of-PAR) the mean of the per-sample F1.

Label perturbation (ASL-PAR's "shifted labels", also the task's attack targets): within each part group of
two or more attributes the positives move to other indices of the group by a derangement (every index of the
group goes elsewhere); a group of one attribute is flipped; attributes outside every group stay. Its random
baseline (:func:`random_group_labels`) keeps each group's positive count and places the positives at random.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import PARTaskConfig  # noqa: F401

EPS = 1e-20


@dataclasses.dataclass
class PARInfo(DataInfo):
    """:class:`DataInfo` of a PAR dataset: part groups, one sentence per attribute, training positive rates."""

    groups: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # [start, end) index ranges
    sentences: list[str] = dataclasses.field(default_factory=list)
    positive_rates: tuple[float, ...] | None = None  # per attribute, from the training split

    def __post_init__(self) -> None:
        a = len(self.class_names)
        if self.sentences and len(self.sentences) != a:
            raise ValueError(f"{len(self.sentences)} attribute sentences for {a} attributes")
        if self.positive_rates is not None and len(self.positive_rates) != a:
            raise ValueError(f"{len(self.positive_rates)} positive rates for {a} attributes")
        check_groups(self.groups, a)


def check_groups(groups: list[tuple[int, int]], num_attributes: int, key: str = "groups") -> None:
    """Groups are disjoint, non-empty [start, end) ranges inside [0, num_attributes)."""
    seen = torch.zeros(num_attributes, dtype=torch.bool)
    for g in groups:
        if len(g) != 2 or not (0 <= g[0] < g[1] <= num_attributes):
            raise ValueError(f"{key}: part group {tuple(g)} is not a range inside [0, {num_attributes})")
        if seen[g[0] : g[1]].any():
            raise ValueError(f"{key}: part group {tuple(g)} overlaps another group")
        seen[g[0] : g[1]] = True


def random_cycles(batch: int, size: int, generator: torch.Generator) -> Tensor:
    """``[batch, size]`` index maps, each a uniformly drawn cyclic permutation (a derangement for size >= 2):
    with ``t`` a random permutation, ``d[t[i]] = t[(i + 1) % size]``."""
    t = torch.rand(batch, size, generator=generator).argsort(dim=1)
    d = torch.empty_like(t)
    d.scatter_(1, t, t.roll(-1, dims=1))
    return d


def keyed_uniforms(keys: Tensor, size: int, seed: int) -> Tensor:
    """``[B, size]`` hash-based uniforms in [0, 1), a pure function of one float ``key`` per sample and
    ``seed``."""
    j = torch.arange(size, device=keys.device, dtype=torch.float64)
    phase = keys.double()[:, None] * (12.9898 + 78.233 * j) + 0.61803 * (seed + 1) * (j + 1)
    return torch.frac(torch.sin(phase) * 43758.5453)


def keyed_cycles(keys: Tensor, size: int, seed: int) -> Tensor:
    """``[B, size]`` cyclic permutations that are a pure function of one float ``key`` per sample and ``seed``
    (:func:`keyed_uniforms`, argsorted), so the same image always gets the same derangement without a sample
    index: ``d[t[i]] = t[(i + 1) % size]`` with ``t`` the key's random permutation."""
    t = keyed_uniforms(keys, size, seed).argsort(dim=1)
    d = torch.empty_like(t)
    d.scatter_(1, t, t.roll(-1, dims=1))
    return d


def shift_maps(groups: list[tuple[int, int]], batch: int, generator: torch.Generator) -> list[Tensor]:
    """One ``[batch, group size]`` destination map per group (see :func:`shift_labels`)."""
    return [random_cycles(batch, end - start, generator) for start, end in groups]


def shift_labels(y: Tensor, groups: list[tuple[int, int]], maps: list[Tensor]) -> Tensor:
    """Label perturbation: attribute ``start + i`` of a group moves to ``start + maps[g][b, i]``; a group of one
    attribute is flipped; attributes outside the groups are unchanged. ``maps[g]`` has one row (shared by the
    batch) or one row per sample."""
    out = y.clone()
    for (start, end), m in zip(groups, maps):
        if end - start == 1:
            out[:, start] = 1 - y[:, start]
            continue
        m = m.to(y.device).expand(y.shape[0], -1)
        seg = torch.zeros_like(y[:, start:end])
        seg.scatter_(1, m, y[:, start:end])
        out[:, start:end] = seg
    return out


def random_group_labels(y: Tensor, groups: list[tuple[int, int]], uniforms: list[Tensor]) -> Tensor:
    """The random-label baseline of the label perturbation: within each group, the sample's ``k`` positives are
    put on ``k`` random attributes of the group (the ``k`` smallest of ``uniforms[g][b]``), so every group keeps
    its positive count but *where* the positives go is random (they may stay); a group of one attribute keeps
    its label (its count fixes it); attributes outside the groups are unchanged."""
    out = y.clone()
    for (start, end), u in zip(groups, uniforms):
        count = y[:, start:end].sum(1, keepdim=True)
        rank = u.to(y.device).argsort(dim=1).argsort(dim=1)  # each attribute's rank in the sample's draw
        out[:, start:end] = (rank < count).to(y.dtype)
    return out


class PARMeter(Meter):
    """Accumulates per-attribute confusion counts (for mA) and per-sample instance metrics."""

    def __init__(self, names: list[str], f1: str) -> None:
        super().__init__()
        self.names = names
        self.f1_mode = f1
        self.counts_attr: dict[str, Tensor] = {}

    def add_confusion(self, pred: Tensor, y: Tensor) -> None:
        pred, y = pred.bool(), y.bool()
        stats = {
            "tp": (pred & y).sum(0),
            "tn": (~pred & ~y).sum(0),
            "pos": y.sum(0),
            "neg": (~y).sum(0),
        }
        for k, v in stats.items():
            v = v.to(torch.float64)
            self.counts_attr[k] = self.counts_attr[k] + v if k in self.counts_attr else v

    def to(self, device: torch.device | str) -> PARMeter:
        super().to(device)
        self.counts_attr = {k: v.to(device) for k, v in self.counts_attr.items()}
        return self

    def merge(self, other: Meter) -> PARMeter:
        super().merge(other)
        for k, v in other.counts_attr.items():  # float64 sums of integer counts: exact
            self.counts_attr[k] = (
                self.counts_attr[k] + v.to(self.counts_attr[k].device) if k in self.counts_attr else v
            )
        return self

    def per_attribute(self) -> dict[str, Tensor]:
        """Per attribute: positive recall ``tp/P``, negative recall ``tn/N`` and their mean (label accuracy)."""
        c = self.counts_attr
        pos_recall = c["tp"] / (c["pos"] + EPS)
        neg_recall = c["tn"] / (c["neg"] + EPS)
        return {"pos_recall": pos_recall, "neg_recall": neg_recall, "mA": (pos_recall + neg_recall) / 2}

    def compute(self) -> dict[str, float]:
        out = super().compute()
        if not self.counts_attr:
            return out
        out["mA"] = float(self.per_attribute()["mA"].mean())
        if self.f1_mode == "means":
            p, r = out.get("precision", 0.0), out.get("recall", 0.0)
            out["f1"] = 2 * p * r / (p + r + EPS)
        else:
            out["f1"] = out.pop("instance_f1", 0.0)
        out.pop("instance_f1", None)
        return out

    def attribute_table(self) -> str:
        """Markdown table of the per-attribute results."""
        stats = self.per_attribute()
        lines = ["| attribute | mA | pos recall | neg recall | positives |", "|---|---|---|---|---|"]
        for i, name in enumerate(self.names):
            lines.append(
                f"| {name} | {stats['mA'][i]:.4f} | {stats['pos_recall'][i]:.4f} | "
                f"{stats['neg_recall'][i]:.4f} | {int(self.counts_attr['pos'][i])} |"
            )
        return "\n".join(lines) + "\n"


def instance_metrics(pred: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Per-sample instance accuracy, precision, recall and F1 (eps 1e-20)."""
    pred, y = pred.bool(), y.bool()
    inter = (pred & y).sum(1).double()
    union = (pred | y).sum(1).double()
    n_pred, n_gt = pred.sum(1).double(), y.sum(1).double()
    prec, rec = inter / (n_pred + EPS), inter / (n_gt + EPS)
    return {
        "instance_acc": inter / (union + EPS),
        "precision": prec,
        "recall": rec,
        "instance_f1": 2 * prec * rec / (prec + rec + EPS),
    }


@TASKS.register("par")
class PAR(Task):
    objective_metric = "mA"
    Config = PARTaskConfig

    def __init__(self, params: Any, info: DataInfo):
        super().__init__(params, info)
        rates = getattr(info, "positive_rates", None)
        self.groups: list[tuple[int, int]] = [tuple(g) for g in getattr(info, "groups", [])]
        self.rates = None if rates is None else torch.tensor(rates, dtype=torch.float32)
        self.logit_threshold = math.log(params.threshold / (1 - params.threshold))

    @property
    def num_outputs(self) -> int:
        return self.info.num_classes

    # ---- outputs -----------------------------------------------------------------------------------
    @staticmethod
    def split_outputs(outputs: Tensor) -> tuple[Tensor, Tensor | None]:
        """(classification logits [B, A], auxiliary scores [B, K, A] or None)."""
        if outputs.dim() == 2:
            return outputs, None
        if outputs.dim() == 3:
            return outputs[:, 0], (outputs[:, 1:] if outputs.shape[1] > 1 else None)
        raise ValueError(f"PAR outputs must be [B, A] or [B, 1+K, A], got {tuple(outputs.shape)}")

    def predict(self, outputs: Tensor) -> Tensor:
        logits, _ = self.split_outputs(outputs)
        return (logits > self.logit_threshold).float()

    # ---- loss ----------------------------------------------------------------------------------------
    def bce(self, scores: Tensor, y: Tensor) -> Tensor:
        """Per-sample weighted BCE-with-logits, summed over attributes (and over auxiliary heads)."""
        if scores.dim() == 3:
            y = y[:, None].expand_as(scores)
        weight = None
        if self.params.weighted and self.rates is not None:
            r = self.rates.to(scores.device)
            weight = torch.exp(y * (1 - r) + (1 - y) * r)
        loss = F.binary_cross_entropy_with_logits(scores, y, weight=weight, reduction="none")
        return loss.flatten(1).sum(1)

    def per_sample_loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        logits, aux = self.split_outputs(outputs)
        loss = self.bce(logits, y)
        if aux is not None and self.params.aux_weight > 0:
            loss = loss + self.params.aux_weight * self.bce(aux, y)
        return loss

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self.per_sample_loss(outputs, y.float()).mean()

    # ---- attacks -------------------------------------------------------------------------------------
    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return self.per_sample_loss(outputs, y.float())
        return -self.per_sample_loss(outputs, target.float())

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        logits, _ = self.split_outputs(outputs)
        goal = y if target is None else target
        signed = (2 * goal.float() - 1) * (logits - self.logit_threshold)  # > 0: attribute as in `goal`
        # untargeted: negative once any attribute is wrong; targeted: negative once all match the target
        return signed.amin(1) if target is None else -signed.amin(1)

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return (self.predict(outputs) == y.float()).all(1)

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return ~self.correct(outputs, y)
        return (self.predict(outputs) == target.float()).all(1)

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Per-sample label perturbation within the part groups (random cyclic shifts, seeded)."""
        if not self.groups:
            raise ValueError("the PAR task needs part groups (dataset info) to draw shifted-label targets")
        return shift_labels(y, self.groups, shift_maps(self.groups, y.shape[0], generator))

    # ---- metrics -------------------------------------------------------------------------------------
    def meter(self) -> PARMeter:
        return PARMeter(list(self.info.class_names), self.params.f1)

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        pred = self.predict(outputs)
        if isinstance(meter, PARMeter):
            meter.add_confusion(pred, y)
        for name, values in instance_metrics(pred, y).items():
            meter.add(name, values)

    def update_attack_metrics(
        self, meter: Meter, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> None:
        super().update_attack_metrics(meter, clean_outputs, adv_outputs, y, target)
        changed = self.predict(adv_outputs) != self.predict(clean_outputs)
        meter.add("attr_flip_rate", changed.float().mean(1))
