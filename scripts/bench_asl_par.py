"""Benchmark: ASL-PAR noise optimisation (advlab's universal loop: data, shifted labels, L_cls + 0.5 L_GL,
SGD step, projection) against the victim's bare forward+backward w.r.t. the input on the same batches.

    python scripts/bench_asl_par.py                      # CPU, tiny PromptPAR, synthpar 64x64
    python scripts/bench_asl_par.py --device cuda --batch-size 48 --batches 40

Prints images/s of both and their ratio (overhead = bare / advlab; 1.0 means no overhead). Medians over
``--repeats`` interleaved repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from advlab.attacks.asl_par import ASLPAR, ASLPARConfig
from advlab.data.synthpar import SynthPAR, SynthPARConfig
from advlab.loops.universal import fit_universal
from advlab.tasks.par import PAR, PARTaskConfig
from advlab.victims.promptpar import PromptPAR, PromptPARConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--batches", type=int, default=8, help="batches per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default="advlab-tiny-clip", help="open_clip config (random weights)")
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.batch_size * args.batches
    data = SynthPAR(SynthPARConfig(name="synthpar", size=args.size, num_train=n, num_test=16), 0)
    task = PAR(PARTaskConfig(name="par"), data.info)
    vcfg = PromptPARConfig(name="promptpar", model_name=args.model, prompts_per_group=2, freeze_clip="false")
    victim = PromptPAR(vcfg).build(data.info, data.info.num_classes).to(device).eval().requires_grad_(False)
    cfg = ASLPARConfig(name="asl_par", epochs=1, batch_size=args.batch_size, lr=0.003)

    def advlab_run() -> float:
        attack = ASLPAR(cfg, task)
        sync(device)
        t0 = time.perf_counter()
        fit_universal(attack, victim, data, device, seed=0, progress=False)
        sync(device)
        return n / (time.perf_counter() - t0)

    def bare_run() -> float:
        loader = data.loader("train", args.batch_size, shuffle=True, seed=0)
        sync(device)
        t0 = time.perf_counter()
        for x, y in loader:
            x = x.to(device).requires_grad_(True)
            y = y.to(device)
            task.loss(victim(x), y).backward()
        sync(device)
        return n / (time.perf_counter() - t0)

    advlab_run(), bare_run()  # warm-up
    ours, bare = [], []
    for _ in range(args.repeats):
        ours.append(advlab_run())
        bare.append(bare_run())
    o, b = statistics.median(ours), statistics.median(bare)
    print(
        f"device {device}, {args.model} at {args.size}x{args.size}, batch {args.batch_size}, {n} images/repeat"
    )
    print("| setting | bare fwd+bwd | ASL-PAR noise optimisation | overhead bare/advlab |")
    print("|---|---|---|---|")
    print(f"| {args.device}, batch {args.batch_size} | {b:.1f} img/s | {o:.1f} img/s | **{b / o:.2f}** |")


if __name__ == "__main__":
    main()
