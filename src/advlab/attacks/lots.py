"""LOTS (Layerwise Origin-Target Synthesis, Rozsa et al. 2017) at the logits layer, as the JMA paper applies it.

The target representation of a target label vector / class is the mean logit vector of up to
``num_target_images`` training images that carry exactly that label (20 in the paper's multi-label tables, 50
for ECOC), chosen at random (seeded). The image then descends the Euclidean distance to it:

    x <- clip(x - step * nu / max|nu|),   nu = grad_x ||f_t - f(x)||^2,

(an Linf-normalised step; ``step`` = 1/255, i.e. one grey level, as in the original pixel-space update), until
the task's decision equals the target or ``max_iters`` updates. A target that no training image carries has
no representation: LOTS cannot attack it and the image is returned unchanged (``no_target`` = 1 in the batch
statistics).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import LOTSConfig  # noqa: F401


@ATTACKS.register("lots")
class LOTS(Attack):
    paper = "Rozsa, Günther & Boult, LOTS about Attacking Deep Features, IJCB 2017"
    url = "https://arxiv.org/abs/1611.06179"
    Config = LOTSConfig
    norm = "l2"

    def __init__(self, params: Any, task):
        super().__init__(params, task)
        self.train_logits: Tensor | None = None
        self.train_labels: Tensor | None = None
        self.generator = torch.Generator().manual_seed(params.seed)

    @torch.no_grad()
    def prepare(self, model: nn.Module, data: Any) -> None:
        device = next(iter(model.buffers()), torch.zeros(())).device
        logits, labels = [], []
        for x, y in data.loader("train", self.params.batch_size):
            logits.append(model(x.to(device)))
            labels.append(y.to(device))
        self.set_target_pool(torch.cat(logits), torch.cat(labels))

    def set_target_pool(self, logits: Tensor, labels: Tensor) -> None:
        """Training logits ``[N, n]`` and their labels (class indices ``[N]`` or label vectors ``[N, C]``)."""
        self.train_logits, self.train_labels = logits.detach(), labels.detach()

    def target_logits(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """Mean logits of up to K random training images labelled ``target`` (``[B, n]``) and whether any exists."""
        if self.train_logits is None:
            raise RuntimeError("LOTS needs the training logits: call attack.prepare(model, data) first")
        labels = self.train_labels.to(target.device)
        if target.dim() == 1:
            match = labels[None, :] == target[:, None]
        else:
            match = (labels[None, :, :] == target[:, None, :]).all(dim=2)
        keys = torch.rand(match.shape, generator=self.generator).to(target.device)
        keys = torch.where(match, keys, torch.full_like(keys, -1.0))
        k = min(self.params.num_target_images, match.shape[1])
        top, idx = keys.topk(k, dim=1)
        chosen = (top >= 0).float()  # [B, k]
        feats = self.train_logits.to(target.device)[idx]  # [B, k, n]
        count = chosen.sum(dim=1, keepdim=True)
        mean = (feats * chosen[:, :, None]).sum(dim=1) / count.clamp(min=1)
        return mean, count.squeeze(1) > 0

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        assert target is not None
        task.check_target(y, target)
        goal, available = self.target_logits(target)
        x_adv = x.clone()
        iters = torch.zeros(x.shape[0], device=x.device)
        with torch.no_grad():
            done = task.success(model(x), y, target) | ~available
        active = (~done).nonzero().squeeze(1)
        for _ in range(p.max_iters):
            if active.numel() == 0:
                break
            xa = x_adv[active].requires_grad_(True)
            out = model(xa)
            dist = (goal[active] - out).pow(2).sum(dim=1)
            (grad,) = torch.autograd.grad(dist.sum(), xa)
            with torch.no_grad():
                ok = task.success(out, y[active], target[active])
                scale = grad.flatten(1).abs().amax(dim=1).clamp(min=1e-12).view(-1, *([1] * (x.dim() - 1)))
                new = (xa - p.step * grad / scale).clamp(0, 1)
                keep = ~ok  # examples whose current iterate already succeeds stop there
                x_adv[active[keep]] = new[keep]
                iters[active[keep]] += 1
            active = active[keep]
        self.batch_stats["iters"] = iters
        self.batch_stats["no_target"] = (~available).float()
        return x_adv
