"""Small builders shared by the JMA tests: tasks and attacks from plain parameters, and a linear victim."""

from __future__ import annotations

import numpy as np
import scipy.optimize
import torch
from torch import nn

from advlab.attacks import ATTACKS
from advlab.data.info import DataInfo
from advlab.tasks.base import TASKS


def info(n: int, shape=(1, 4, 4)) -> DataInfo:
    return DataInfo(n, shape, [str(i) for i in range(n)], (0.0,) * shape[0], (1.0,) * shape[0])


def task(name: str, n: int, shape=(1, 4, 4), **params):
    return TASKS.create(name, info(n, shape), **params)


def attack(cls, t, **params):
    return ATTACKS.create(cls.registered_name, t, **params)


class Linear(nn.Module):
    """f(x) = W vec(x) + c, with fixed weights."""

    def __init__(self, w: torch.Tensor, c: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w, requires_grad=False)
        self.c = nn.Parameter(c, requires_grad=False)

    def forward(self, x):
        return x.flatten(1) @ self.w.t() + self.c


# ---- exactly linear victims and the exact minimum-L2 perturbation (JMA's optimality claim) ---------------
LINEAR_SETTINGS = {
    # name: (task name, outputs, classes/labels, task parameters)
    "one-hot 10": ("classification", 10, 10, {}),
    "multi-label 8 / 3 flips": ("multilabel", 8, 8, {"flip_bits": 3}),
    "multi-label 20 / 5 flips": ("multilabel", 20, 20, {"flip_bits": 5}),
    "ECOC 16 bits / 10 classes": ("ecoc", 16, 10, {"code_length": 16}),
}


def linear_problem(setting: str, box_active: bool, batch: int = 16, m: int = 64, seed: int = 0):
    """A random linear victim ``f(x) = W x + c`` for ``setting``, ``batch`` images of ``m`` pixels (interior:
    around 0.5; box-active: pixels in [0, 0.03], so the box binds), their predicted labels and seeded targets.
    Returns (task, model, x [B,1,1,m], y, target, region) where ``region(x_index)`` gives the target region
    of that image as ``(P, q)``: ``P x' <= q`` on the adversarial image, written from the definitions
    (one-hot: ``z_t >= z_i``; multi-label: ``t_j z_j >= 0``; ECOC: ``c_t.z >= c_i.z``), not from the task."""
    name, n, classes, params = LINEAR_SETTINGS[setting]
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(n, m, generator=gen, dtype=torch.float64)
    if box_active:
        x = 0.03 * torch.rand(batch, m, generator=gen, dtype=torch.float64)
    else:
        x = 0.5 + 0.05 * torch.randn(batch, m, generator=gen, dtype=torch.float64)
    c = -(w @ x.mean(0)) + 0.7 * torch.randn(n, generator=gen, dtype=torch.float64)
    model = Linear(w.float(), c.float()).eval()
    t = task(name, classes, shape=(1, 1, m), **params)
    z = (x @ w.t() + c).float()
    y = t.predict(z)
    target = t.sample_targets(y, torch.Generator().manual_seed(seed + 1))
    if name == "multilabel":
        code = None
    elif name == "ecoc":
        code = t.codebook.double()
    else:
        code = torch.eye(n, dtype=torch.float64)

    def region(i: int):
        if code is None:  # -t_j (w_j x' + c_j) <= 0
            s = target[i].double() * 2 - 1
            return -(s[:, None] * w), s * c
        ti = int(target[i])
        others = [k for k in range(code.shape[0]) if k != ti]
        rows = code[others] - code[ti]  # (c_i - c_t) . (W x' + c) <= 0
        return rows @ w, -(rows @ c)

    return t, model, x.float().view(batch, 1, 1, m), y, target, region


def qp_min_perturbation(region, x0):
    """The exact ``argmin ||d||_2 s.t. P (x0 + d) <= q, 0 <= x0 + d <= 1`` (scipy SLSQP on the convex QP,
    tolerance 1e-14), or None where the region is unreachable inside the box."""
    p, q = (v.numpy() for v in region)
    x0 = x0.double().flatten().numpy()
    rhs = q - p @ x0
    res = scipy.optimize.minimize(
        lambda d: 0.5 * d @ d,
        np.zeros_like(x0),
        jac=lambda d: d,
        bounds=list(zip(-x0, 1 - x0)),
        constraints=[{"type": "ineq", "fun": lambda d: rhs - p @ d, "jac": lambda d: -p}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    if not res.success or (p @ res.x - rhs).max() > 1e-7:
        return None
    return res.x


def jma_optimality_ratios(setting: str, box_active: bool, batch: int = 16, seed: int = 0, **jma_params):
    """Per image ``||d_JMA|| / ||d*_QP||`` on an exactly linear victim (confidence 0), JMA's success on the
    final clipped image, and the count of images the QP found unreachable (left out)."""
    from advlab.attacks.jma import JMA

    t, model, x, y, target, region = linear_problem(setting, box_active, batch, seed=seed)
    jma = attack(JMA, t, confidence=0.0, **jma_params)
    x_adv = jma(model, x, y, target)
    with torch.no_grad():
        ok = t.success(model(x_adv), y, target)
    d_jma = (x_adv - x).flatten(1).double().norm(dim=1)
    ratios, unreachable = [], 0
    for i in range(batch):
        d = qp_min_perturbation(region(i), x[i])
        if d is None:
            unreachable += 1
            continue
        ratios.append(float(d_jma[i]) / float(torch.tensor(d).norm()))
    return torch.tensor(ratios, dtype=torch.float64), ok, unreachable, x_adv
