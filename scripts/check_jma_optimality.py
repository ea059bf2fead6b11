"""Print JMA's ||d_JMA|| / ||d*_QP|| on exactly linear victims as a table (the issue's acceptance check).

For each output encoding (one-hot, multi-label 3 and 5 flips, ECOC) and image set (interior, box-active)
a random linear victim ``f(x) = W x + c`` is attacked by JMA at confidence 0 and the perturbation compared
with the exact minimum-L2 perturbation reaching the same target region inside the [0,1] box (scipy SLSQP on
the convex QP). Acceptance: mean <= 1.02 and worst <= 1.10 everywhere, every attack successful.

Run:
    .venv/bin/python scripts/check_jma_optimality.py                    # advlab's defaults
    .venv/bin/python scripts/check_jma_optimality.py --paper            # the paper's plain step (no margin, clip)
    .venv/bin/python scripts/check_jma_optimality.py --batch 64 --seeds 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from jma_helpers import LINEAR_SETTINGS, jma_optimality_ratios  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument(
        "--paper", action="store_true", help="boundary_margin=0, box_iters=0 (plain clipped step)"
    )
    args = ap.parse_args(argv)
    params = {"boundary_margin": 0.0, "box_iters": 0} if args.paper else {}
    print("| setting | images | mean ratio | worst | success | unreachable |\n|---|---|---|---|---|---|")
    passed = True
    for setting in LINEAR_SETTINGS:
        for box in (False, True):
            ratios, oks, left = [], [], 0
            for seed in range(args.seeds):
                r, ok, un, _ = jma_optimality_ratios(setting, box, args.batch, seed=seed, **params)
                ratios.append(r)
                oks.append(ok)
                left += un
            r, ok = torch.cat(ratios), torch.cat(oks)
            passed &= bool(r.mean() <= 1.02 and r.max() <= 1.10 and ok.all())
            where = "box-active" if box else "interior"
            print(
                f"| {setting}, {where} | {len(r)} | {r.mean():.4f} | {r.max():.4f} | "
                f"{ok.float().mean():.2f} | {left} |"
            )
    print("acceptance (mean <= 1.02, worst <= 1.10, all successful):", "PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
