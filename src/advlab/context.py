"""What a run is made of and what a pipeline works with.

:func:`build_spec` validates a composed config into a :class:`RunSpec` (every config error surfaces here,
before any work); :class:`RunContext` is what a pipeline receives: it builds a spec's components, prepares
(loads, or trains with the defense and caches) victims through the one artifact cache, derives the spec of
a sub-run with :meth:`RunContext.spec_with`, and hands out scratch files that are removed when the run
finishes. :mod:`advlab.runner` only drives one run with it; nothing imports the runner.
"""

from __future__ import annotations

import dataclasses
import logging
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
from advlab.attacks.base import ATTACKS
from advlab.cache import ArtifactCache
from advlab.data.base import DATASETS, DataModule
from advlab.data.configs import content_key
from advlab.defenses.base import DEFENSES, Defense
from advlab.errors import ConfigError
from advlab.loops.fit import fit
from advlab.recorder import RunRecorder
from advlab.tasks.base import TASKS, Task
from advlab.utils import file_sha256, resolve_device, seed_everything
from advlab.validation import RunSpec, check_config
from advlab.victims.acceleration import accelerate, compile_victim
from advlab.victims.base import VICTIMS, Victim, load_victim_weights

logger = logging.getLogger(__name__)
CACHE_FORMAT = 1  # bump when a change invalidates cached victims


def build_spec(cfg: DictConfig) -> RunSpec:
    """The validated spec of a composed config: :func:`advlab.validation.check_config` (every bad value at
    once, torch-free), then the device resolved on this machine."""
    parsed = check_config(cfg)
    return dataclasses.replace(parsed, device=resolve_device(parsed.device))


