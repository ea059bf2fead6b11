"""ML-C&W (Song et al. 2018): Carlini-Wagner L2 extended to multi-label outputs with one hinge per output,

    min_w ||x' - x||_2^2 + c * sum_j max(0, kappa - t_j z_j(x')),     x' = (tanh(w) + 1) / 2,

where ``t`` in {-1,+1}^n is the task's per-output target code (multi-label: the target vector; ECOC: the
target codeword; one-hot: +1 on the target class, -1 elsewhere) and ``z`` the logits. Adam on ``w``, and a
per-example binary search on ``c`` (x10 until the first success, then bisection). Success is the task's rule
on the output (the whole label vector / the decoded class), so the attack can stop before every hinge is
satisfied. Returns the successful image with the smallest L2 over all binary-search steps, or the last
iterate of the last step where none succeeded.

``iters`` (per example): the updates run in the binary-search step that produced the returned image, as the
JMA paper reports for the C&W family; ``iters_total`` counts every update over all steps.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack, AttackConfig
from advlab.registry import check


@dataclasses.dataclass
class MLCWConfig(AttackConfig):
    targeted: bool = True
    steps: int = 1000  # n_it,max per binary-search step
    binary_search_steps: int = 10
    lr: float = 0.01
    initial_const: float = 0.01  # lambda
    kappa: float = 0.0  # gamma: confidence of every hinge
    abort_early: bool = True

    def validate(self, key: str) -> None:
        check(self.targeted, f"{key}.targeted", "ML-C&W is a targeted attack; set attack.targeted=true")
        check(self.steps >= 1, f"{key}.steps", f"must be >= 1 (got {self.steps})")
        check(self.binary_search_steps >= 1, f"{key}.binary_search_steps", "must be >= 1")
        check(self.lr > 0, f"{key}.lr", f"must be > 0 (got {self.lr})")
        check(self.initial_const > 0, f"{key}.initial_const", f"must be > 0 (got {self.initial_const})")
        check(self.kappa >= 0, f"{key}.kappa", f"must be >= 0 (got {self.kappa})")


@ATTACKS.register("ml_cw")
class MLCW(Attack):
    Config = MLCWConfig
    norm = "l2"

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        p, task = self.params, self.task
        assert target is not None
        task.check_target(y, target)
        n = x.shape[0]
        dims = tuple(range(1, x.dim()))
        code = task.output_code(target).to(x.dtype)
        w0 = torch.atanh((2 * x - 1).clamp(-1 + 1e-6, 1 - 1e-6))
        const = torch.full((n,), p.initial_const, device=x.device)
        lower = torch.zeros(n, device=x.device)
        upper = torch.full((n,), float("inf"), device=x.device)
        best_l2 = torch.full((n,), float("inf"), device=x.device)
        best = x.clone()
        iters = torch.zeros(n, device=x.device)
        total = torch.zeros(n, device=x.device)
        with torch.no_grad():
            pending = ~task.success(model(x), y, target)  # clean outputs already on target need nothing
        best_l2[~pending] = 0.0
        for _ in range(p.binary_search_steps):
            idx = pending.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xs, ys, ts, cs, cst = x[idx], y[idx], target[idx], code[idx], const[idx]
            w = w0[idx].clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=p.lr)
            succeeded = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
            prev = float("inf")
            ran = 0
            for it in range(p.steps):
                x_adv = (torch.tanh(w) + 1) / 2
                outputs = model(x_adv)
                l2sq = (x_adv - xs).pow(2).sum(dim=dims)
                hinge = torch.relu(p.kappa - cs * outputs).sum(dim=1)
                loss = (l2sq + cst * hinge).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ran = it + 1
                with torch.no_grad():
                    ok = task.success(outputs, ys, ts)
                    better = ok & (l2sq < best_l2[idx])
                    if bool(better.any()):
                        gi = idx[better]
                        best_l2[gi] = l2sq[better]
                        best[gi] = x_adv.detach()[better]
                        iters[gi] = it + 1
                    succeeded |= ok
                if p.abort_early and it % max(p.steps // 10, 1) == 0:
                    if loss.item() > prev * 0.9999:
                        break
                    prev = loss.item()
            total[idx] += ran
            with torch.no_grad():  # examples that never succeeded keep their last iterate
                never = torch.isinf(best_l2[idx])
                if bool(never.any()):
                    best[idx[never]] = ((torch.tanh(w) + 1) / 2).detach()[never]
                    iters[idx[never]] = ran
            cur = const[idx]
            up = torch.where(succeeded, torch.minimum(upper[idx], cur), upper[idx])
            low = torch.where(succeeded, lower[idx], torch.maximum(lower[idx], cur))
            upper[idx], lower[idx] = up, low
            const[idx] = torch.where(torch.isinf(up), cur * 10, (low + up) / 2)
        self.batch_stats["iters"] = iters
        self.batch_stats["iters_total"] = total
        return best
