"""Validate a whole composed config without importing torch or any model library.

:func:`check_config` parses every node (seed, device, dataset, task, victim, attack, defense, logger, train,
eval, pipeline, cache_dir; precision, channels_last and compile into ``RunSpec.acceleration``) against its
declared config dataclass and reports *every* problem at once: one :class:`~advlab.errors.ConfigError` with
one message per bad value. The entrypoint calls it before anything
heavy is imported, so a typo costs about a second; :func:`advlab.context.build_spec` builds on its result.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from advlab.attacks.configs import ATTACKS
from advlab.data.configs import DATASETS
from advlab.data.info import label_mismatch
from advlab.defenses.configs import DEFENSES
from advlab.errors import AdvlabError, CheckpointError, ConfigError
from advlab.loggers.configs import TRACKERS
from advlab.loops.configs import EvalConfig, TrainConfig
from advlab.pipelines.configs import PIPELINES
from advlab.progress import DEFAULT_INTERVAL_S, check_interval
from advlab.registry import collecting_errors, parse_config
from advlab.tasks.configs import LABEL_KIND, TASKS
from advlab.victims.configs import VICTIMS, Acceleration

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclasses.dataclass
class RunSpec:
    """Every node of a composed config as its validated dataclass. :func:`check_config` leaves ``device`` the
    config's string; :func:`advlab.context.build_spec` resolves it to this machine's ``torch.device``."""

    seed: int
    device: Any
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
    #: how the victim's forward runs (top-level ``precision``, ``channels_last``, ``compile``)
    acceleration: Acceleration = dataclasses.field(default_factory=Acceleration)


def _node(cfg: DictConfig, key: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{key}: missing from the config")
    return cfg[key]


def check_config(cfg: DictConfig) -> RunSpec:
    """Parse every node of ``cfg``; raise one ConfigError listing every invalid value."""
    failures: list[AdvlabError] = []
    parsed: dict[str, Any] = {}

    def parse(key: str, fn: Any) -> None:
        try:
            parsed[key] = fn()
        except AdvlabError as exc:
            failures.append(exc)

    def seed() -> int:
        value = _node(cfg, "seed")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"seed: must be an integer (got {value!r})")
        return value

    def device() -> str:
        value = str(_node(cfg, "device")).strip().lower()
        if not DEVICE_PATTERN.match(value):
            raise ConfigError(f"device: '{value}' is not a device; use auto, cpu, cuda or cuda:N")
        return value

    def task() -> Any:
        node = cfg.get("task") or {"name": "auto"}
        if node.get("name", "auto") == "auto":
            if "dataset" not in parsed:
                return None  # reported with the dataset
            node = {
                **OmegaConf.to_container(node),
                "name": DATASETS.config(parsed["dataset"].name).default_task,
            }
        params = TASKS.parse(node)
        if "dataset" in parsed:  # labels of the kind the task needs: refused before any data is read
            dataset, default = parsed["dataset"].name, DATASETS.config(parsed["dataset"].name).default_task
            kinds = (LABEL_KIND.get(params.name), LABEL_KIND.get(default))
            if None not in kinds:
                mismatch = label_mismatch(params.name, kinds[0], dataset, kinds[1], default)
                if mismatch:
                    raise ConfigError(mismatch)
        return params

    def dataset() -> Any:
        params = DATASETS.parse(_node(cfg, "dataset"))
        with collecting_errors():
            params.validate_loading("dataset")  # num_workers, pin_memory, ...: the same for every dataset
        return params

    def victim() -> Any:
        params = VICTIMS.parse(_node(cfg, "victim"))
        if params.checkpoint and not Path(os.path.expanduser(params.checkpoint)).is_file():
            raise CheckpointError(f"victim.checkpoint: file '{params.checkpoint}' does not exist")
        return params

    parse("seed", seed)
    parse("device", device)
    parse("dataset", dataset)
    parse("task", task)
    parse("victim", victim)
    parse("attack", lambda: ATTACKS.parse(_node(cfg, "attack")))
    parse("defense", lambda: DEFENSES.parse(_node(cfg, "defense")))
    parse("logger", lambda: TRACKERS.parse(_node(cfg, "logger")))
    parse("train", lambda: parse_config(TrainConfig, cfg.get("train"), "train"))
    parse("eval", lambda: parse_config(EvalConfig, cfg.get("eval"), "eval"))
    parse("cache_dir", lambda: Path(os.path.expanduser(str(_node(cfg, "cache_dir")))))
    parse("pipeline", lambda: PIPELINES.parse(cfg.get("pipeline") or {"name": "standard"}))
    parse(
        "acceleration",
        lambda: Acceleration.parse(
            cfg.get("precision", "fp32"), cfg.get("channels_last", False), cfg.get("compile", False)
        ),
    )
    parse("progress_interval_s", lambda: check_interval(cfg.get("progress_interval_s", DEFAULT_INTERVAL_S)))
    parsed.pop("progress_interval_s", None)  # read by the run itself (advlab.progress.configure)
    if len(failures) == 1:
        raise failures[0]  # keeps its type (e.g. CheckpointError)
    if failures:
        raise ConfigError(*dict.fromkeys(m for exc in failures for m in exc.messages))
    return RunSpec(**parsed, progress=bool(cfg.get("progress", True)))
