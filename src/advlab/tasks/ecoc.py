"""ECOC classification (error-correcting output codes, Verma & Swami 2019): each of the ``l`` classes has a
codeword ``c_k`` in {-1,+1}^n taken from a Hadamard matrix; the victim outputs ``n`` logits ``z``, one per
bit, with ``tanh`` as the per-bit output activation. Training minimises the per-bit hinge loss
``sum_j max(0, 1 - c_yj tanh(z_j))``. The decision is ``argmax_k s . c_k`` on the decision scores ``s``:
the logits (``decode=logits``, the default; the space the JMA attack linearises) or ``tanh(z)``
(``decode=tanh``, the ECOC paper's probabilities ``max(f.c_k, 0) / sum`` have the same argmax).

Targets are class indices (int64), like single-label classification: a random wrong class.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import ECOCConfig  # noqa: F401


def hadamard(n: int) -> Tensor:
    """Sylvester's Hadamard matrix of order ``n`` (a power of two), entries +-1, ``H H^T = n I``."""
    if n < 1 or n & (n - 1):
        raise ConfigError(f"task.code_length: Hadamard codes need a power of two (got {n})")
    h = torch.ones(1, 1)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard_codebook(num_classes: int, length: int, first_row: int | None = None) -> Tensor:
    """``[num_classes, length]`` codewords: consecutive rows of the order-``length`` Hadamard matrix from
    ``first_row``; by default (None) skipping the all-ones row 0 when there is room (it carries no
    information). ``first_row=0`` is the JMA authors' codebook (``hadamard16.npy`` / ``hadamard32.npy``, the
    same Sylvester matrix, classes from row 0). Any two codewords differ in exactly ``length/2`` bits."""
    h = hadamard(length)
    if num_classes > length:
        raise ConfigError(
            f"task.code_length: a {length}-bit Hadamard code has only {length} codewords but the dataset has "
            f"{num_classes} classes; use task.code_length >= {2 ** math.ceil(math.log2(num_classes))}"
        )
    start = (1 if num_classes <= length - 1 else 0) if first_row is None else first_row
    if start + num_classes > length:
        raise ConfigError(
            f"task.first_row: rows {start}..{start + num_classes - 1} for {num_classes} classes do not fit a "
            f"{length}-row Hadamard matrix; use task.first_row <= {length - num_classes}"
        )
    return h[start : start + num_classes].clone()


def codeword_constraints(
    scores: Tensor, codebook: Tensor, target: Tensor, confidence: float
) -> tuple[Tensor, Tensor]:
    """Constraints ``A d <= b`` on a displacement ``d`` of the decision scores meaning "``scores + d`` correlates
    with the target codeword more than with every other one, by ``confidence``":
    rows ``c_i - c_t`` and ``b_i = (c_t - c_i) . s - conf`` for every class ``i != t``. Shapes ``[B, l-1, n]``
    and ``[B, l-1]``."""
    codebook = codebook.to(scores)
    num = codebook.shape[0]
    others = torch.arange(num - 1, device=scores.device)[None, :]
    others = others + (others >= target[:, None]).long()  # every class index except the target's
    a = codebook[others] - codebook[target][:, None, :]
    b = -(a @ scores.unsqueeze(2)).squeeze(2) - confidence
    return a, b


def codeword_margin(scores: Tensor, codebook: Tensor, cls: Tensor, targeted: bool) -> Tensor:
    """Correlation margin: targeted ``max_{i!=t} s.c_i - s.c_t`` (negative iff decoded as t); untargeted the
    opposite sign for the true class."""
    corr = scores @ codebook.to(scores).t()
    own = corr.gather(1, cls[:, None]).squeeze(1)
    others = corr.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
    return others - own if targeted else own - others


