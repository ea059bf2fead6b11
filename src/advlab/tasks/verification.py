"""Face (identity) verification: the victim maps an image to an identity embedding; two images show the same
person when the distance between their L2-normalised embeddings is below a threshold chosen at a
false-positive rate (FPR) on a development split.

Targets are embeddings ([B, D]): a *targeted* attack succeeds when ``d(x_adv, x_tgt) < threshold`` (the
attacked image is accepted as the target identity, SemanticAdv's setting); an *untargeted* one when
``d(x_adv, x_src) >= threshold`` (rejected as its own identity). ``Verification.threshold`` is the threshold
in use (``task.threshold``); :meth:`Verification.at_threshold` gives a copy of the task at another threshold (a
pipeline scoring several FPRs builds one task per threshold instead of changing a shared one).

Training (an embedding network from identity labels, no classifier weights): the supervised contrastive loss
on normalised embeddings (Khosla et al. 2020), anchors without a positive in the batch are skipped.

Module functions: :func:`embedding_distance`, :func:`threshold_at_fpr`, :func:`pair_distances`,
:func:`verification_rates` are the metric definitions, used by the pipeline and tests.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor

from advlab.data.info import DataInfo
from advlab.errors import AdvlabError
from advlab.metrics.meter import Meter
from advlab.tasks.base import TASKS, Task
from advlab.tasks.configs import VerificationConfig  # noqa: F401


def embedding_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per-row L2 distance between L2-normalised embeddings (in [0, 2])."""
    return (F.normalize(a, dim=1) - F.normalize(b, dim=1)).norm(dim=1)


def threshold_at_fpr(negative_distances: Tensor, fpr: float) -> float:
    """The largest distance threshold ``t`` whose false-positive rate on these impostor (different-identity)
    pairs is at most ``fpr``, where a pair is accepted when ``distance < t``.

    With the distances sorted ascending (``d_0 <= d_1 <= ...``, ``n`` of them) and ``k = floor(fpr * n)``,
    ``t = d_k``: exactly the ``k`` smallest distances fall below it (fewer with ties), so FPR <= fpr."""
    n = negative_distances.numel()
    if not 0 < fpr < 1:
        raise AdvlabError(f"FPR must be in (0, 1) (got {fpr})")
    if n * fpr < 1:
        raise AdvlabError(
            f"an FPR of {fpr:g} needs at least {int(1 / fpr) + 1} impostor pairs to be measurable, the development "
            f"split gives {n}; use a larger FPR, more dev images or given thresholds"
        )
    d = negative_distances.detach().flatten().double().sort().values
    k = int(fpr * n + 1e-9)
    return float(d[min(k, n - 1)])


def pair_distances(
    emb: Tensor, ids: Tensor, max_pairs: int | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(genuine distances, impostor distances) over all unordered pairs of ``emb`` [N, D] (or ``max_pairs``
    random pairs when there are more)."""
    n = emb.shape[0]
    e = F.normalize(emb.float(), dim=1)
    total = n * (n - 1) // 2
    if max_pairs is None or total <= max_pairs:
        i, j = torch.triu_indices(n, n, offset=1, device=emb.device)
    else:
        i = torch.randint(0, n, (max_pairs,), generator=generator).to(emb.device)
        j = torch.randint(0, n - 1, (max_pairs,), generator=generator).to(emb.device)
        j = j + (j >= i).long()  # j != i
    d = torch.cat(
        [(e[i[s : s + 1 << 20]] - e[j[s : s + 1 << 20]]).norm(dim=1) for s in range(0, len(i), 1 << 20)]
    )
    same = ids.to(emb.device)[i] == ids.to(emb.device)[j]
    return d[same], d[~same]


def verification_rates(genuine: Tensor, impostor: Tensor, threshold: float) -> dict[str, float]:
    """True-accept rate (genuine pairs below the threshold) and false-accept rate (impostors below it)."""
    return {
        "tar": float((genuine < threshold).float().mean()) if genuine.numel() else float("nan"),
        "far": float((impostor < threshold).float().mean()),
    }


@TASKS.register("verification")
class Verification(Task):
    Config = VerificationConfig
    objective_metric = "asr"  # the attack's success rate at the first FPR (attack/asr)

    def __init__(self, params: VerificationConfig, info: DataInfo):
        super().__init__(params, info)
        self.threshold = params.threshold

    @property
    def num_outputs(self) -> int:
        return self.params.embedding_dim

    def at_threshold(self, threshold: float) -> Verification:
        """This task with the distance threshold ``threshold`` (a shallow copy; ``self`` is unchanged)."""
        task = copy.copy(self)
        task.threshold = float(threshold)
        return task

    def predict(self, outputs: Tensor) -> Tensor:
        return F.normalize(outputs, dim=1)

    def loss(self, outputs: Tensor, y: Tensor) -> Tensor:
        z = F.normalize(outputs, dim=1)
        logits = z @ z.t() / self.params.temperature
        eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        pos = (y[:, None] == y[None, :]) & ~eye
        n_pos = pos.sum(1)
        has = n_pos > 0
        if not has.any():
            return outputs.sum() * 0.0
        mean_log_prob = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
        return -mean_log_prob.mean()

    def distance(self, outputs: Tensor, reference: Tensor) -> Tensor:
        """Normalised L2 distance between the victim's outputs and reference embeddings."""
        return embedding_distance(outputs, reference)

    def attack_loss(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return self.distance(outputs, y)
        return -self.distance(outputs, target)

    def margin(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        if target is None:
            return self.threshold - self.distance(outputs, y)
        return self.distance(outputs, target) - self.threshold

    def success(self, outputs: Tensor, y: Tensor, target: Tensor | None = None) -> Tensor:
        return self.margin(outputs, y, target) < 0

    def correct(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Verified as itself (``y`` is the reference embedding of the same identity)."""
        return self.distance(outputs, y) < self.threshold

    def sample_targets(self, y: Tensor, generator: torch.Generator) -> Tensor:
        """Another row's embedding of the batch (a different image), as target identity."""
        n = y.shape[0]
        shift = torch.randint(1, max(n, 2), (n,), generator=generator)
        return y[(torch.arange(n) + shift) % n]

    def update_metrics(self, meter: Meter, outputs: Tensor, y: Tensor) -> None:
        if y.dim() != 1:
            return
        z = F.normalize(outputs.detach(), dim=1)
        d = torch.cdist(z, z)
        eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
        same = (y[:, None] == y[None, :]) & ~eye
        diff = y[:, None] != y[None, :]
        meter.add("genuine_dist", d[same])
        meter.add("impostor_dist", d[diff])
