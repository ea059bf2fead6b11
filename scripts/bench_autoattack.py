"""Benchmark advlab's AutoAttack against torchattacks' (the AutoAttack authors' code as packaged in
torchattacks 3.5.1, ``make install`` provides it): time and robust accuracy on the same victim and images.

The victim is advlab's small CNN trained for ``--train-steps`` Adam steps on the embedded digits (seconds on
a CPU). Both run AutoAttack ``standard`` with the settings torchattacks hard-codes (APGD and FAB: 10
iterations, Square: 5000 queries, all 9 targets) and the same seed, so they attack the same way; advlab
also reports its per-stage robust accuracy. Printed as a table (``time_s``: wall clock, CUDA synchronised).

Run:
    .venv/bin/python scripts/bench_autoattack.py                        # CPU, 256 test images, Linf 8/255
    .venv/bin/python scripts/bench_autoattack.py --device cuda --examples 1000 --norm l2 --eps 0.5
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import advlab.attacks  # noqa: F401  (registers)
import advlab.data  # noqa: F401
from advlab.attacks.base import ATTACKS
from advlab.data.base import DATASETS
from advlab.registry import parse_config
from advlab.tasks.base import TASKS
from advlab.utils import resolve_device
from advlab.victims.base import Victim
from advlab.victims.smallcnn import small_cnn


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--examples", type=int, default=256)
    ap.add_argument("--norm", choices=["linf", "l2"], default="linf")
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    data = DATASETS.build(
        parse_config(DATASETS.get("digits").Config, {"name": "digits"}, "dataset"), args.seed
    )
    info = data.info
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), info
    )
    c, size = info.image_shape[0], info.image_shape[1]
    model = Victim(small_cnn(c, info.num_classes, size, 16, 64), info.mean, info.std).to(device)
    xtr, ytr = (t.to(device) for t in data.dataset("train").tensors)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(args.train_steps):
        idx = torch.randint(0, xtr.shape[0], (128,), device=device)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().requires_grad_(False)
    x, y = (t[: args.examples].to(device) for t in data.dataset("test").tensors)
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())

    rows = []
    attack = ATTACKS.create("autoattack", task, norm=args.norm, eps=args.eps, steps=10, seed=args.seed)
    sync(device)
    t0 = time.perf_counter()
    x_adv = attack(model, x, y)
    sync(device)
    t_ours = time.perf_counter() - t0
    with torch.no_grad():
        rows.append(("advlab", t_ours, float((model(x_adv).argmax(1) == y).float().mean())))
    stages = {k.split("/")[1]: float(v.mean()) for k, v in attack.batch_stats.items()}
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    if torchattacks is not None:
        ref = torchattacks.AutoAttack(
            model, norm="Linf" if args.norm == "linf" else "L2", eps=args.eps, n_classes=10, seed=args.seed
        )
        sync(device)
        t0 = time.perf_counter()
        x_ref = ref(x, y)
        sync(device)
        t_ref = time.perf_counter() - t0
        with torch.no_grad():
            rows.append(("torchattacks", t_ref, float((model(x_ref).argmax(1) == y).float().mean())))
    print(f"\nAutoAttack standard, {args.norm} eps={args.eps:.4g}, {len(y)} digits images, device {device}")
    print(
        f"clean accuracy {clean:.4f}; advlab per stage: "
        + ", ".join(f"{k} {v:.4f}" for k, v in stages.items())
    )
    print("| implementation | time_s | robust_acc |\n|---|---|---|")
    for name, t, acc in rows:
        print(f"| {name} | {t:.2f} | {acc:.4f} |")
    if len(rows) == 2:
        print(f"time ratio torchattacks / advlab: {rows[1][1] / rows[0][1]:.2f}")
    else:
        print("(torchattacks not installed: make install adds it from the oracle extra)")


if __name__ == "__main__":
    main()
