"""One run: validate the whole composition, set up the run folder and tracker, then hand over to the
configured pipeline (``pipeline=standard``: fit the victim if it needs training (cached), optimise a universal
perturbation if the attack is one, evaluate clean and under the attack).

``build_spec`` does all validation before any work, so a wrong value fails with a message naming its key.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import advlab.attacks  # noqa: F401  (registers)
import advlab.data  # noqa: F401
import advlab.defenses  # noqa: F401
import advlab.loggers  # noqa: F401
import advlab.pipelines  # noqa: F401
import advlab.tasks  # noqa: F401
import advlab.victims  # noqa: F401
from advlab import distributed
from advlab.attacks.base import ATTACKS
from advlab.data.base import DATASETS, DataModule
from advlab.data.info import label_mismatch
from advlab.defenses.base import DEFENSES, Defense
from advlab.errors import AdvlabError, CheckpointError, ConfigError
from advlab.loggers.base import TRACKERS
from advlab.loops.evaluate import EvalConfig
from advlab.loops.fit import TrainConfig, fit
from advlab.pipelines.base import PIPELINES
from advlab.progress import DEFAULT_INTERVAL_S
from advlab.progress import configure as configure_progress
from advlab.recorder import RunRecorder
from advlab.registry import parse_config
from advlab.report import print_summary
from advlab.tasks.base import TASKS, Task
from advlab.utils import (
    atomic_torch_save,
    atomic_write_text,
    file_lock,
    file_sha256,
    reading_state,
    resolve_device,
    seed_everything,
    stable_hash,
)
from advlab.victims.base import VICTIMS, Victim, load_victim_weights

logger = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when a change invalidates cached victims


@dataclasses.dataclass
class RunSpec:
    seed: int
    device: torch.device
    dataset: Any
    task: Any
    victim: Any
    attack: Any
    defense: Any
    logger: Any
    train: TrainConfig
    eval: EvalConfig
    cache_dir: Path
    progress: bool
    pipeline: Any = None


def _require(cfg: DictConfig, key: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{key}: missing from the config")
    return cfg[key]


def build_spec(cfg: DictConfig) -> RunSpec:
    seed = _require(cfg, "seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: must be an integer (got {seed!r})")
    device = resolve_device(_require(cfg, "device"))
    dataset = DATASETS.parse(_require(cfg, "dataset"))
    task_node = cfg.get("task") or {"name": "auto"}
    if task_node.get("name", "auto") == "auto":
        default = DATASETS.get(dataset.name)
        task_node = {
            **OmegaConf.to_container(task_node),
            "name": default.default_task,
        }
    task = TASKS.parse(task_node)
    data_cls, task_cls = DATASETS.get(dataset.name), TASKS.get(task.name)
    mismatch = label_mismatch(
        task.name, task_cls.label_kind, dataset.name, data_cls.label_kind, data_cls.default_task
    )
    if mismatch:  # before any data is read or a victim trained
        raise ConfigError(mismatch)
    victim = VICTIMS.parse(_require(cfg, "victim"))
    if victim.checkpoint:
        path = Path(os.path.expanduser(victim.checkpoint))
        if not path.is_file():
            raise CheckpointError(f"victim.checkpoint: file '{path}' does not exist")
    attack = ATTACKS.parse(_require(cfg, "attack"))
    defense = DEFENSES.parse(_require(cfg, "defense"))
    logger = TRACKERS.parse(_require(cfg, "logger"))
    train = parse_config(TrainConfig, cfg.get("train"), "train")
    eval_ = parse_config(EvalConfig, cfg.get("eval"), "eval")
    cache_dir = Path(os.path.expanduser(str(_require(cfg, "cache_dir"))))
    pipeline = PIPELINES.parse(cfg.get("pipeline") or {"name": "standard"})
    return RunSpec(
        seed,
        device,
        dataset,
        task,
        victim,
        attack,
        defense,
        logger,
        train,
        eval_,
        cache_dir,
        bool(cfg.get("progress", True)),
        pipeline,
    )


def victim_cache_key(spec: RunSpec) -> dict[str, Any]:
    """Everything that determines a trained victim's weights."""
    victim = dataclasses.asdict(spec.victim)
    checkpoint = victim.pop("checkpoint")
    dataset = dataclasses.asdict(spec.dataset)
    dataset.pop("root", None)  # where the data lives does not change the weights
    return {
        "format": CACHE_FORMAT,
        "dataset": dataset,
        "task": {  # fields that only shape the evaluation (e.g. how targets are drawn) do not change the weights
            k: v
            for k, v in dataclasses.asdict(spec.task).items()
            if k not in getattr(type(spec.task), "eval_only_fields", ())
        },
        "victim": victim,
        "init_checkpoint": file_sha256(checkpoint) if checkpoint else None,
        "train": dataclasses.asdict(spec.train),
        "defense": dataclasses.asdict(spec.defense),
        "seed": spec.seed,
    }


