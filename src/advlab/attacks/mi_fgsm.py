"""MI-FGSM (Dong et al. 2018): iterative FGSM with momentum on the L1-normalised gradient, in the Linf ball.

With ``g_0 = 0`` and step ``alpha = eps / steps``, for ``t = 0 .. steps - 1``:

    g_{t+1} = mu * g_t + grad_x J(x_t) / ||grad_x J(x_t)||_1
    x_{t+1} = clip_{[0, 1] and ||x - x_0||_inf <= eps}(x_t + alpha * sign(g_{t+1}))

``J`` is the task's attack objective (ascended; targeted attacks ascend towards the target), ``mu`` is
``decay`` (1.0 in the paper). The accumulated direction stabilises the update and makes the examples transfer
better than I-FGSM's (the use in SemanticAdv's Table 2). ``early_stop`` freezes an example once it meets the
task's success rule (off by default: for transfer, continuing to the last step is the paper's protocol).
:meth:`MIFGSM.diversify` is the input transformation applied before each gradient (identity here;
:mod:`advlab.attacks.di_fgsm` overrides it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import MIFGSMConfig  # noqa: F401


@ATTACKS.register("mi_fgsm")
class MIFGSM(Attack):
    Config = MIFGSMConfig
    norm = "linf"
    paper = "Dong, Liao, Pang, Su, Zhu, Hu, Li, Boosting Adversarial Attacks with Momentum, CVPR 2018"
    url = "https://arxiv.org/abs/1710.06081"

    def diversify(self, x: Tensor) -> Tensor:
        """The input the gradient is taken at (MI-FGSM: ``x`` itself)."""
        return x

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        alpha = p.eps / p.steps
        lo, hi = (x - p.eps).clamp(min=0), (x + p.eps).clamp(max=1)
        dims = tuple(range(1, x.dim()))
        g = torch.zeros_like(x)
        x_adv = x.clone()
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        view = (-1,) + (1,) * (x.dim() - 1)
        for _ in range(p.steps):
            xa = x_adv.detach().requires_grad_(True)
            outputs = model(self.diversify(xa))
            (grad,) = torch.autograd.grad(task.attack_loss(outputs, y, target).sum(), xa)
            if p.early_stop:
                with torch.no_grad():
                    active &= ~task.success(model(xa.detach()), y, target)
            l1 = grad.abs().sum(dim=dims, keepdim=True).clamp_min(1e-12)
            g = p.decay * g + grad / l1
            step = alpha * g.sign() * active.view(view).to(x.dtype)
            x_adv = torch.minimum(torch.maximum(x_adv.detach() + step, lo), hi)
        return x_adv
