"""Perceptual Adversarial Training (Laidlaw et al. 2021): adversarial training against a perceptual attack.

Each training batch is replaced by Fast-LPA examples of the current model (``defense.attack``, default
``fast_lpa_train``: LPIPS bound 0.5, 10 iterations, LPIPS over the model's own features ("self") or AlexNet),
generated with the model in eval mode. As in the paper, only the examples the model currently classifies
correctly are attacked (``attack_correct_only``); the others are trained on as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.defenses.adv_training import AdversarialTraining
from advlab.defenses.base import DEFENSES
from advlab.defenses.configs import PATConfig  # noqa: F401
from advlab.utils import frozen


@DEFENSES.register("pat")
class PerceptualAdversarialTraining(AdversarialTraining):
    paper = "Laidlaw, Singla & Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://arxiv.org/abs/2006.12655"
    Config = PATConfig

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n_clean = int(round(self.params.clean_fraction * x.shape[0]))
        xs, ys = x[n_clean:], y[n_clean:]
        if self.params.attack_correct_only:
            with frozen(model), torch.no_grad():
                attack_mask = self.task.correct(model(xs), ys)
        else:
            attack_mask = torch.ones(xs.shape[0], dtype=torch.bool, device=x.device)
        x_adv = xs.clone()
        idx = attack_mask.nonzero().squeeze(1)
        if idx.numel() > 0:
            x_adv[idx] = self.attack(model, xs[idx], ys[idx])
        return torch.cat([x[:n_clean], x_adv]), y
