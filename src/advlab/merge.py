"""``advlab-merge``: combine the run folders of a sharded evaluation into the unsharded run's results.

    advlab-merge SHARD_DIR... --out DIR

Each shard is a finished ``pipeline=standard`` run with ``eval.shard=i eval.num_shards=n`` (same config
otherwise); it holds its ``results.json`` (the shard's own metrics) and ``shard_state.pt``, the evaluation's
final state (meters with every per-sample value, confusion matrices, per-example correctness, targets,
attack time; :func:`advlab.loops.evaluate.save_shard_state`). The merge checks the shards belong together
(same config up to ``eval.shard`` and the display keys in :data:`IGNORED`, every shard ``0..n-1`` present
exactly once, contiguous slices of the same number of evaluated images), merges the states in shard order
(:meth:`advlab.loops.evaluate.EvaluationState.merge`) and writes ``DIR/results.json`` (atomically, last),
``DIR/metrics.jsonl``, ``DIR/targets.pt`` (targeted attacks) and ``DIR/adv_examples.png`` (the first shard's,
which is the unsharded run's first batch). The metrics equal the unsharded run's exactly, except
``attack/time_per_image_s`` (wall-clock time: the shards' attack time summed over all images).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from advlab.errors import AdvlabError

SHARD_STATE = "shard_state.pt"
#: config keys that may differ between the shards (they change what is printed, not what is measured)
IGNORED = ("progress", "progress_interval_s", "debug", "logger")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out else {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): node}


def _comparable(config: dict) -> dict[str, Any]:
    flat = _flatten({k: v for k, v in config.items() if k not in IGNORED})
    flat.pop("eval.shard", None)
    return flat


def read_shard(folder: Path) -> dict[str, Any]:
    results = folder / "results.json"
    if not folder.is_dir():
        raise AdvlabError(f"advlab-merge: '{folder}' is not a folder (give the shards' run folders)")
    if not results.is_file():
        raise AdvlabError(
            f"advlab-merge: '{folder}' holds no results.json: that shard has not finished; run it again "
            "(it resumes) before merging"
        )
    payload = json.loads(results.read_text())
    ev = payload.get("config", {}).get("eval", {})
    if int(ev.get("num_shards", 1)) <= 1:
        raise AdvlabError(
            f"advlab-merge: '{folder}' is not a shard (its eval.num_shards is {ev.get('num_shards', 1)}); "
            "merge the run folders of eval.shard=0..n-1 eval.num_shards=n"
        )
    if not (folder / SHARD_STATE).is_file():
        raise AdvlabError(
            f"advlab-merge: '{folder}' has no {SHARD_STATE} (written by pipeline=standard shards); it cannot be "
            "merged"
        )
    return {
        "folder": folder,
        "results": payload,
        "shard": int(ev["shard"]),
        "num_shards": int(ev["num_shards"]),
    }


def check_shards(shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The shards sorted by index, or an error naming what does not fit."""
    counts = {s["num_shards"] for s in shards}
    if len(counts) > 1:
        raise AdvlabError(
            "advlab-merge: the folders come from different shardings (eval.num_shards "
            + ", ".join(f"{s['num_shards']} in '{s['folder']}'" for s in shards)
            + ")"
        )
    n = counts.pop()
    by_index: dict[int, list[Path]] = {}
    for s in shards:
        by_index.setdefault(s["shard"], []).append(s["folder"])
    errors = []
    repeated = {i: f for i, f in by_index.items() if len(f) > 1}
    for i, folders in sorted(repeated.items()):
        errors.append(f"shard {i} is given {len(folders)} times ({', '.join(map(str, folders))})")
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        errors.append(
            f"shard(s) {', '.join(map(str, missing))} of eval.num_shards={n} missing; give all {n} run folders"
        )
    if errors:
        raise AdvlabError(*[f"advlab-merge: {e}" for e in errors])
    ordered = sorted(shards, key=lambda s: s["shard"])
    ref = _comparable(ordered[0]["results"]["config"])
    for s in ordered[1:]:
        other = _comparable(s["results"]["config"])
        diff = sorted(
            k for k in ref.keys() | other.keys() if ref.get(k, "<unset>") != other.get(k, "<unset>")
        )
        if diff:
            shown = "; ".join(
                f"{k}: {ref.get(k, '<unset>')!r} vs {other.get(k, '<unset>')!r}" for k in diff[:5]
            )
            raise AdvlabError(
                f"advlab-merge: '{s['folder']}' is not a shard of the same run as '{ordered[0]['folder']}' "
                f"(config differs beyond eval.shard: {shown}{' ...' if len(diff) > 5 else ''})"
            )
    return ordered


