"""Semantic segmentation: one class index per pixel (int64 ``[B, H, W]``, 255 = ignore), per-pixel softmax
cross-entropy, and confusion-matrix metrics accumulated on the device.

Metrics (phase prefix added by the loops): ``mIoU`` (mean over classes present in the ground truth or the
predictions, mmseg's convention), ``iou/<class>`` (NaN -> null for a class absent from both), ``pixel_acc``
(correct / labelled pixels), ``mAcc`` (mean per-class recall over classes present in the ground truth).

Per-sample attack objective (so PGD and other per-sample attacks run unchanged): the mean per-pixel loss over
a sample's labelled pixels (untargeted), or minus the mean per-pixel loss to a per-pixel target map. The
per-pixel loss is ``task.objective``: ``ce`` (softmax cross-entropy) or ``houdini`` (Cisse et al. 2017, the
surrogate of the pixel's 0-1 error, :func:`houdini_pixels`). A sample
counts as *correct* when its pixel accuracy is at least ``task.success_pixel_acc`` (0.5), an untargeted attack
succeeds when it pushes the pixel accuracy below that, a targeted one when at least that share of labelled
pixels takes the target class.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import IGNORE, SegmentationConfig  # noqa: F401
from advlab.tasks.houdini import houdini


class SegmentationMeter(Meter):
    """Adds a ``[K, K]`` confusion matrix (rows: ground truth, columns: prediction) to the base meter."""

    def __init__(self, class_names: list[str], ignore_index: int = IGNORE):
        super().__init__()
        self.class_names = class_names
        self.ignore_index = ignore_index
        self.confusion: Tensor | None = None

    def add_confusion(self, pred: Tensor, y: Tensor) -> None:
        k = len(self.class_names)
        valid = y != self.ignore_index
        if valid.any() and int(y[valid].max()) >= k:
            raise ValueError(f"segmentation label {int(y[valid].max())} >= num_classes {k} (and not ignore)")
        idx = y[valid].long() * k + pred[valid].long()
        counts = torch.bincount(idx, minlength=k * k).view(k, k)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def to(self, device: torch.device | str) -> SegmentationMeter:
        super().to(device)
        if self.confusion is not None:
            self.confusion = self.confusion.to(device)
        return self

    def merge(self, other: Meter) -> SegmentationMeter:
        super().merge(other)
        if other.confusion is not None:
            c = other.confusion if self.confusion is None else other.confusion.to(self.confusion.device)
            self.confusion = c.clone() if self.confusion is None else self.confusion + c
        return self

    def compute(self) -> dict[str, float]:
        out = super().compute()
        if self.confusion is None:
            return out
        out.update(confusion_metrics(self.confusion, self.class_names))
        return out


def confusion_metrics(confusion: Tensor, class_names: list[str]) -> dict[str, float]:
    """mIoU, per-class IoU, pixel accuracy and mean class accuracy from a ``[K, K]`` confusion matrix."""
    cm = confusion.double()
    tp = cm.diag()
    gt = cm.sum(1)
    pred = cm.sum(0)
    union = gt + pred - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    out = {
        "mIoU": float(iou[union > 0].mean()) if (union > 0).any() else math.nan,
        "mAcc": float(acc[gt > 0].mean()) if (gt > 0).any() else math.nan,
        "pixel_acc": float(tp.sum() / gt.sum()) if gt.sum() > 0 else math.nan,
    }
    out.update({f"iou/{name}": float(v) for name, v in zip(class_names, iou.tolist())})
    return out


def houdini_pixels(outputs: Tensor, goal: Tensor, targeted: bool) -> Tensor:
    """Per-pixel Houdini surrogate ``P[g(goal) - g(y_hat) < gamma] * l(y_hat, goal)`` of the 0-1 error, from
    logits ``[B, K, H, W]`` and a class map ``goal`` ``[B, H, W]`` (no ignore values; mask them afterwards).

    The score ``g`` of a label at a pixel is its logit; ``l`` the pixel's 0-1 error.

    - targeted (``goal`` = the adversarial target, the attacker minimises): ``y_hat`` is the prediction (the
      argmax), ``l = [y_hat != goal]``: Cisse et al.'s Eq. 4 as written, zero once the pixel reads the target;
    - untargeted (``goal`` = the ground truth, the attacker maximises): ``y_hat`` is the best-scoring label other
      than ``goal`` and ``l = 1``. On a wrong pixel that label *is* the prediction (the definition again); on a
      still-correct pixel the definition's ``y_hat = goal`` would give ``l = 0`` and no gradient at all, so the
      surrogate scores the flip to the runner-up instead (its 0-1 error is 1).
    """
    detached = outputs.detach()
    if targeted:
        y_hat = detached.argmax(dim=1)
        task_loss = (y_hat != goal).float()
    else:
        y_hat = detached.scatter(1, goal[:, None], float("-inf")).argmax(dim=1)
        task_loss = torch.ones(goal.shape, dtype=outputs.dtype, device=outputs.device)
    score_goal = outputs.gather(1, goal[:, None]).squeeze(1)
    score_hat = outputs.gather(1, y_hat[:, None]).squeeze(1)
    return houdini(score_goal, score_hat, task_loss)


@dataclasses.dataclass
class InstanceOutcome:
    """Per-sample scores of an instance-targeted segmentation attack (``[B]`` tensors)."""

    instance_success: Tensor  # share of the instance's pixels given the target label / no longer its class
    success: Tensor  # bool: instance_success >= task.success_pixel_acc
    instance_target_share: Tensor  # share of the instance's pixels predicted as the target label
    instance_own_share: Tensor  # share of the instance's pixels still predicted as the instance's class
    rest_pixel_acc: Tensor  # pixel accuracy on the labelled pixels outside the instance


def instance_goal(y: Tensor, mask: Tensor, target_label: int, ignore_index: int = IGNORE) -> Tensor:
    """The per-pixel target map of an instance attack: ``target_label`` on the instance's pixels ``mask``
    ``[B, H, W]`` (bool), ``ignore_index`` everywhere else (the rest of the image is not part of the goal)."""
    return torch.where(mask, torch.full_like(y, target_label), torch.full_like(y, ignore_index))


def instance_outcome(
    pred: Tensor,
    y: Tensor,
    mask: Tensor,
    instance_class: Tensor,
    target_label: int,
    mode: str,
    threshold: float,
    ignore_index: int = IGNORE,
) -> InstanceOutcome:
    """Score predictions ``pred`` ``[B, H, W]`` against one target instance per sample (``mask`` bool
    ``[B, H, W]``, its class ``instance_class`` ``[B]``). ``mode``: ``target`` (success = the share of the
    instance's pixels predicted as ``target_label``, e.g. cyclist -> pedestrian) or ``vanish`` (success = the
    share no longer predicted as the instance's class, e.g. the pedestrian vanishes)."""
    if mode not in ("target", "vanish"):
        raise ValueError(f"instance_outcome: mode must be target or vanish (got '{mode}')")
    area = mask.flatten(1).sum(1).clamp(min=1).float()
    share = lambda hit: (hit & mask).flatten(1).sum(1).float() / area  # noqa: E731
    target_share = share(pred == target_label)
    own_share = share(pred == instance_class.view(-1, 1, 1))
    rest = ~mask & (y != ignore_index)
    rest_acc = ((pred == y) & rest).flatten(1).sum(1).float() / rest.flatten(1).sum(1).clamp(min=1).float()
    score = target_share if mode == "target" else 1.0 - own_share
    return InstanceOutcome(score, score >= threshold, target_share, own_share, rest_acc)


@TASKS.register("segmentation")
class Segmentation(Task):
    Config = SegmentationConfig
    objective_metric = "mIoU"

    @property
    def num_outputs(self) -> int:
        return self.info.num_classes

    @property
    def ignore_index(self) -> int:
        return self.params.ignore_index

    def _fit(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Logits at the label's resolution (bilinear) when the victim's output is smaller or larger."""
        if outputs.shape[-2:] != y.shape[-2:]:
            outputs = F.interpolate(outputs, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return outputs

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs.argmax(dim=1)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self._fit(outputs, y), y, ignore_index=self.ignore_index)

    def _pixel_mean(self, values: Tensor, valid: Tensor) -> Tensor:
        """Per-sample mean of ``values`` over the valid pixels (0 for a sample without any)."""
        valid = valid.float()
        return (values * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)

    def pixel_loss(self, outputs: Tensor, goal: Tensor, targeted: bool = False) -> Tensor:
        """Per-pixel ``task.objective`` ``[B, H, W]`` of logits (at ``goal``'s resolution) to the class map
        ``goal``: cross-entropy or the Houdini surrogate of the 0-1 error (:func:`houdini_pixels`); 0 on ignored
        pixels. Untargeted attacks maximise it to the ground truth, targeted ones minimise it to the target."""
        valid = goal != self.ignore_index
        if self.params.objective == "houdini":
            h = houdini_pixels(outputs, torch.where(valid, goal, 0), targeted)
            return torch.where(valid, h, torch.zeros_like(h))
        return F.cross_entropy(outputs, goal, ignore_index=self.ignore_index, reduction="none")

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        outputs = self._fit(outputs, y)
        goal = y if target is None else target
        per_pixel = self.pixel_loss(outputs, goal, targeted=target is not None)
        per_sample = self._pixel_mean(per_pixel, goal != self.ignore_index)
        return per_sample if target is None else -per_sample

    def pixel_margins(self, outputs: Tensor, cls: Tensor) -> Tensor:
        """``logit[cls] - max other logit`` per pixel (``cls`` with ignore pixels set to any class)."""
        own = outputs.gather(1, cls[:, None]).squeeze(1)
        others = outputs.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
        return own - others

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        """Negative (or zero) exactly when :meth:`success`: the ``ceil(t*N)``-th largest per-pixel margin of the
        class that must win (``y`` untargeted, ``target`` targeted), with ``t = success_pixel_acc`` and ``N``
        labelled pixels; untargeted it is that value, targeted its negation with margins to the target."""
        outputs = self._fit(outputs, y)
        goal = y if target is None else target
        valid = goal != self.ignore_index
        m = self.pixel_margins(outputs, torch.where(valid, goal, 0))
        m = torch.where(valid, m, torch.full_like(m, float("-inf"))).flatten(1)
        n = valid.flatten(1).sum(1)
        k = torch.ceil(self.params.success_pixel_acc * n).long().clamp(min=1)
        kth = m.sort(dim=1, descending=True).values.gather(1, (k - 1)[:, None]).squeeze(1)
        kth = torch.where(n > 0, kth, torch.zeros_like(kth))
        return kth if target is None else -kth

    def pixel_acc(self, outputs: Tensor, y: Tensor, cls: Tensor | None = None) -> Tensor:
        """Per-sample share of labelled pixels predicted as ``cls`` (default: the ground truth)."""
        outputs = self._fit(outputs, y)
        goal = y if cls is None else cls
        valid = goal != self.ignore_index
        return self._pixel_mean((self.predict(outputs) == goal).float(), valid)

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self.pixel_acc(outputs, y) >= self.params.success_pixel_acc

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return ~self.correct(outputs, y)
        return self.pixel_acc(outputs, y, target) >= self.params.success_pixel_acc

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """A random wrong class per pixel (ignore pixels stay ignored)."""
        k = self.info.num_classes
        shift = torch.randint(1, k, y.shape, generator=generator, device="cpu").to(y.device)
        return torch.where(y == self.ignore_index, y, (y + shift) % k)

    def meter(self) -> SegmentationMeter:
        return SegmentationMeter(self.info.class_names, self.ignore_index)

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        outputs = self._fit(outputs, y)
        if isinstance(meter, SegmentationMeter):
            meter.add_confusion(self.predict(outputs), y)
        else:  # a plain meter (e.g. another loop's): pixel accuracy per sample
            meter.add("pixel_acc", self.pixel_acc(outputs, y))

    def example_grid(self, examples, path):
        from advlab.reporting.segmentation_pictures import save_segmentation_grid

        return save_segmentation_grid(examples, self.info.class_names, path, self.ignore_index)
