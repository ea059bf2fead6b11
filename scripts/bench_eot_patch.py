"""Benchmark the EOT patch's training step against the victim's bare forward+backward at the same resolution.

What is measured (wall-clock, ``torch.cuda.synchronize`` on CUDA; interleaved per repeat, median reported as
images/s), for each victim on random images and labels of ``--image`` size:

* ``bare``: forward of the EOT crop-sized batch, per-pixel cross-entropy, ``backward`` to the input: the least
  work any patch-gradient step needs;
* ``eot patch``: one full step of ``attack=eot_patch`` as the universal loop runs it -- EOT transforms (random
  scale 0.5-2.0, crop, flip; image and label) from the full-size images, patch pasting, loss over correctly
  classified pixels, ``backward`` to the patch, signed-gradient step, clamp.

``overhead = bare / eot`` in time (1.00 = free; the EOT warp of a full-size image to the crop and the pasting
are the extra work). The victims are random-init and frozen (eval mode, no parameter gradients).

    .venv/bin/python scripts/bench_eot_patch.py                                # CPU defaults (small sizes)
    .venv/bin/python scripts/bench_eot_patch.py --device cuda --image 1024 2048 --crop 1024 1024 \\
        --patch 200 --batch-size 6 --victims pidnet_s pidnet_l bisenetv2 segformer_b0
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch
import torch.nn.functional as F

import advlab.attacks  # noqa: F401  (registers)
import advlab.victims  # noqa: F401
from advlab.attacks.base import ATTACKS
from advlab.data.info import DataInfo
from advlab.tasks.base import TASKS
from advlab.utils import frozen, resolve_device
from advlab.victims.base import VICTIMS


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--victims", nargs="+", default=["pidnet_s", "bisenetv2", "segformer_b0"])
    ap.add_argument("--image", nargs=2, type=int, default=[256, 512], help="full image H W")
    ap.add_argument("--crop", nargs=2, type=int, default=[256, 256], help="EOT crop H W (the network input)")
    ap.add_argument("--patch", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows here")
    return ap.parse_args(argv)


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def bench_victim(name: str, args, device) -> dict:
    h, w = args.image
    ch, cw = args.crop
    info = DataInfo(19, (3, h, w), [str(i) for i in range(19)], (0.5,) * 3, (0.25,) * 3)
    task = TASKS.build(TASKS.parse({"name": "segmentation"}), info)
    victim = VICTIMS.build(VICTIMS.parse({"name": name, "init_weights": False})).build(info, 19).to(device)
    attack = ATTACKS.build(
        ATTACKS.parse(
            {
                "name": "eot_patch",
                "patch_size": [args.patch, args.patch],
                "crop": [ch, cw],
                "batch_size": args.batch_size,
            }  # fmt: skip
        ),
        task,
    )
    gen = torch.Generator().manual_seed(0)
    attack.init_perturbation(info, device, gen)
    opt, _ = attack.make_optimizer(1)
    b = args.batch_size
    x_full = torch.rand(b, 3, h, w, device=device)
    y_full = torch.randint(0, 19, (b, h, w), device=device)
    x_crop = torch.rand(b, 3, ch, cw, device=device)
    y_crop = torch.randint(0, 19, (b, ch, cw), device=device)

    def bare():
        x = x_crop.clone().requires_grad_(True)
        F.cross_entropy(victim(x), y_crop).backward()

    def eot_step():
        loss = attack.training_loss(victim, x_full, y_full, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        attack.project()

    times = {"bare": [], "eot patch": []}
    with frozen(victim):
        bare(), eot_step()  # warm-up
        for _ in range(args.repeats):
            times["bare"].append(timed(bare, device))
            times["eot patch"].append(timed(eot_step, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "victim": name,
        "bare_img_s": b / med["bare"],
        "eot_img_s": b / med["eot patch"],
        "overhead": med["eot patch"] / med["bare"],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = [bench_victim(v, args, device) for v in args.victims]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"\nEOT patch step vs bare forward+backward | device {name} | image {args.image[0]}x{args.image[1]} -> "
        f"crop {args.crop[0]}x{args.crop[1]} | patch {args.patch} | batch {args.batch_size} | "
        f"median of {args.repeats}\n"
    )
    print("| victim | bare fwd+bwd (img/s) | EOT patch step (img/s) | time ratio eot/bare |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['victim']} | {r['bare_img_s']:.2f} | {r['eot_img_s']:.2f} | {r['overhead']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "args": vars(args), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
