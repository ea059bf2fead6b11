"""Benchmark the cost of PAT: time per training epoch of PAT vs standard training vs PGD adversarial training
on the same model and data, and advlab's APGD against torchattacks' APGD (when installed).

What is measured (``time.perf_counter``, ``torch.cuda.synchronize`` on CUDA):

* one epoch of the fit loop (``advlab.loops.fit.fit``) over ``--train-examples`` digits training images, for
  ``standard`` (no defense), ``pgd_at`` (PGD-Linf 8/255, ``--at-steps`` steps, the foundation's
  adversarial training) and ``pat`` (Fast-LPA with LPIPS-self, bound 0.5, ``--pat-steps`` iterations, only
  correctly classified inputs attacked), all from the same initial weights; the median over ``--repeats``.
  Ratios: ``pat / standard`` and ``pat / pgd_at`` (what a user budgets a PAT run with).
* APGD-CE Linf 8/255 with ``--apgd-steps`` iterations on one test batch: advlab vs torchattacks
  (``torchattacks.APGD(loss="ce", n_restarts=1)``), median over repeats, ratio ``torchattacks / advlab``
  (>= 1: advlab is at least as fast), plus the accuracy each leaves (they implement the same algorithm).

Run:
    .venv/bin/python scripts/bench_pat.py                       # CPU, digits 32 px, small CNN
    .venv/bin/python scripts/bench_pat.py --device cuda --model resnet18 --train-examples 1347
    (torchattacks: .venv/bin/python -m pip install --no-deps 'torchattacks>=3.5')
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import advlab.attacks  # noqa: F401  (registers)
import advlab.data  # noqa: F401
import advlab.defenses  # noqa: F401
import advlab.victims  # noqa: F401
from advlab.attacks.base import ATTACKS
from advlab.data.base import DATASETS
from advlab.defenses.base import DEFENSES
from advlab.loops.fit import TrainConfig, fit
from advlab.registry import parse_config
from advlab.tasks.base import TASKS
from advlab.utils import resolve_device
from advlab.victims.base import VICTIMS


class Subset(DATASETS.get("digits")):  # type: ignore[misc]
    """The digits module restricted to the first N training images."""

    def __init__(self, params, seed, n):
        super().__init__(params, seed)
        self.n = n

    def dataset(self, split):
        ds = super().dataset(split)
        if split == "train":
            x, y = ds.tensors
            return torch.utils.data.TensorDataset(x[: self.n], y[: self.n])
        return ds


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default="smallcnn")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--train-examples", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--at-steps", type=int, default=7)
    ap.add_argument("--pat-steps", type=int, default=10)
    ap.add_argument("--apgd-steps", type=int, default=100)
    ap.add_argument("--apgd-examples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pretrain-epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dcfg = parse_config(
        DATASETS.get("digits").Config, {"name": "digits", "size": args.size, "channels": 3}, "d"
    )
    data = Subset(dcfg, 0, args.train_examples)
    task = TASKS.build(
        parse_config(TASKS.get("classification").Config, {"name": "classification"}, "t"), data.info
    )
    vcfg = VICTIMS.parse({"name": args.model})
    torch.manual_seed(0)
    base = VICTIMS.build(vcfg).build(data.info, task.num_outputs)
    train = TrainConfig(epochs=1, batch_size=args.batch_size)
    # a trained starting point, so PAT (which attacks only correctly classified inputs) does its full work
    pre = TrainConfig(epochs=args.pretrain_epochs, batch_size=args.batch_size)
    fit(
        base,
        task,
        data,
        pre,
        DEFENSES.build(DEFENSES.parse({"name": "none"}), task),
        device,
        0,
        progress=False,
    )
    xt, yt = data.dataset("train").tensors
    with torch.no_grad():
        train_acc = float((base.eval()(xt.to(device)).argmax(1) == yt.to(device)).float().mean())
    print(f"starting model: training accuracy {train_acc:.3f} (PAT attacks that share of each batch)")
    defenses = {
        "standard": {"name": "none"},
        "pgd_at": {
            "name": "adv_training",
            "attack": {"name": "pgd", "eps": 8 / 255, "steps": args.at_steps, "early_stop": False},
        },
        "pat": {"name": "pat", "attack": {"name": "fast_lpa", "bound": 0.5, "steps": args.pat_steps}},
    }
    times: dict[str, list[float]] = {k: [] for k in defenses}
    for _ in range(args.repeats):
        for name, node in defenses.items():  # interleaved
            defense = DEFENSES.build(DEFENSES.parse(node), task)
            model = copy.deepcopy(base)
            sync(device)
            t0 = time.perf_counter()
            fit(model, task, data, train, defense, device, 0, progress=False)
            sync(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\nTraining epoch ({args.train_examples} images, batch {args.batch_size}, {args.model}, {device}):"
    )
    print("| method | s/epoch | ratio to standard |\n|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} | {v / med['standard']:.1f}x |")
    print(f"PAT / PGD-AT: {med['pat'] / med['pgd_at']:.2f}x")

    x, y = data.dataset("test").tensors
    x, y = x[: args.apgd_examples].to(device), y[: args.apgd_examples].to(device)
    model = base.to(device).eval().requires_grad_(False)
    apgd = ATTACKS.build(ATTACKS.parse({"name": "apgd", "eps": 8 / 255, "steps": args.apgd_steps}), task)
    try:
        import torchattacks
    except ImportError:
        torchattacks = None
    ref = (
        torchattacks.APGD(model, norm="Linf", eps=8 / 255, steps=args.apgd_steps, n_restarts=1, loss="ce")
        if torchattacks
        else None
    )
    at, tt, acc = [], [], {}
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        xa = apgd(model, x, y)
        sync(device)
        at.append(time.perf_counter() - t0)
        with torch.no_grad():
            acc["advlab"] = float((model(xa).argmax(1) == y).float().mean())
        if ref is not None:
            sync(device)
            t0 = time.perf_counter()
            xr = ref(x, y)
            sync(device)
            tt.append(time.perf_counter() - t0)
            with torch.no_grad():
                acc["torchattacks"] = float((model(xr).argmax(1) == y).float().mean())
    print(f"\nAPGD-CE Linf 8/255, {args.apgd_steps} iterations, {len(y)} images:")
    print("| implementation | s | images/s | accuracy left |\n|---|---|---|---|")
    print(
        f"| advlab | {statistics.median(at):.2f} | {len(y) / statistics.median(at):.0f} | {acc['advlab']:.3f} |"
    )
    if ref is not None:
        m = statistics.median(tt)
        print(f"| torchattacks | {m:.2f} | {len(y) / m:.0f} | {acc['torchattacks']:.3f} |")
        print(f"speed-up torchattacks / advlab: {m / statistics.median(at):.2f}x")
    else:
        print("(torchattacks not installed: pip install --no-deps 'torchattacks>=3.5' for the comparison)")


if __name__ == "__main__":
    main()
