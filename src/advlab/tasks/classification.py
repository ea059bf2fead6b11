"""Single-label classification: one class index per image, softmax cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import TargetFileConfig


@TASKS.register("classification")
class Classification(Task):
    Config = TargetFileConfig

    @property
    def num_outputs(self) -> int:
        return self.info.num_classes

    def predict(self, outputs: Tensor) -> Tensor:
        return outputs.argmax(dim=1)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(outputs, y)

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return F.cross_entropy(outputs, y, reduction="none")
        return -F.cross_entropy(outputs, target, reduction="none")

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        cls = y if target is None else target
        own = outputs.gather(1, cls[:, None]).squeeze(1)
        others = outputs.scatter(1, cls[:, None], float("-inf")).amax(dim=1)
        # untargeted: succeed when some other class beats the true one; targeted: when the target beats all
        return own - others if target is None else others - own

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        pred = self.predict(outputs)
        return pred != y if target is None else pred == target

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        return self.predict(outputs) == y

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        k = self.info.num_classes
        shift = torch.randint(1, k, y.shape, generator=generator, device="cpu").to(y.device)
        return (y + shift) % k

    def targets_from_file(self, rows: Tensor, y: Tensor) -> Tensor:
        """Class indices, or an error pattern over the Sylvester-Hadamard code of its length (rows in order,
        one per class; the official one-hot GTSRB script draws its targets with ``hadamard32.npy``)."""
        from advlab.tasks.ecoc import hadamard, targets_from_error_pattern

        if rows.dim() == 1:
            return rows.long().to(y.device)
        code = hadamard(rows.shape[1])[: self.num_outputs]
        return targets_from_error_pattern(rows, code, y, self.num_outputs)

    def check_target(self, y: Tensor, target: Tensor) -> None:
        from advlab.tasks.ecoc import check_class_targets

        check_class_targets(y, target, self.info.num_classes)

    def target_constraints(
        self, features: Tensor, target: Tensor, confidence: float
    ) -> tuple[Tensor, Tensor]:
        """One-hot codewords: ``z_t - z_i >= conf`` for every ``i != t``."""
        from advlab.tasks.ecoc import codeword_constraints

        eye = torch.eye(self.num_outputs, device=features.device, dtype=features.dtype)
        return codeword_constraints(features, eye, target, confidence)

    def output_code(self, target: Tensor) -> Tensor:
        return F.one_hot(target, self.num_outputs).float() * 2 - 1

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        meter.add("acc", self.correct(outputs, y).float())
