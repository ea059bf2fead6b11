"""Wall time from start to failure of every bad-input case of ``tests/cli/test_bad_input.py``, each in a fresh
``python -m advlab`` subprocess (what a researcher waits for a typo), as a Markdown table.

    .venv/bin/python scripts/bench_cli_errors.py               # every case
    .venv/bin/python scripts/bench_cli_errors.py -k eps cifar   # cases whose id contains one of the words
    .venv/bin/python scripts/bench_cli_errors.py --repeat 3     # best of 3

Not a timed test: the numbers depend on the machine and its load; the issue's target is < 2 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "cli")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", nargs="*", default=[], help="only cases whose id contains one of these words")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the table shows the fastest")
    args = parser.parse_args(argv)

    from test_bad_input import CASES, case_argv, error_lines

    cases = [c for c in CASES if not args.k or any(word in c.id for word in args.k)]
    rows = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for case in cases:
        best, code, line = float("inf"), None, ""
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="advlab-bench-") as tmp:
                tmp_path = Path(tmp)
                if case.setup is not None:
                    case.setup(tmp_path)
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "advlab", *case_argv(case, tmp_path)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=600,
                )
                best = min(best, time.perf_counter() - t0)
                code = proc.returncode
                lines = error_lines(proc.stderr)
                line = lines[0] if lines else (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        rows.append((case.id, best, code, line.replace(str(tmp_path), "{tmp}")))
        print(f"{case.id}: {best:.2f} s, exit {code}", file=sys.stderr, flush=True)

    print("| case | wall s | exit | message |")
    print("|---|---:|---:|---|")
    for case_id, wall, code, line in rows:
        message = line.removeprefix("advlab: error: ")
        message = message if len(message) <= 110 else message[:107] + "..."
        print(f"| {case_id} | {wall:.2f} | {code} | {message.replace('|', '/')} |")
    walls = sorted(w for _, w, _, _ in rows)
    if walls:
        print(
            f"\n{len(rows)} cases: median {walls[len(walls) // 2]:.2f} s, max {walls[-1]:.2f} s; "
            f"{sum(w < 2 for w in walls)} under 2 s; exit 2 for {sum(c == 2 for _, _, c, _ in rows)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
