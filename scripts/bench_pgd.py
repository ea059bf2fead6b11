"""Benchmark advlab's Linf PGD against torchattacks' PGD and a bare forward+backward loop.

What is measured: wall-clock time (``time.perf_counter``, with ``torch.cuda.synchronize`` on CUDA) of one
attack on one batch of the digits test split, for the same victim, data, eps, step size and number of steps:

* ``bare loop``: ``steps`` x (forward, cross-entropy, ``autograd.grad`` w.r.t. the input, signed step): the
  minimum work any PGD step needs (no random start, no projection);
* ``advlab PGD`` with ``early_stop=False``: exactly ``steps`` forward+backward passes on the whole batch;
* ``torchattacks PGD`` (``random_start=True``, same alpha), the reference implementation;
* ``advlab PGD`` with ``early_stop=True``: informative only (examples that are already misclassified stop
  costing passes, so on an undefended victim it does less work) and NOT part of the ratios.

The methods are interleaved within each repeat (ABCD ABCD ...) to reduce drift; the median over repeats is
reported as images/s. Ratios: ``overhead = advlab / bare`` (target <= 1.10) and
``speed-up = torchattacks / advlab`` (target >= 1.0), both on median times. The victim is random-init by
default (``--train-epochs N`` trains it briefly first); it is in eval mode with frozen parameters for all
methods. As a sanity check, advlab and torchattacks are also run once from the same seed and their outputs
compared (they implement the same update, so they should agree up to floating-point noise).

Run:
    make bench ARGS="--device cuda"                 # installs torchattacks (--no-deps) first
    .venv/bin/python scripts/bench_pgd.py --device cuda
    .venv/bin/python scripts/bench_pgd.py --model resnet18 --batch-size 64 --repeats 3 --json bench.json

On a shared CPU machine, ``--threads 1`` gives steadier numbers: with more threads than free cores every
parallel op waits for a descheduled worker, which inflates the cost of each small elementwise op.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import advlab.data  # noqa: F401  (registers)
import advlab.victims  # noqa: F401
from advlab.attacks.pgd import PGD, PGDConfig
from advlab.data.base import DATASETS
from advlab.data.info import DataInfo
from advlab.errors import ConfigError
from advlab.registry import parse_config
from advlab.tasks.classification import Classification
from advlab.utils import resolve_device
from advlab.victims.base import VICTIMS, Victim

INSTALL_HINT = "run `make bench` or `.venv/bin/python -m pip install --no-deps 'torchattacks>=3.5'`"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    ap.add_argument("--model", choices=("smallcnn", "resnet18"), default="smallcnn")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--alpha", type=float, default=None, help="step size (default: 2.5 * eps / steps)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, choices=(1, 3), default=3)
    ap.add_argument("--train-epochs", type=int, default=0, help="train the victim first (default: 0)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


# ---- setup ---------------------------------------------------------------------------------------------


def digits_module(args: argparse.Namespace):
    cls = DATASETS.get("digits")
    params = parse_config(
        cls.Config, {"name": "digits", "size": args.size, "channels": args.channels}, "dataset"
    )
    return cls(params, seed=args.seed)


def load_batch(args: argparse.Namespace, device: torch.device) -> tuple[Tensor, Tensor, DataInfo]:
    """``--batch-size`` images of the digits test split (tiled if the split is smaller), and the DataInfo."""
    data = digits_module(args)
    x, y = data.dataset("test").tensors
    reps = -(-args.batch_size // len(y))
    x, y = x.repeat(reps, 1, 1, 1)[: args.batch_size], y.repeat(reps)[: args.batch_size]
    return x.to(device), y.to(device), data.info


def build_victim(args: argparse.Namespace, info: DataInfo, device: torch.device) -> Victim:
    """advlab's own smallcnn / resnet18 victim (random init, or ``--train-epochs`` of Adam on digits)."""
    victim = VICTIMS.build(VICTIMS.parse({"name": args.model})).build(info, info.num_classes).to(device)
    if args.train_epochs > 0:
        x, y = digits_module(args).dataset("train").tensors
        opt = torch.optim.Adam(victim.parameters(), lr=1e-3)
        victim.train()
        for _ in range(args.train_epochs):
            for idx in torch.randperm(len(y)).split(64):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(victim(x[idx].to(device)), y[idx].to(device)).backward()
                opt.step()
    victim.eval()
    victim.requires_grad_(False)
    return victim


# ---- the methods ---------------------------------------------------------------------------------------


def bare_loop(model: nn.Module, steps: int, alpha: float) -> Callable[[Tensor, Tensor], Tensor]:
    def run(x: Tensor, y: Tensor) -> Tensor:
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(x), y)
            (grad,) = torch.autograd.grad(loss, x)
            x = (x + alpha * grad.sign()).detach()
        return x

    return run


def advlab_pgd(
    model: nn.Module, info: DataInfo, args: argparse.Namespace, alpha: float, early_stop: bool
) -> Callable[[Tensor, Tensor], Tensor]:
    cfg = PGDConfig(
        name="pgd",
        norm="linf",
        eps=args.eps,
        step_size=alpha,
        steps=args.steps,
        restarts=1,
        random_start=True,
        early_stop=early_stop,
    )
    cfg.validate("attack")
    attack = PGD(cfg, Classification(None, info))
    return lambda x, y: attack(model, x, y)


