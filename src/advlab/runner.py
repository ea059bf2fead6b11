"""One run: validate the whole composition, set up the run folder and tracker, then hand over to the
configured pipeline (``pipeline=standard``: fit the victim if it needs training (cached), optimise a universal
perturbation if the attack is one, evaluate clean and under the attack).

What a pipeline works with (the spec, the context, the cache) lives in :mod:`advlab.context`; this module only
drives one run, and nothing imports it but the entrypoint.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from advlab import distributed
from advlab.context import RunContext, build_spec
from advlab.errors import AdvlabError, ConfigError
from advlab.loggers.base import TRACKERS
from advlab.pipelines.base import PIPELINES
from advlab.progress import DEFAULT_INTERVAL_S
from advlab.progress import configure as configure_progress
from advlab.recorder import RunRecorder
from advlab.reporting.summary import print_summary


def run(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Execute one composed config; returns the content of ``results.json``."""
    spec = build_spec(cfg)  # every config error surfaces here, before any work
    spec.device = distributed.init_from_env(spec.device)  # torchrun: join the process group
    pipeline = PIPELINES.build(spec.pipeline)
    if spec.eval.num_shards > 1 and not pipeline.shardable:
        raise ConfigError(
            f"eval.num_shards: pipeline '{spec.pipeline.name}' cannot be sharded (got eval.num_shards="
            f"{spec.eval.num_shards}); shard pipeline=standard runs, or run this pipeline unsharded"
        )
    run_dir = Path(run_dir)
    if not distributed.is_main():  # other ranks train with rank 0 and record nothing in the run folder
        run_dir = Path(tempfile.mkdtemp(prefix=f"advlab-rank{distributed.rank_world()[0]}-"))
        atexit.register(shutil.rmtree, run_dir, ignore_errors=True)  # leave nothing behind
        cfg = OmegaConf.merge(cfg, {"progress": False})
        spec = dataclasses.replace(spec, logger=TRACKERS.parse({"name": "none"}), progress=False)
    # off-TTY progress lines; components' own loops (e.g. C&W's binary search) report on the main process
    configure_progress(cfg.get("progress_interval_s", DEFAULT_INTERVAL_S), enabled=spec.progress)
    if (run_dir / "results.json").exists():
        raise AdvlabError(
            f"run folder '{run_dir}' already holds a finished run (results.json); advlab never overwrites a run. "
            "Choose another hydra.run.dir."
        )
    config = OmegaConf.to_container(cfg, resolve=True)
    tracker = TRACKERS.build(spec.logger)
    ctx = RunContext(cfg, spec, run_dir, config, tracker, RunRecorder(run_dir, tracker))
    pipeline.check(ctx)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker.start(run_dir, config, run_dir.name)
    try:
        metrics, extra = pipeline.run(ctx)
        extra = {
            "dataset": spec.dataset.name,
            "task": spec.task.name,
            "victim": spec.victim.name,
            "attack": spec.attack.name,
            "defense": spec.defense.name,
            "pipeline": spec.pipeline.name,
            "device": str(spec.device),
            **extra,
        }
        results = ctx.recorder.results(metrics, config, **extra)
        ctx.remove_scratch()
        title = f"{spec.victim.name} on {spec.dataset.name} | attack {spec.attack.name} | defense {spec.defense.name}"
        if spec.pipeline.name != "standard":
            title = f"{spec.pipeline.name}: {title}"
        if distributed.is_main():  # one summary, not one per rank
            print_summary(title, metrics, run_dir)
        tracker.finish(0)
    except BaseException:
        tracker.finish(1)
        raise
    return results
