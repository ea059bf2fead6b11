"""``defense=trades``: TRADES (Zhang et al. 2019), a PAT Table 2 baseline.

The training objective trades natural accuracy against robustness with a KL term,

    min_f  E[ CE(f(x), y)  +  beta * max_{||x' - x||_inf <= eps}  KL( softmax f(x) || softmax f(x') ) ],

and the inner maximisation is PGD on the KL term itself (not on the label loss): ``x'_0 = x + 0.001 N(0, I)``,
``x'_{k+1} = clip_{[0,1]}( Pi_eps( x'_k + alpha * sign(grad_x' KL) ) )``, with the model in eval mode and the
clean distribution ``softmax f(x)`` held fixed. The outer step evaluates both terms with the model in train
mode (two forwards, as in the TRADES code; one forward of both batches under DistributedDataParallel) and
back-propagates through both distributions. The KL is summed
over classes and averaged over the batch. Defaults are the TRADES CIFAR-10 setting: eps 0.031, step 0.007,
10 steps, beta 6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advlab.defenses.base import DEFENSES, Defense
from advlab.defenses.configs import TRADESConfig
from advlab.errors import ConfigError
from advlab.utils import frozen


def kl_to_clean(adv_logits: Tensor, clean_probs: Tensor) -> Tensor:
    """Per-sample ``KL(clean || adv) = sum_c p_c (log p_c - log q_c)``."""
    return F.kl_div(F.log_softmax(adv_logits, dim=1), clean_probs, reduction="none").sum(dim=1)


@DEFENSES.register("trades")
class TRADES(Defense):
    """TRADES: clean cross-entropy plus beta times the KL to the worst example in the Linf ball."""

    Config = TRADESConfig
    trains_victim = True
    paper = "Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, Theoretically Principled Trade-off between Robustness and Accuracy, ICML 2019"
    url = "https://github.com/yaodongyu/TRADES"

    def __init__(self, params, task):
        super().__init__(params, task)
        if getattr(task, "registered_name", None) != "classification":
            raise ConfigError(
                f"defense=trades: its KL objective is defined on class distributions (task=classification), "
                f"got task '{getattr(task, 'registered_name', type(task).__name__)}'"
            )

    def inner_maximisation(self, model: nn.Module, x: Tensor) -> Tensor:
        """``argmax_{x' in B_eps(x)} KL(f(x) || f(x'))`` by sign-gradient ascent (model frozen, eval mode)."""
        p = self.params
        with frozen(model):
            with torch.no_grad():
                clean_probs = F.softmax(model(x), dim=1)
            x_adv = (x + p.init_std * torch.randn_like(x)).clamp(0, 1)
            for _ in range(p.steps):
                x_adv.requires_grad_(True)
                with torch.enable_grad():
                    (grad,) = torch.autograd.grad(kl_to_clean(model(x_adv), clean_probs).sum(), x_adv)
                x_adv = x_adv.detach() + p.step_size * grad.sign()
                x_adv = torch.min(torch.max(x_adv, x - p.eps), x + p.eps).clamp(0, 1)
        return x_adv.detach()

    def training_batch(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The clean and the adversarial batch, stacked: ``[x; x']`` (labels ``y`` once)."""
        return torch.cat([x, self.inner_maximisation(model, x)]), y

    def training_loss(self, net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        n = y.shape[0]
        if isinstance(net, nn.parallel.DistributedDataParallel):  # DDP: one forward per backward
            clean_logits, adv_logits = net(x).split(n)
        else:  # two forwards (separate BatchNorm batches), as the TRADES code
            clean_logits, adv_logits = net(x[:n]), net(x[n:])
        robust = kl_to_clean(adv_logits, F.softmax(clean_logits, dim=1)).mean()
        return adv_logits, F.cross_entropy(clean_logits, y) + self.params.beta * robust
