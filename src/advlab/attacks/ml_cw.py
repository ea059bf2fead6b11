"""ML-C&W (Song et al. 2018): Carlini-Wagner L2 extended to multi-label outputs with one hinge per output,

    min_w ||x' - x||_2^2 + c * sum_j max(0, kappa - t_j z_j(x')),     x' = (tanh(w) + 1) / 2,

where ``t`` in {-1,+1}^n is the task's per-output target code (multi-label: the target vector; ECOC: the
target codeword; one-hot: +1 on the target class, -1 elsewhere) and ``z`` the logits. Adam on ``w``, and a
per-example binary search on ``c`` (x10 until the first success, then bisection). Success is the task's rule
on the output (the whole label vector / the decoded class), so the attack can stop before every hinge is
satisfied. Returns the successful image with the smallest L2 over all binary-search steps, or the last
iterate of the last step where none succeeded. ``abort_early`` applies C&W's rule (stop when the objective
has not dropped by 0.01% over ``steps/10`` updates) to each example separately, so converged examples stop
costing forward/backward passes.

``iters`` (per example): the updates run in the binary-search step that produced the returned image, as the
JMA paper reports for the C&W family; ``iters_total`` counts every update over all steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advlab.attacks.base import ATTACKS, Attack
from advlab.attacks.configs import MLCWConfig  # noqa: F401


@ATTACKS.register("ml_cw")
class MLCW(Attack):
    paper = "Song, Jin, Huang & Hopcroft, Multi-label Adversarial Perturbations, ICDM 2018"
    url = "https://arxiv.org/abs/1901.00546"
    needs_task = ("output_code",)
    Config = MLCWConfig
    norm = "l2"

    def penalty(self, outputs: Tensor, code: Tensor) -> Tensor:
        """Per-example term weighted by the constant: one hinge per output, ``sum_j max(0, kappa - t_j z_j)``."""
        return torch.relu(self.params.kappa - code * outputs).sum(dim=1)

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
        check_every = max(p.steps // 10, 1)
        dims_one = (1,) * (x.dim() - 1)
        for _ in range(p.binary_search_steps):
            idx = pending.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            w = w0[idx].clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=p.lr)
            m = idx.numel()
            succeeded = torch.zeros(m, dtype=torch.bool, device=x.device)
            prev = torch.full((m,), float("inf"), device=x.device)
            ran = torch.zeros(m, device=x.device)
            live = torch.arange(m, device=x.device)  # rows of this step still optimised (per-example abort)
            w_last = w0[idx].clone()  # each row's last optimised iterate (Adam's momentum moves aborted rows)
            for it in range(p.steps):
                gi = idx[live]
                x_adv = (torch.tanh(w) + 1) / 2
                outputs = model(x_adv[live])
                l2sq = (x_adv[live] - x[gi]).pow(2).sum(dim=dims)
                loss = l2sq + const[gi] * self.penalty(outputs, code[gi])
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()  # rows are independent: Adam's per-coordinate state is per example
                opt.step()
                ran[live] += 1
                with torch.no_grad():
                    ok = task.success(outputs, y[gi], target[gi])
                    better = ok & (l2sq < best_l2[gi])  # selected on the device: no host sync per step
                    best_l2[gi] = torch.where(better, l2sq, best_l2[gi])
                    best[gi] = torch.where(better.view(-1, *dims_one), x_adv.detach()[live], best[gi])
                    iters[gi] = torch.where(better, it + 1, iters[gi])
                    succeeded[live] |= ok
                    if p.abort_early and it % check_every == 0:
                        # C&W's abort rule, per example: stop when the loss has not dropped by 0.01% since the
                        # last check
                        stalled = loss.detach() > prev[live] * 0.9999
                        prev[live] = loss.detach()
                        if bool(stalled.any()):
                            w_last[live[stalled]] = w.detach()[live[stalled]]
                            live = live[~stalled]
                            if live.numel() == 0:
                                break
            w_last[live] = w.detach()[live]
            total[idx] += ran
            with torch.no_grad():  # examples that never succeeded keep their last iterate
                never = torch.isinf(best_l2[idx])
                if bool(never.any()):
                    best[idx[never]] = ((torch.tanh(w_last) + 1) / 2)[never]
                    iters[idx[never]] = ran[never]
            cur = const[idx]
            up = torch.where(succeeded, torch.minimum(upper[idx], cur), upper[idx])
            low = torch.where(succeeded, lower[idx], torch.maximum(lower[idx], cur))
            upper[idx], lower[idx] = up, low
            const[idx] = torch.where(torch.isinf(up), cur * 10, (low + up) / 2)
        self.batch_stats["iters"] = iters
        self.batch_stats["iters_total"] = total
        return best
