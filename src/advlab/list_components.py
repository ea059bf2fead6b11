"""``advlab-list``: every registered component with its one-line description, and the config-group options
(``conf/<group>/*.yaml``) with the component each selects.

    advlab-list                # every registry, then the experiments
    advlab-list attacks        # one registry: datasets, tasks, victims, attacks, defenses, pipelines, loggers
    advlab-list experiments    # conf/experiment/*.yaml with what each composes

Attacks and defenses also show their ``paper`` and ``url`` class attributes. ``scripts/config_groups.py``
prints README.md's config-group table from the same functions.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import sys
import warnings
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode

from advlab.config_files import GROUP_REGISTRIES, config_dir, register_defaults
from advlab.registry import Registry


@dataclasses.dataclass(frozen=True)
class Group:
    """One registry (``advlab.config_files.GROUP_REGISTRIES``) and the config group whose options select its
    components."""

    label: str  # plural, as on the command line: "attacks"
    key: str  # config key and folder under conf/: "attack"

    def get(self) -> Registry:
        module, attr = GROUP_REGISTRIES[self.key]
        return getattr(importlib.import_module(module), attr)


GROUPS = tuple(
    Group(label, key)
    for label, key in (
        ("datasets", "dataset"),
        ("tasks", "task"),
        ("victims", "victim"),
        ("attacks", "attack"),
        ("defenses", "defense"),
        ("pipelines", "pipeline"),
        ("loggers", "logger"),
    )
)
EXPERIMENT = "experiment"
# What an experiment's composition is summarised by (the groups it chooses an option of), in this order.
EXPERIMENT_CHOICES = ("pipeline", "dataset", "victim", "attack", "defense")


def conf_dir() -> Path:
    return Path(config_dir())


def option_files(key: str) -> list[Path]:
    """``conf/<key>/*.yaml``, sorted by name (empty for a registry without a config group, e.g. tasks)."""
    return sorted((conf_dir() / key).glob("*.yaml"))


OPTIONS_PACKAGE = "_options"  # where every option is composed side by side, apart from the run's own keys


@functools.cache
def all_options() -> dict[str, dict[str, str]]:
    """Group -> option -> the registered name it selects, for every ``conf/<group>/<option>.yaml``: the ``name``
    Hydra composes from the file (its defaults list included: ``pgd_linf_train`` extends ``pgd_linf``). One
    composition adds every option under its own package ``_options.<group>.<option>``, so each file is read
    once."""
    keys = [g.key for g in GROUPS if option_files(g.key)]
    overrides = [f"+{k}@{OPTIONS_PACKAGE}.{k}.{p.stem}={p.stem}" for k in keys for p in option_files(k)]
    register_defaults()  # the dataclass defaults every option lists first
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", ".*Defaults list is missing `_self_`", UserWarning
        )  # not ours to report
        composed = compose(overrides=overrides)[OPTIONS_PACKAGE]
    return {k: {option: str(node.get("name", "???")) for option, node in composed[k].items()} for k in keys}


def options(key: str) -> dict[str, str]:
    """Option -> the registered name it selects, for group ``key`` (empty for a group without a folder)."""
    return all_options().get(key, {})


@functools.cache
def experiments() -> dict[str, dict[str, str]]:
    """Experiment -> the option it selects for each group of :data:`EXPERIMENT_CHOICES`: the choices of
    Hydra's defaults list for ``advlab experiment=<name>`` (what composition uses, without merging values)."""
    composed = {}
    register_defaults()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*Defaults list is missing `_self_`", UserWarning)
        loader = GlobalHydra.instance().config_loader()
        for path in option_files(EXPERIMENT):
            defaults = loader.compute_defaults_list("config", [f"{EXPERIMENT}={path.stem}"], RunMode.RUN)
            choices = defaults.overrides.known_choices
            composed[path.stem] = {g: str(choices[g]) for g in EXPERIMENT_CHOICES}
    return composed


def header_comment(path: Path) -> str:
    """The first comment line of a config file, without the ``# @package`` directive."""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            return line.lstrip("#").strip()
    return ""


def options_by_component(group: Group) -> dict[str, list[str]]:
    """Registered name -> the options of the group's config folder that select it (every name, maybe none)."""
    by_name: dict[str, list[str]] = {name: [] for name in group.get().names()}
    for option, name in options(group.key).items():
        by_name.setdefault(name, []).append(option)
    return by_name


def format_group(group: Group) -> str:
    registry = group.get()
    if option_files(group.key):
        how = f"{group.key}=<option> (conf/{group.key}/<option>.yaml), or {group.key}.name=<name>"
    else:
        how = f"{group.key}.name=<name>"
    lines = [f"{group.label}  [{how}]"]
    width = max(map(len, registry.names()), default=0) + 2
    for name, opts in options_by_component(group).items():
        if name not in registry.names():
            lines.append(f"  {name:<{width}}NOT REGISTERED (selected by {', '.join(opts)})")
            continue
        lines.append(f"  {name:<{width}}{registry.describe(name)}")
        pad = " " * (2 + width)
        if opts:
            lines.append(f"{pad}options: {', '.join(opts)}")
        cls = registry.get(name)
        for attr in ("paper", "url"):
            value = getattr(cls, attr, None)
            if value:
                lines.append(f"{pad}{attr}: {value}")
    return "\n".join(lines)


def format_experiments() -> str:
    lines = [f"experiments  [{EXPERIMENT}=<option> (conf/{EXPERIMENT}/<option>.yaml)]"]
    composed = experiments()
    width = max(map(len, composed), default=0) + 2
    for name, choices in composed.items():
        summary = " ".join(f"{g}={v}" for g, v in choices.items())
        lines.append(f"  {name:<{width}}{summary}")
        comment = header_comment(conf_dir() / EXPERIMENT / f"{name}.yaml")
        if comment:
            lines.append(f"  {'':<{width}}{comment}")
    return "\n".join(lines)


def find_group(word: str) -> Group | None:
    for group in GROUPS:
        if word in (group.label, group.key):
            return group
    return None


def main(argv: list[str] | None = None) -> int:
    labels = [g.label for g in GROUPS] + ["experiments"]
    parser = argparse.ArgumentParser(
        prog="advlab-list",
        description="List every registered component with its one-line description, and the config options "
        "that select it.",
    )
    parser.add_argument(
        "what", nargs="*", metavar="GROUP", help=f"any of: {', '.join(labels)} (default: all)"
    )
    args = parser.parse_args(argv)
    sections = []
    for word in args.what or labels:
        if word in ("experiments", EXPERIMENT):
            sections.append(format_experiments())
        elif (group := find_group(word)) is not None:
            sections.append(format_group(group))
        else:
            parser.error(f"unknown group '{word}'; choose from: {', '.join(labels)}")
    try:
        print("\n\n".join(sections))
    except BrokenPipeError:  # `advlab-list | head`: the reader closed the pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
