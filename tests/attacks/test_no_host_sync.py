"""No per-step host syncs in the attacks' loops: inside every ``for`` / ``while`` body of
``src/advlab/attacks/*.py``, no ``.item()``, ``.cpu()``, ``.tolist()``, ``.numpy()`` and no ``float(...)``,
``int(...)``, ``bool(...)`` of a non-literal (each waits for the GPU to finish the queued work), except the
allow-listed calls below, each with the reason it has to stay."""

from __future__ import annotations

import ast
from pathlib import Path

ATTACKS = Path(__file__).resolve().parents[2] / "src" / "advlab" / "attacks"
SYNC_METHODS = {"item", "cpu", "tolist", "numpy"}
SYNC_BUILTINS = {"float", "int", "bool"}

#: (file, call as ast.unparse writes it) -> why the sync stays
ALLOWED = {
    ("cw.py", "loss.item()"): "C&W's abort_early rule: one check every steps/10 iterations, not every step",
    ("jma.py", "bool(converged.all())"): "active-set solver: exit once every example has converged",
    ("jma.py", "bool(hit.any())"): "binary search only for the examples whose linear step succeeded",
    ("lpa.py", "bool(live.any())"): "once per binary-search round on lambda, not per step",
    ("ml_cw.py", "bool(stalled.any())"): "C&W's abort rule, per example, every steps/10 iterations",
    ("ml_cw.py", "bool(never.any())"): "once per binary-search step, not per iteration",
    ("nnls.py", "bool(done.all())"): "Lawson-Hanson: exit once every problem is solved",
    ("nnls.py", "bool(bad.any())"): "Lawson-Hanson inner loop: exit once every iterate is feasible",
    ("perceptual_base.py", "bool(outside.any())"): "LPIPS projection: exit once every example is inside",
    ("pgd.py", "bool(keep.all())"): "early_stop (off by default): drop examples that already succeed",
    ("sema_ml.py", "bool(hit.any())"): "record the examples that reached the target set",
    ("sema_ml.py", "bool(keep.any())"): "exit once every example has reached its target",
    ("semantic_adv.py", "bool(done.all())"): "early_stop: exit once every attack has succeeded",
    ("semantic_adv.py", "int(done.sum())"): "a log line every 50 steps",
    ("square.py", "bool(torch.rand(1) > 0.5)"): "a CPU random draw (the reference's stream): no device sync",
}


def sync_calls(path: Path) -> list[tuple[int, str]]:
    """(line, call) of every host-syncing call inside a loop body of ``path``."""
    found: dict[int, tuple[int, str]] = {}
    for loop in ast.walk(ast.parse(path.read_text())):
        if not isinstance(loop, ast.For | ast.While | ast.AsyncFor):
            continue
        for stmt in loop.body + loop.orelse:
            for node in ast.walk(stmt):
                if not isinstance(node, ast.Call):
                    continue
                fn = node.func
                method = isinstance(fn, ast.Attribute) and fn.attr in SYNC_METHODS
                builtin = (
                    isinstance(fn, ast.Name)
                    and fn.id in SYNC_BUILTINS
                    and not all(isinstance(a, ast.Constant) for a in node.args)
                )
                if method or builtin:
                    found[id(node)] = (node.lineno, ast.unparse(node))
    return sorted(found.values())


def test_attack_loops_have_no_unlisted_host_syncs():
    offending, used = [], set()
    for path in sorted(ATTACKS.glob("*.py")):
        for line, call in sync_calls(path):
            if (path.name, call) in ALLOWED:
                used.add((path.name, call))
            else:
                offending.append(f"{path.name}:{line}: {call}")
    assert not offending, "host syncs inside attack loops (keep the work on the device):\n" + "\n".join(
        offending
    )
    assert used == set(ALLOWED), f"allow-list entries that no longer occur: {sorted(set(ALLOWED) - used)}"


def test_the_check_finds_a_sync_in_a_loop(tmp_path):
    source = tmp_path / "attack.py"
    source.write_text(
        "def run(x, steps):\n"
        "    total = float('inf')\n"
        "    for _ in range(steps):\n"
        "        total = x.sum().item()\n"
        "        while bool(x.any()):\n"
        "            x = x.cpu()\n"
        "    return x.tolist()\n"
    )
    assert sync_calls(source) == [(4, "x.sum().item()"), (5, "bool(x.any())"), (6, "x.cpu()")]