def targets_from_error_pattern(rows: Tensor, codebook: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """Class targets from the official JMA target files: ``[B]`` class indices as they are, or an error
    pattern ``[B, L]`` in {-1,+1} (-1: flip that bit of the true codeword): the target is the class whose
    codeword correlates best with ``pattern * c_y``, or ``(y + 1) mod num_classes`` where that is ``y`` (as
    the official scripts decode them)."""
    if rows.dim() == 1:
        return rows.long().to(y.device)
    codebook = codebook.to(device=y.device, dtype=torch.float32)
    if rows.shape[1] != codebook.shape[1]:
        raise ConfigError(
            f"task.target_file: error patterns have {rows.shape[1]} bits but the code has {codebook.shape[1]}; "
            "use the file written for this code length"
        )
    if not bool(((rows == 1) | (rows == -1)).all()):
        raise ConfigError("task.target_file: an error pattern must hold only -1 (flip) and +1 (keep)")
    raw = rows.float() * codebook[y]
    target = (raw @ codebook.t()).argmax(dim=1)
    return torch.where(target == y, (y + 1) % num_classes, target)


def check_class_targets(y: Tensor, target: Tensor, num_classes: int) -> None:
    """Clear errors for class-index targets an attack cannot use."""
    if target.dim() != 1 or target.shape != y.shape:
        raise ValueError(
            f"class target must be a vector of class indices of shape {tuple(y.shape)}, got {tuple(target.shape)}"
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"class target must hold integer class indices, got dtype {target.dtype}")
    if bool(((target < 0) | (target >= num_classes)).any()):
        raise ValueError(f"class target out of range [0, {num_classes})")
    same = target == y
    if bool(same.any()):
        idx = same.nonzero().squeeze(1)[:8].tolist()
        raise ValueError(
            f"target equals the ground-truth class for samples {idx}: a targeted attack needs a different class"
        )


@TASKS.register("ecoc")
class ECOC(Task):
    Config = ECOCConfig

    def __init__(self, params: Any, info: DataInfo):
        super().__init__(params, info)
        self.codebook = hadamard_codebook(info.num_classes, params.code_length, params.first_row)

    @property
    def num_outputs(self) -> int:
        return self.params.code_length

    def decision_features(self, outputs: Tensor) -> Tensor:
        """The scores correlated with the codewords (differentiable in the outputs)."""
        return torch.tanh(outputs) if self.params.decode == "tanh" else outputs

    def correlations(self, outputs: Tensor) -> Tensor:
        return self.decision_features(outputs) @ self.codebook.to(outputs).t()

    def predict(self, outputs: Tensor) -> Tensor:
        return self.correlations(outputs).argmax(dim=1)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        code = self.codebook.to(outputs)[y]
        return torch.relu(self.params.hinge_margin - code * torch.tanh(outputs)).sum(dim=1).mean()

    # ---- attacks -------------------------------------------------------------------------------------
    def output_code(self, target: Tensor) -> Tensor:
        """Desired sign of every output bit for class ``target``: its codeword."""
        return self.codebook.to(target.device)[target]

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        # softmax cross-entropy over the codeword correlations
        logp = torch.log_softmax(self.correlations(outputs), dim=1)
        if target is None:
            return -logp.gather(1, y[:, None]).squeeze(1)
        return logp.gather(1, target[:, None]).squeeze(1)

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        feats = self.decision_features(outputs)
        if target is None:
            return codeword_margin(feats, self.codebook, y, targeted=False)
        return codeword_margin(feats, self.codebook, target, targeted=True)

    def target_constraints(
        self, features: Tensor, target: Tensor, confidence: float
    ) -> tuple[Tensor, Tensor]:
        return codeword_constraints(features, self.codebook, target, confidence)

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        pred = self.predict(outputs)
        return pred != y if target is None else pred == target

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self.predict(outputs) == y

    def targets_from_file(self, rows: Tensor, y: Tensor) -> Tensor:
        return targets_from_error_pattern(rows, self.codebook, y, self.info.num_classes)

    def check_target(self, y: Tensor, target: Tensor) -> None:
        check_class_targets(y, target, self.info.num_classes)

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        k = self.info.num_classes
        shift = torch.randint(1, k, y.shape, generator=generator, device="cpu").to(y.device)
        return (y + shift) % k

    # ---- metrics -------------------------------------------------------------------------------------
    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        meter.add("acc", self.correct(outputs, y).float())
        # bit accuracy: share of output signs equal to the true codeword
        meter.add("bit_acc", (torch.sign(outputs) == self.output_code(y)).float().mean(dim=1))

    def update_attack_metrics(
        self, meter: Meter, clean_outputs: Tensor, adv_outputs: Tensor, y: Tensor, target: Tensor | None
    ) -> None:
        super().update_attack_metrics(meter, clean_outputs, adv_outputs, y, target)
        if target is not None:
            from advlab.tasks.multilabel import bit_success_rate

            bits = (adv_outputs > 0).float()
            meter.add(
                "basr",
                bit_success_rate(
                    bits, (self.output_code(y) > 0).float(), (self.output_code(target) > 0).float()
                ),
            )