def merge(folders: list[Path], out: Path) -> dict[str, Any]:
    """Merge the shard run folders into ``out``; returns what ``out/results.json`` holds."""
    import torch

    from advlab.loops.evaluate import SHARD_STATE_FORMAT, eval_metrics
    from advlab.recorder import _jsonable
    from advlab.utils import atomic_torch_save, atomic_write_text

    if (out / "results.json").exists():
        raise AdvlabError(
            f"advlab-merge: '{out}' already holds a finished run (results.json); advlab never overwrites a "
            "run. Choose another --out"
        )
    resolved = {f.resolve() for f in folders}
    if out.resolve() in resolved:
        raise AdvlabError(f"advlab-merge: --out '{out}' is one of the shards; choose a new folder")
    shards = check_shards([read_shard(f) for f in folders])
    states = []
    for s in shards:
        path = s["folder"] / SHARD_STATE
        try:
            payload = torch.load(path, map_location="cpu", weights_only=False)  # advlab's own file
        except Exception as exc:
            raise AdvlabError(
                f"advlab-merge: '{path}' cannot be read ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != SHARD_STATE_FORMAT:
            raise AdvlabError(
                f"advlab-merge: '{path}' was written by another advlab version; rerun that shard"
            )
        states.append(payload)
    num_images = {p["num_images"] for p in states}
    ends = [p["positions"] for p in states]
    contiguous = ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:]))
    if len(num_images) > 1 or not contiguous or ends[-1][1] != num_images.pop():
        raise AdvlabError(
            "advlab-merge: the shards do not cover one evaluation (positions "
            + ", ".join(f"[{a}, {b})" for a, b in ends)
            + f" of {sorted({p['num_images'] for p in states})} evaluated images)"
        )
    run_attack = states[0]["run_attack"]
    state = states[0]["state"]
    for p in states[1:]:
        state.merge(p["state"])
    metrics = eval_metrics(state, run_attack)

    out.mkdir(parents=True, exist_ok=True)
    first = shards[0]
    if state.targets:
        atomic_torch_save(torch.cat(state.targets), out / "targets.pt")
    grid = first["folder"] / "adv_examples.png"
    if grid.is_file():
        shutil.copyfile(grid, out / "adv_examples.png")
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({k: _jsonable(v) for k, v in metrics.items()}) + "\n")
    payload = dict(first["results"])
    config = json.loads(json.dumps(payload["config"]))
    config["eval"]["shard"], config["eval"]["num_shards"] = 0, 1  # the unsharded run's config
    payload.update(
        metrics={k: _jsonable(v) for k, v in metrics.items()},
        config=config,
        merged_from=[str(s["folder"].resolve()) for s in shards],
        elapsed_s=round(sum(float(s["results"].get("elapsed_s", 0.0)) for s in shards), 3),
    )
    text = json.dumps(payload, indent=2, default=str)
    atomic_write_text(out / "results.json", text)
    return json.loads(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="advlab-merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("shards", type=Path, nargs="+", help="the run folders of eval.shard=0..n-1")
    parser.add_argument("--out", type=Path, required=True, help="folder for the merged results.json")
    args = parser.parse_args(argv)
    try:
        results = merge(args.shards, args.out)
    except AdvlabError as exc:
        for message in exc.messages:
            print(f"advlab-merge: error: {message.removeprefix('advlab-merge: ')}", file=sys.stderr)
        return 2
    m = results["metrics"]
    print(
        f"merged {len(results['merged_from'])} shards ({m.get('eval/num_examples')} images) into "
        f"{args.out / 'results.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