def torchattacks_pgd(
    model: nn.Module, args: argparse.Namespace, alpha: float
) -> Callable[[Tensor, Tensor], Tensor] | None:
    try:
        import torchattacks
    except ImportError:
        return None
    attack = torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=args.steps, random_start=True)
    return lambda x, y: attack(x, y)


# ---- timing --------------------------------------------------------------------------------------------


def timed(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def benchmark(
    methods: dict[str, Callable], x: Tensor, y: Tensor, device: torch.device, warmup: int, repeats: int
) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in methods.values():
            timed(fn, x, y, device)
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeats):  # interleaved: ABCD ABCD ...
        for name, fn in methods.items():
            times[name].append(timed(fn, x, y, device))
    return times


def same_seed_diff(a: Callable, b: Callable, x: Tensor, y: Tensor, seed: int) -> float:
    """Max |a(x) - b(x)| when both start from the same RNG state (same random start)."""
    torch.manual_seed(seed)
    xa = a(x, y)
    torch.manual_seed(seed)
    xb = b(x, y)
    return float((xa - xb).abs().max())


# ---- main ----------------------------------------------------------------------------------------------

BARE, ADV, TA, ADV_ES = (
    "bare fwd+bwd loop",
    "advlab PGD (early_stop=False)",
    "torchattacks PGD",
    "advlab PGD (early_stop=True)",
)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    alpha = args.alpha if args.alpha is not None else 2.5 * args.eps / args.steps

    x, y, info = load_batch(args, device)
    model = build_victim(args, info, device)
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())

    methods = {BARE: bare_loop(model, args.steps, alpha), ADV: advlab_pgd(model, info, args, alpha, False)}
    ta = torchattacks_pgd(model, args, alpha)
    if ta is None:
        print(f"NOTE: torchattacks is not installed; {INSTALL_HINT}. Reporting the other rows only.\n")
    else:
        methods[TA] = ta
    methods[ADV_ES] = advlab_pgd(model, info, args, alpha, True)

    torch.manual_seed(args.seed)
    times = benchmark(methods, x, y, device, args.warmup, args.repeats)
    median = {name: statistics.median(ts) for name, ts in times.items()}
    with torch.no_grad():
        adv_acc = float((model(methods[ADV](x, y)).argmax(1) == y).float().mean())
    diff = same_seed_diff(methods[ADV], ta, x, y, args.seed) if ta is not None else None

    overhead = median[ADV] / median[BARE]
    speedup = median[TA] / median[ADV] if ta is not None else None

    n_threads = torch.get_num_threads()
    threads = f", {n_threads} thread{'s' if n_threads > 1 else ''}" if device.type == "cpu" else ""
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"PGD-Linf benchmark: model={args.model} device={device} ({dev_name}{threads}) torch {torch.__version__}\n"
        f"batch={args.batch_size} size={args.channels}x{args.size}x{args.size} steps={args.steps} "
        f"eps={args.eps:.5f} alpha={alpha:.5f} warmup={args.warmup} repeats={args.repeats} "
        f"clean acc={clean_acc:.3f} adv acc (advlab)={adv_acc:.3f}\n"
    )
    width = len(ADV_ES) + 2
    print(f"{'method':<{width}}  {'median s':>9}  {'min s':>9}  {'images/s':>10}")
    for name in (BARE, ADV, TA, ADV_ES):
        label = name + (" *" if name == ADV_ES else "")
        if name not in methods:
            print(f"{label:<{width}}  {'n/a':>9}  {'n/a':>9}  {'n/a':>10}   (not installed: {INSTALL_HINT})")
            continue
        m = median[name]
        print(f"{label:<{width}}  {m:>9.4f}  {min(times[name]):>9.4f}  {args.batch_size / m:>10.1f}")
    print(
        "* informative only, not part of the ratios: early stopping skips already-misclassified examples.\n"
    )

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    print(f"overhead  advlab / bare          = {overhead:.3f}  (target <= 1.10)  {verdict(overhead <= 1.10)}")
    if speedup is not None:
        print(
            f"speed-up  torchattacks / advlab  = {speedup:.3f}  (target >= 1.00)  {verdict(speedup >= 1.0)}"
        )
        print(f"check     max |advlab - torchattacks| from the same seed = {diff:.2e}")
    else:
        print("speed-up  torchattacks / advlab  = n/a (torchattacks not installed)")

    if args.json is not None:
        result = {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "alpha": alpha,
            "device": str(device),
            "device_name": dev_name,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "clean_acc": clean_acc,
            "adv_acc": adv_acc,
            "methods": {
                name: {
                    "median_s": median[name],
                    "images_per_s": args.batch_size / median[name],
                    "times_s": ts,
                }
                for name, ts in times.items()
            },
            "torchattacks_available": ta is not None,
            "overhead_advlab_over_bare": overhead,
            "speedup_torchattacks_over_advlab": speedup,
            "max_abs_diff_advlab_torchattacks": diff,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
