"""Where advlab's Hydra configs (``conf/``) are: light, so that anything may ask."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> str:
    """The packaged configs (wheel install) or the repository's ``conf/`` (editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"advlab configs not found next to {here}; reinstall advlab")


#: config group -> the module holding its registry (torch-free)
GROUP_REGISTRIES = {
    "attack": ("advlab.attacks.configs", "ATTACKS"),
    "dataset": ("advlab.data.configs", "DATASETS"),
    "defense": ("advlab.defenses.configs", "DEFENSES"),
    "logger": ("advlab.loggers.configs", "TRACKERS"),
    "pipeline": ("advlab.pipelines.configs", "PIPELINES"),
    "task": ("advlab.tasks.configs", "TASKS"),
    "victim": ("advlab.victims.configs", "VICTIMS"),
}


def dataclass_defaults(config_cls: type, name: str | None = None) -> dict:
    """The default values of a config dataclass as a plain dict (nested configs included)."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(OmegaConf.structured(config_cls), resolve=False)
    if name is not None:
        node["name"] = name
    return node


def register_defaults() -> None:
    """Give Hydra the dataclass defaults, the single source of every default value.

    Each registered component ``<name>`` of group ``<group>`` becomes the config ``<group>/_defaults/<name>``
    (all its fields at their defaults), which every YAML option of that component lists first in its defaults
    (``- _defaults/<name>@_here_``), so a YAML carries only the component's name and a preset's deviations and
    every field can still be overridden on the command line. ``_defaults/train`` and ``_defaults/eval`` do the
    same for the loops' settings in ``config.yaml``."""
    import importlib

    from hydra.core.config_store import ConfigStore

    from advlab.loops.configs import EvalConfig, TrainConfig

    store = ConfigStore.instance()
    for group, (module, attr) in GROUP_REGISTRIES.items():
        registry = getattr(importlib.import_module(module), attr)
        for name in registry.names():
            node = dataclass_defaults(registry.config(name), name)
            store.store(group=f"{group}/_defaults", name=name, node=node, provider="advlab")
    store.store(group="_defaults", name="train", node=dataclass_defaults(TrainConfig), provider="advlab")
    store.store(group="_defaults", name="eval", node=dataclass_defaults(EvalConfig), provider="advlab")
    _file_optuna_sweeper(store)


def _file_optuna_sweeper(store) -> None:
    """Make ``conf/hydra/sweeper/optuna.yaml`` (advlab's settings and default search space) what
    ``hydra/sweeper=optuna`` selects. hydra-optuna-sweeper stores a node of that name with a defaults list, and
    Hydra refuses a primary-config file beside a same-name node that has one ("automatic schema matching"), so
    the plugin's node is dropped after Hydra's plugin discovery (once per process: ``Plugins.instance()``, which
    executes every plugin module, storing its nodes) has stored it. The file sets every field of the plugin's
    node; its samplers (``hydra/sweeper/sampler/*``) stay."""
    from hydra.core.plugins import Plugins

    Plugins.instance()  # the scan Hydra does at start-up, done now so that nothing stores the node again
    store.repo.get("hydra", {}).get("sweeper", {}).pop("optuna.yaml", None)


def compose_config(*overrides: str):
    """The app's config composed with ``overrides`` exactly as the command line would (for tests, scripts and
    notebooks; inside a running app use Hydra's own ``compose``)."""
    from hydra import compose, initialize_config_dir

    register_defaults()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides))
