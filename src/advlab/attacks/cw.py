"""Carlini & Wagner L2 (2017): minimise ``w * ||x' - x||_2^2 + c * max(margin(x'), -kappa)`` over
``x' = (tanh(w) + 1) / 2`` (the box constraint by change of variables) with Adam, and a per-example binary
search on the constant ``c``. ``w`` is ``distortion_weight`` (1 in C&W; SemanticAdv's baseline weights its
pixel reconstruction term by 5). The margin comes from the task (negative exactly when the attack succeeds), so
the same code serves untargeted and targeted goals on any task that defines one. Returns, per example, the
successful image with the smallest L2 over all binary-search steps, or the clean image if none succeeded.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import CWL2Config  # noqa: F401
from advlab.progress import track


@ATTACKS.register("cw_l2")
class CWL2(Attack):
    paper = "Carlini & Wagner, Towards Evaluating the Robustness of Neural Networks, IEEE S&P 2017"
    url = "https://arxiv.org/abs/1608.04644"
    Config = CWL2Config
    norm = "l2"
    paper = "Carlini, Wagner, Towards Evaluating the Robustness of Neural Networks, IEEE S&P 2017"
    url = "https://arxiv.org/abs/1608.04644"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        n = x.shape[0]
        dims = tuple(range(1, x.dim()))
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), p.initial_const, device=x.device)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), float("inf"), device=x.device)
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        best = x.clone()
        iters = torch.zeros(n, device=x.device)
        for _ in track(
            range(p.binary_search_steps), f"  {self.registered_name} binary search", enabled=None, unit="step"
        ):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=p.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            prev = float("inf")
            for it in range(p.steps):
                x_adv = (torch.tanh(w) + 1) / 2
                outputs = model(x_adv)
                l2sq = (x_adv - x).pow(2).sum(dim=dims)
                margin = task.margin(outputs, y, target)
                loss = (p.distortion_weight * l2sq + const * torch.clamp(margin + p.kappa, min=0)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    ok = task.success(outputs, y, target) & (margin <= -p.kappa)
                    better = ok & (l2sq < best_l2)
                    best_l2 = torch.where(better, l2sq, best_l2)
                    best[better] = x_adv.detach()[better]
                    succeeded |= ok
                iters += 1
                if p.abort_early and it % max(p.steps // 10, 1) == 0:
                    current = loss.item()  # one host sync per check (every steps/10 iterations)
                    if current > prev * 0.9999:
                        break
                    prev = current
            # binary search on c: shrink towards smaller c where it worked, grow where it did not
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            const = torch.where(torch.isinf(upper), const * 10, (lower + upper) / 2)
        self.batch_stats["iters"] = iters
        return best