def victim_cache_key(spec: RunSpec) -> dict[str, Any]:
    """Everything that determines a trained victim's weights."""
    victim = dataclasses.asdict(spec.victim)
    checkpoint = victim.pop("checkpoint")
    dataset = content_key(spec.dataset)  # where the data lives and how it is loaded do not change the weights
    key = {
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
    # weights trained under bf16/fp16 autocast are other weights; the memory format and compiling only change
    # rounding, as the device does (not in the key either). Absent in fp32: cache keys stay as they were.
    if spec.acceleration.precision != "fp32":
        key["precision"] = spec.acceleration.precision
    return key


def prepare_victim(
    spec: RunSpec, data: DataModule, task: Task, defense: Defense, recorder: RunRecorder
) -> tuple[Victim, dict[str, Any]]:
    """Build the victim; load ``victim.checkpoint``; train it (with the defense) when needed, cached. The
    victim runs as ``spec.acceleration`` says (precision and memory format from the start, so training too;
    compiled once its weights are final)."""
    seed_everything(spec.seed)
    builder = VICTIMS.build(spec.victim)
    victim = accelerate(builder.build(data.info, task.num_outputs), spec.acceleration)
    ckpt = spec.victim.checkpoint
    if ckpt:
        load_victim_weights(victim, builder.load_checkpoint(ckpt), ckpt)
        if not defense.trains_victim:
            return compile_victim(victim.to(spec.device).eval()), {"source": "checkpoint", "path": str(ckpt)}
    cache = ArtifactCache(spec.cache_dir)
    stem = f"{spec.dataset.name}-{spec.victim.name}-{spec.defense.name}"
    artifact = cache.artifact("victims", stem, victim_cache_key(spec))
    t0 = time.perf_counter()

    def train(resume_path: Path) -> dict[str, torch.Tensor]:
        logger.info(
            f"training {spec.victim.name} on {spec.dataset.name} (defense: {spec.defense.name}); "
            f"cache: {artifact.path}"
        )
        fit(
            victim, task, data, spec.train, defense, spec.device, spec.seed,
            resume_path=resume_path, log=recorder.log, progress=spec.progress,
        )  # fmt: skip
        return {k: v.cpu() for k, v in victim.state_dict().items()}

    # under torchrun all ranks train together (collective); rank 0 alone locks and writes
    weights, cached = cache.load_or_build(artifact, train, collective=True)
    info = {"source": "cache" if cached else "trained", "path": str(artifact.path), "key": artifact.key}
    if cached:
        load_victim_weights(victim, weights, str(artifact.path))
        logger.info(f"loaded cached victim {artifact.path} (training skipped)")
        return compile_victim(victim.to(spec.device).eval()), info
    return compile_victim(victim.eval()), {**info, "train_time_s": round(time.perf_counter() - t0, 2)}


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
    scratch_files: list[Path] = dataclasses.field(default_factory=list)

    def build(self, spec: RunSpec | None = None) -> Components:
        """Build dataset, task, defense and attack of ``spec`` (default: the run's), seeded."""
        spec = spec or self.spec
        seed_everything(spec.seed)
        data = DATASETS.build(spec.dataset, spec.seed)
        data.device = spec.device  # the loading defaults (pinned memory, workers) follow the device
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

    @property
    def cache(self) -> ArtifactCache:
        """The run's artifact cache (``cache_dir``)."""
        return ArtifactCache(self.spec.cache_dir)

    def spec_with(self, **nodes: Any) -> RunSpec:
        """The spec of this run with some config nodes changed, e.g. ``spec_with(defense={"name": "none"})``
        or ``spec_with(victim="pidnet_l", seed=1)``: the one way a pipeline derives a sub-run.

        A node that carries a ``name`` *replaces* that key's node (a merge would carry fields of the run's
        component into an unrelated one); a string for a config group (``victim="pidnet_l"``) is that group
        option, composed by Hydra as on the command line; anything else is merged into the run's value. The
        sub-run always runs on this rank's device."""
        cfg = OmegaConf.create(
            {k: v for k, v in OmegaConf.to_container(self.cfg, resolve=False).items() if k != "hydra"}
        )
        for key, value in nodes.items():
            if OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True)
            if isinstance(value, str) and key in CONFIG_GROUPS:
                cfg[key] = self.group_option(key, value)
            elif isinstance(value, dict) and "name" in value:
                cfg[key] = value
            else:
                cfg = OmegaConf.merge(cfg, {key: value})
        spec = build_spec(cfg)
        spec.device = self.spec.device  # under torchrun: this rank's GPU
        return spec

    @staticmethod
    def group_option(group: str, option: str) -> dict[str, Any]:
        """The node of config-group option ``group=option`` (e.g. ``victim=pidnet_l``) as Hydra composes it."""
        return group_option(group, option)

    def scratch(self, name: str) -> Path:
        """A file of this run's folder that only lives until the run finishes (resume states of its stages);
        the runner removes every scratch file once ``results.json`` is written."""
        path = self.run_dir / name
        if path not in self.scratch_files:
            self.scratch_files.append(path)
        return path

    def remove_scratch(self) -> None:
        for path in self.scratch_files:
            path.unlink(missing_ok=True)


#: the config groups whose options ``spec_with`` accepts by name
CONFIG_GROUPS = ("dataset", "victim", "attack", "defense", "logger", "pipeline")


def group_option(group: str, option: str) -> dict[str, Any]:
    """The node of config-group option ``group=option`` (e.g. ``victim=pidnet_l``) as Hydra composes it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    from advlab.config_files import config_dir, register_defaults

    register_defaults()

    def node() -> dict[str, Any]:
        try:
            cfg = compose(config_name="config", overrides=[f"{group}={option}"])
        except MissingConfigException:
            available = sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))
            raise ConfigError(
                f"{group}: no config '{option}' in conf/{group}/. Available: {', '.join(available)}"
            ) from None
        return OmegaConf.to_container(cfg[group], resolve=True)

    if GlobalHydra.instance().is_initialized():  # inside the app: its own search path
        return node()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return node()
