"""``defense=multi_adv_training``: adversarial training against several threat models at once, the "AT all"
baselines of PAT Table 2 (Laidlaw et al. 2021; Tramer & Boneh 2019 for average / max).

With attacks ``A_1 .. A_k`` (``defense.attacks``, any attack-group options) and ``L`` the task's per-example
training loss, each batch trains on

* ``random``: ``L(f(A_j(x)), y)`` for one ``j`` drawn uniformly per batch (the authors' ``--randomize_attack``);
* ``average``: ``(1/k) sum_j L(f(A_j(x)), y)`` (all attacks, their examples stacked);
* ``max``: ``max_j L(f(A_j(x)), y)`` per example (the authors' ``--maximize_attack``).

Adversarial examples are made with the model in eval mode, as in adversarial training. The paper's models use
Linf 8/255, L2 1, StAdv 0.05 and ReColorAdv 0.06 (``conf/defense/at_all_{random,average,max}.yaml``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS
from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import MultiAdvTrainingConfig


@DEFENSES.register("multi_adv_training")
class MultiAdversarialTraining(Defense):
    """Adversarial training against several attacks: one drawn per batch, their average or their max."""

    Config = MultiAdvTrainingConfig
    trains_victim = True
    paper = "Laidlaw, Singla, Feizi, Perceptual Adversarial Robustness: Defense Against Unseen Threat Models, ICLR 2021"
    url = "https://github.com/cassidylaidlaw/perceptual-advex"

    def __init__(self, params, task):
        super().__init__(params, task)
        self.attacks = {
            name: ATTACKS.build(ATTACKS.parse(node, key=f"defense.attacks.{name}"), task)
            for name, node in params.attacks.items()
        }
        self.generator = torch.Generator().manual_seed(params.seed)

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        attacks = list(self.attacks.values())
        if self.params.mode == "random":
            j = int(torch.randint(len(attacks), (1,), generator=self.generator))
            return attacks[j](model, x, y), y
        return torch.cat([attack(model, x, y) for attack in attacks]), y.repeat(len(attacks))

    def training_loss(self, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.params.mode != "max":
            return super().training_loss(net, x, y)
        outputs = net(x)
        per_example = self.task.attack_loss(outputs, y).view(len(self.attacks), -1)
        return outputs, per_example.max(dim=0).values.mean()
