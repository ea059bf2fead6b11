"""Name -> class registries with typed, validated parameters.

Every component (dataset, victim, task, attack, defense, logger) registers a class under a name. The class
declares its parameters as a dataclass ``Config``; :meth:`Registry.build` merges the Hydra node into that
dataclass, so a wrong type or an unknown key fails with the full key name (``attack.eps``) before any work,
and then calls ``Config.validate()`` for value checks.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from advlab.errors import ConfigError

T = TypeVar("T")


@dataclasses.dataclass
class ComponentConfig:
    """Base for component parameter dataclasses. ``name`` selects the registered class."""

    name: str = "???"

    def validate(self, key: str) -> None:
        """Raise :class:`ConfigError` for invalid values; ``key`` is the config path (e.g. ``attack``)."""


def check(condition: bool, key: str, message: str) -> None:
    """Raise a ConfigError naming ``key`` when ``condition`` is false."""
    if not condition:
        raise ConfigError(f"{key}: {message}")


def parse_config(config_cls: type, node: Any, key: str) -> Any:
    """Merge a config node into ``config_cls`` and return the validated dataclass instance."""
    if node is None:
        node = {}
    try:
        if OmegaConf.is_config(node):  # resolve ``${...}`` against the node's own root before it is detached
            node = OmegaConf.to_container(node, resolve=True)
        schema = OmegaConf.structured(config_cls)
        merged = OmegaConf.merge(schema, node)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        full_key = getattr(exc, "full_key", None)
        where = f"{key}.{full_key}" if full_key else key
        raise ConfigError(f"{where}: {exc.msg if hasattr(exc, 'msg') else exc}".split("\n")[0]) from None
    obj.validate(key)
    return obj


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str):
        self.kind = kind  # human name, e.g. "attack"
        self.key = key  # config key, e.g. "attack"
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            self._items[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def describe(self, name: str) -> str:
        """One line about ``name``: the first line of its class docstring, and its paper when it has one."""
        cls = self.get(name)
        doc = cls.__doc__ or sys.modules[cls.__module__].__doc__ or ""  # the class's, else its module's
        doc = doc.strip().split("\n")[0].strip()
        paper = getattr(cls, "paper", None)
        return f"{doc} [{paper}]" if paper and paper not in doc else doc

    def get(self, name: str, key: str | None = None) -> type[T]:
        if name not in self._items:
            raise ConfigError(
                f"{key or self.key}.name: unknown {self.kind} '{name}'. Available: {', '.join(self.names())}"
            )
        return self._items[name]

    def parse(self, node: DictConfig | dict | None, key: str | None = None) -> Any:
        """Validate a config node against the registered class's ``Config``; return the dataclass."""
        key = key or self.key
        if node is None or "name" not in node:
            raise ConfigError(f"{key}: missing 'name' (one of: {', '.join(self.names())})")
        cls = self.get(str(node["name"]), key)
        return parse_config(cls.Config, node, key)  # type: ignore[attr-defined]

    def build(self, params: Any, *args: Any, **kwargs: Any) -> T:
        """Instantiate from parsed params (see :meth:`parse`)."""
        return self.get(params.name)(params, *args, **kwargs)

    def create(self, name: str, *args: Any, **params: Any) -> T:
        """Validate ``params`` against ``name``'s config and build it, e.g. ``ATTACKS.create("pgd", task, eps=0.1)``:
        the same checks as a config node, without writing one."""
        return self.build(self.parse({"name": name, **params}), *args)