def prepare_victim(
    spec: RunSpec, data: DataModule, task: Task, defense: Defense, recorder: RunRecorder
) -> tuple[Victim, dict[str, Any]]:
    """Build the victim; load ``victim.checkpoint``; train it (with the defense) when needed, cached."""
    seed_everything(spec.seed)
    builder = VICTIMS.build(spec.victim)
    victim = builder.build(data.info, task.num_outputs)
    ckpt = spec.victim.checkpoint
    if ckpt:
        load_victim_weights(victim, builder.load_checkpoint(ckpt), ckpt)
        if not defense.trains_victim:
            return victim.to(spec.device).eval(), {"source": "checkpoint", "path": str(ckpt)}
    key_parts = victim_cache_key(spec)
    key = stable_hash(key_parts)
    path = spec.cache_dir / "victims" / f"{spec.dataset.name}-{spec.victim.name}-{spec.defense.name}-{key}.pt"
    main = distributed.is_main()  # under torchrun all ranks train together; rank 0 alone locks and writes
    with file_lock(path.with_suffix(".lock")) if main else contextlib.nullcontext():
        if distributed.broadcast(path.is_file()):
            with reading_state(
                path, "cached victim", f"Delete it (rm '{path}') and the victim is trained again"
            ):
                load_victim_weights(
                    victim, torch.load(path, map_location="cpu", weights_only=True), str(path)
                )
            logger.info(f"loaded cached victim {path} (training skipped)")
            return victim.to(spec.device).eval(), {"source": "cache", "path": str(path), "key": key}
        logger.info(
            f"training {spec.victim.name} on {spec.dataset.name} (defense: {spec.defense.name}); "
            f"cache: {path}"
        )
        t0 = time.perf_counter()
        resume = path.with_suffix(".resume.pt")
        fit(
            victim,
            task,
            data,
            spec.train,
            defense,
            spec.device,
            spec.seed,
            resume_path=resume,
            log=recorder.log,
            progress=spec.progress,
        )
        if main:
            atomic_torch_save({k: v.cpu() for k, v in victim.state_dict().items()}, path)
            atomic_write_text(path.with_suffix(".json"), OmegaConf.to_yaml(OmegaConf.create(key_parts)))
            resume.unlink(missing_ok=True)
        distributed.barrier()
        return victim.eval(), {
            "source": "trained",
            "path": str(path),
            "key": key,
            "train_time_s": round(time.perf_counter() - t0, 2),
        }


@dataclasses.dataclass
class Components:
    """The built components of one spec."""

    data: DataModule
    task: Task
    defense: Defense
    attack: Any


@dataclasses.dataclass
class RunContext:
    """What a pipeline works with: the composed config, its validated spec, the run folder and recorder."""

    cfg: DictConfig
    spec: RunSpec
    run_dir: Path
    config: dict[str, Any]  # the resolved config, as saved in results.json
    tracker: Any
    recorder: RunRecorder

    def build(self, spec: RunSpec | None = None) -> Components:
        """Build dataset, task, defense and attack of ``spec`` (default: the run's), seeded."""
        spec = spec or self.spec
        seed_everything(spec.seed)
        data = DATASETS.build(spec.dataset, spec.seed)
        task = TASKS.build(spec.task, data.info)
        task.attach_data(data)
        attack = ATTACKS.build(spec.attack, task)
        attack.check_data(data.info)  # e.g. a patch larger than the images: refused before training
        return Components(data, task, DEFENSES.build(spec.defense, task), attack)

    def prepare_victim(self, components: Components, spec: RunSpec | None = None) -> tuple[Victim, dict]:
        """Train (cached) or load the victim of ``spec``; see :func:`prepare_victim`."""
        return prepare_victim(
            spec or self.spec, components.data, components.task, components.defense, self.recorder
        )

    def sub_spec(self, overrides: dict[str, Any] | DictConfig) -> RunSpec:
        """The spec of the run's config with ``overrides`` merged in (for multi-stage pipelines)."""
        spec = build_spec(OmegaConf.merge(self.cfg, overrides))
        if distributed.rank_world()[1] > 1:
            spec.device = self.spec.device  # this rank's GPU
        return spec


def run(cfg: DictConfig, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Execute one composed config; returns the content of ``results.json``."""
    spec = build_spec(cfg)  # every config error surfaces here, before any work
    configure_progress(cfg.get("progress_interval_s", DEFAULT_INTERVAL_S))  # off-TTY progress lines
    spec.device = distributed.init_from_env(spec.device)  # torchrun: join the process group
    pipeline = PIPELINES.build(spec.pipeline)
    run_dir = Path(run_dir)
    if not distributed.is_main():  # other ranks train with rank 0 and record nothing in the run folder
        run_dir = Path(tempfile.mkdtemp(prefix=f"advlab-rank{distributed.rank_world()[0]}-"))
        atexit.register(shutil.rmtree, run_dir, ignore_errors=True)  # leave nothing behind
        cfg = OmegaConf.merge(cfg, {"progress": False})
        spec = dataclasses.replace(spec, logger=TRACKERS.parse({"name": "none"}), progress=False)
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
        for leftover in ("eval_state.pt", "universal_state.pt"):
            (run_dir / leftover).unlink(missing_ok=True)
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
