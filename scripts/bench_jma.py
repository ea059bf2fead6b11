"""Benchmark JMA against ML-C&W on the embedded multi-label victim (the ``jma_digits_multilabel`` experiment).

Both attacks get the same test images and the same targets (drawn by the task with the evaluate loop's
seeded generator, so they equal the experiment's targets.pt) and the same frozen victim (trained by advlab on the 2x2 digit mosaics and cached, exactly as the experiment does). Each
attack runs on the whole set once, batch by batch; time is wall-clock (``time.perf_counter``, CUDA
synchronised). Reported per attack: ASR (the whole label vector equals the target), bASR (share of the asked
bit flips obtained), MSE on successes, mean iterations and mean time per image; and the ratios
JMA/ML-C&W. Acceptance (issue #15): JMA's ASR not lower and JMA at least 10x faster per image.

Also measured: JMA's NNLS (the Wolfe dual of its first linearised step, one problem per test image, built from
the victim's Jacobians at the clean images) solved batched by :func:`advlab.attacks.nnls.solve_min_norm_dual`
vs a Python loop of ``scipy.optimize.nnls`` over the same problems (as the equivalent least squares
``min ||G^T lam - h||`` with ``G h = -b``; the conversion is not timed), with the objective gap between them.

Run:
    .venv/bin/python scripts/bench_jma.py                       # the experiment's defaults (3-bit flips)
    .venv/bin/python scripts/bench_jma.py --flip-bits 5 --num-examples 100 --device cuda
    .venv/bin/python scripts/bench_jma.py --override attack.step=0.2 --json bench_jma.json

``--override`` takes Hydra overrides for the JMA run's config (``attack.*`` are JMA's parameters);
``--mlcw KEY=VALUE`` sets ML-C&W's (defaults: conf/attack/ml_cw.yaml, the paper's (0.01, 10, 1000)).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from advlab.attacks.base import ATTACKS
from advlab.config_files import compose_config
from advlab.context import build_spec, prepare_victim
from advlab.data.base import DATASETS
from advlab.defenses.base import DEFENSES
from advlab.loggers.base import Tracker
from advlab.metrics.distortion import image_quality
from advlab.metrics.meter import Meter
from advlab.recorder import RunRecorder
from advlab.tasks.base import TASKS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--experiment", default="jma_digits_multilabel")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--num-examples", type=int, default=None, help="default: the experiment's eval.num_examples"
    )
    ap.add_argument("--flip-bits", type=int, default=None, help="default: the experiment's task.flip_bits")
    ap.add_argument("--override", nargs="*", default=[], help="Hydra overrides for the JMA config")
    ap.add_argument("--mlcw", nargs="*", default=[], help="ML-C&W parameters as KEY=VALUE")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def compose_cfg(args: argparse.Namespace, attack: str, extra: list[str]):
    overrides = [f"experiment={args.experiment}", "logger=none", "progress=false", f"device={args.device}"]
    if args.num_examples is not None:
        overrides.append(f"eval.num_examples={args.num_examples}")
    if args.flip_bits is not None:
        overrides.append(f"task.flip_bits={args.flip_bits}")
    if attack != "jma":
        overrides.append(f"attack={attack}")
    return compose_config(*overrides, *extra)


def run_attack(attack, model, task, batches, device) -> dict[str, float]:
    meter = Meter()
    elapsed, n = 0.0, 0
    for x, y, target in batches:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        x_adv = attack(model, x, y, target)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - t0
        n += x.shape[0]
        with torch.no_grad():
            clean, adv = model(x), model(x_adv)
        task.update_attack_metrics(meter, clean, adv, y, target)
        _, success = task.attack_outcome(clean, adv, y, target)
        meter.add("mse", image_quality(x, x_adv)["mse"], mask=success)
        meter.add("iters", attack.batch_stats["iters"])
    out = meter.compute()
    out["time_per_image_s"] = elapsed / max(n, 1)
    return out


def bench_nnls(model, task, batches, spec) -> dict[str, float]:
    """Time JMA's first NNLS over all test images: batched on the device vs a scipy loop (see module doc)."""
    import numpy as np
    import scipy.optimize

    from advlab.attacks.jma import output_jacobian
    from advlab.attacks.nnls import solve_min_norm_dual

    gs, bs = [], []
    for x, _, target in batches:
        shape = x.shape[1:]
        f, jac = output_jacobian(
            lambda v, s=shape: task.decision_features(model(v.view(-1, *s))), x.flatten(1)
        )
        a, b = task.target_constraints(f, target, spec.attack.confidence)
        gs.append(a.double() @ jac.double())
        bs.append(b.double())
    g, b = torch.cat(gs), torch.cat(bs)
    solve_min_norm_dual(g[:2], b[:2])  # warm-up
    if g.device.type == "cuda":
        torch.cuda.synchronize(g.device)
    t0 = time.perf_counter()
    lam = solve_min_norm_dual(g, b)
    if g.device.type == "cuda":
        torch.cuda.synchronize(g.device)
    t_batched = time.perf_counter() - t0
    g_np, b_np = g.cpu().numpy(), b.cpu().numpy()
    hs = [-(np.linalg.pinv(gi) @ bi) for gi, bi in zip(g_np, b_np)]
    t0 = time.perf_counter()
    refs = [scipy.optimize.nnls(gi.T, hi)[0] for gi, hi in zip(g_np, hs)]
    t_scipy = time.perf_counter() - t0

    def dual(gi, bi, li):
        return 0.5 * float(np.sum((gi.T @ li) ** 2)) + float(bi @ li)

    lam_np = lam.cpu().numpy()
    gaps = [
        (dual(gi, bi, li) - dual(gi, bi, ri)) / max(abs(dual(gi, bi, ri)), 1e-300)
        for gi, bi, li, ri in zip(g_np, b_np, lam_np, refs)
    ]
    return {
        "problems": float(g.shape[0]),
        "constraints": float(g.shape[1]),
        "pixels": float(g.shape[2]),
        "batched_s": t_batched,
        "scipy_loop_s": t_scipy,
        "max_rel_objective_gap": float(max(gaps)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    jma_cfg = compose_cfg(args, "jma", args.override)
    mlcw_cfg = compose_cfg(args, "ml_cw", [f"attack.{kv}" for kv in args.mlcw])
    spec = build_spec(jma_cfg)
    data = DATASETS.build(spec.dataset, spec.seed)
    task = TASKS.build(spec.task, data.info)
    task.attach_data(data)
    with tempfile.TemporaryDirectory() as tmp:
        model, victim_info = prepare_victim(
            spec, data, task, DEFENSES.build(spec.defense, task), RunRecorder(Path(tmp), Tracker(None))
        )
    model.eval().requires_grad_(False)
    device = spec.device
    gen = torch.Generator().manual_seed(spec.seed)  # the evaluate loop's target stream
    batches = []
    for x, y in data.loader("test", spec.eval.batch_size, limit=spec.eval.num_examples):
        x, y = x.to(device), y.to(device)
        batches.append((x, y, task.sample_targets(y, gen)))
    attacks = {
        "JMA": ATTACKS.build(spec.attack, task),
        "ML-C&W": ATTACKS.build(build_spec(mlcw_cfg).attack, task),
    }
    results = {}
    for name, attack in attacks.items():
        print(
            f"running {name} on {sum(b[0].shape[0] for b in batches)} images ...", file=sys.stderr, flush=True
        )
        attack.prepare(model, data)  # one-time setup (JMA: torch.func's first-use import), not timed
        results[name] = run_attack(attack, model, task, batches, device)
    jma, mlcw = results["JMA"], results["ML-C&W"]
    nnls_stats = bench_nnls(model, task, batches, spec)
    cols = ["asr", "basr", "mse", "iters", "time_per_image_s"]
    print(
        f"\nJMA vs ML-C&W on {args.experiment} ({spec.task.target_mode}, flip_bits={spec.task.flip_bits}), "
        f"{sum(b[0].shape[0] for b in batches)} images, device {device}\n"
    )
    print("| attack | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r.get(c, float('nan')):.4g}" for c in cols) + " |")
    time_ratio = jma["time_per_image_s"] / mlcw["time_per_image_s"]
    print(f"\nASR JMA - ML-C&W: {jma['asr'] - mlcw['asr']:+.3f} (acceptance: >= 0)")
    print(
        f"time per image JMA / ML-C&W: {time_ratio:.3f} (acceptance: <= 0.1; speed-up x{1 / time_ratio:.1f})"
    )
    n = nnls_stats
    print(
        f"NNLS ({int(n['problems'])} problems, {int(n['constraints'])} constraints x {int(n['pixels'])} pixels): "
        f"batched on {device} {n['batched_s'] * 1e3:.2f} ms vs scipy loop {n['scipy_loop_s'] * 1e3:.2f} ms, "
        f"max relative objective gap {n['max_rel_objective_gap']:.2e}"
    )
    ok = jma["asr"] >= mlcw["asr"] and time_ratio <= 0.1
    print("PASS" if ok else "FAIL")
    if args.json:
        payload = {
            "results": results,
            "time_ratio": time_ratio,
            "nnls": nnls_stats,
            "pass": ok,
            "victim": victim_info,
            "jma": vars(spec.attack),
            "platform": platform.platform(),
            "torch": torch.__version__,
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
