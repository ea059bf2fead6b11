"""Name -> class registries with typed, validated parameters.

Every component (dataset, victim, task, attack, defense, logger) registers a class under a name. The class
declares its parameters as a dataclass ``Config``; :meth:`Registry.build` merges the Hydra node into that
dataclass, so a wrong type or an unknown key fails with the full key name (``attack.eps``) before any work,
and then calls ``Config.validate()`` for value checks.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import importlib
import math
import re
import sys
from collections.abc import Callable, Iterator
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


_collected: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "advlab_config_errors", default=None
)


def check(condition: bool, key: str, message: str) -> None:
    """A ConfigError naming ``key`` when ``condition`` is false (collected, not raised, inside
    :func:`collecting_errors`, so that one pass reports every bad value)."""
    if not condition:
        found = _collected.get()
        if found is None:
            raise ConfigError(f"{key}: {message}")
        found.append(f"{key}: {message}")


@contextlib.contextmanager
def collecting_errors() -> Iterator[list[str]]:
    """Collect the messages of failed :func:`check` calls (and of ConfigErrors raised) in the block; raise one
    ConfigError holding all of them at its end. An unexpected exception after a failed check is taken as its
    consequence (a check that guards the next line) and dropped; without one it propagates."""
    found: list[str] = []
    token = _collected.set(found)
    try:
        yield found
    except ConfigError as exc:
        found.extend(exc.messages)
    except Exception:
        if not found:
            raise
    finally:
        _collected.reset(token)
    if found:
        raise ConfigError(*dict.fromkeys(found))  # each message once, in order


def _omegaconf_message(exc: OmegaConfBaseException, key: str, field: str | None) -> str:
    full_key = getattr(exc, "full_key", None) or field
    where = f"{key}.{full_key}" if full_key else key
    return f"{where}: {exc.msg if hasattr(exc, 'msg') else exc}".split("\n")[0]


def parse_config(config_cls: type, node: Any, key: str) -> Any:
    """Merge a config node into ``config_cls`` and return the validated dataclass instance.

    Every problem is reported, not only the first: each key is merged on its own (a wrong type or an unknown
    key names its full key), then ``validate`` runs with its checks collected; one ConfigError holds them all."""
    if node is None:
        node = {}
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=True)
    errors: list[str] = []
    merged = OmegaConf.structured(config_cls)
    for field, value in dict(node).items():
        try:
            merged = OmegaConf.merge(merged, {field: value})
        except OmegaConfBaseException as exc:
            errors.append(_omegaconf_message(exc, key, str(field)))
    if errors:
        raise ConfigError(*errors)
    try:
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ConfigError(_omegaconf_message(exc, key, None)) from None
    check_finite(obj, key)
    with collecting_errors():
        obj.validate(key)
    return obj


def check_finite(obj: Any, key: str) -> None:
    """Every float field of a config dataclass (nested ones and lists included) is finite: nan and inf are never
    a meaningful step size, bound or weight; a field that means "no limit" is ``null``. All are reported."""
    bad = non_finite_fields(obj, key)
    if bad:
        raise ConfigError(*(f"{k}: must be a finite number (got {v}); use null for no limit" for k, v in bad))


def non_finite_fields(obj: Any, key: str) -> list[tuple[str, float]]:
    """(``key.field``, value) of every nan or +-inf float in ``obj``, through nested dataclasses, lists, dicts."""
    if isinstance(obj, float):
        return [] if math.isfinite(obj) else [(key, obj)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [(f".{f.name}", getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        items = [(f".{k}", v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        items = [(f"[{i}]", v) for i, v in enumerate(obj)]
    else:
        return []
    return [found for suffix, value in items for found in non_finite_fields(value, f"{key}{suffix}")]


class Registry(Generic[T]):
    """Name -> component. A package's ``configs`` module *declares* each name with its config dataclass and the
    module that implements it (:meth:`declare`), without importing that module: parsing and validating a
    config node (:meth:`parse`) needs no torch. The implementation registers itself (:meth:`register`) when its
    module is imported, which :meth:`get` does on first use."""

    def __init__(self, kind: str, key: str):
        self.kind = kind  # human name, e.g. "attack"
        self.key = key  # config key, e.g. "attack"
        self._items: dict[str, type[T]] = {}
        self._configs: dict[str, type] = {}
        self._modules: dict[str, str] = {}

    def declare(self, name: str, module: str, config: type) -> None:
        """``name`` is implemented in ``module`` (imported on first :meth:`get`) with parameters ``config``."""
        if name in self._modules and (self._modules[name], self._configs[name]) != (module, config):
            raise RuntimeError(f"{self.kind} '{name}' declared twice")
        self._modules[name], self._configs[name] = module, config

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise RuntimeError(f"{self.kind} '{name}' registered twice")
            declared = self._configs.get(name)
            if declared is not None and getattr(cls, "Config", None) is not declared:
                raise RuntimeError(
                    f"{self.kind} '{name}': {cls.__name__}.Config is not the declared {declared.__name__}"
                )
            self._items[name] = cls
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def names(self) -> list[str]:
        """Every declared or registered name, sorted."""
        return sorted(set(self._items) | set(self._modules))

    def module(self, name: str) -> str | None:
        """The module that implements ``name`` (None for one registered without a declaration)."""
        return self._modules.get(name) or (self._items[name].__module__ if name in self._items else None)

    def _unknown(self, name: str, key: str | None) -> ConfigError:
        return ConfigError(
            f"{key or self.key}.name: unknown {self.kind} '{name}'. Available: {', '.join(self.names())}"
        )

    def get(self, name: str, key: str | None = None) -> type[T]:
        """The implementing class (importing its module on first use)."""
        if name not in self._items and name in self._modules:
            importlib.import_module(self._modules[name])
        if name not in self._items:
            if name in self._modules:
                raise RuntimeError(f"{self.kind} '{name}': module {self._modules[name]} does not register it")
            raise self._unknown(name, key)
        return self._items[name]

    def config(self, name: str, key: str | None = None) -> type:
        """The parameter dataclass of ``name``, without importing its implementation when it is declared."""
        if name in self._configs:
            return self._configs[name]
        return self.get(name, key).Config  # type: ignore[attr-defined]

    def describe(self, name: str) -> str:
        """One line about ``name``: the first sentence of its class docstring (its module's when it has none)."""
        cls = self.get(name)
        doc = cls.__doc__ or sys.modules[cls.__module__].__doc__ or ""  # the class's, else its module's
        paragraph = " ".join(doc.strip().split("\n\n")[0].split())
        return re.split(r"(?<=[.!?])\s+(?=[A-Z`(])", paragraph)[0].rstrip(":")

    def parse(self, node: DictConfig | dict | None, key: str | None = None) -> Any:
        """Validate a config node against the declared ``Config`` of its name; return the dataclass."""
        key = key or self.key
        if node is None or "name" not in node:
            raise ConfigError(f"{key}: missing 'name' (one of: {', '.join(self.names())})")
        name = str(node["name"])
        if name not in self._configs and name not in self._items:
            raise self._unknown(name, key)
        return parse_config(self.config(name, key), node, key)

    def build(self, params: Any, *args: Any, **kwargs: Any) -> T:
        """Instantiate from parsed params (see :meth:`parse`)."""
        return self.get(params.name)(params, *args, **kwargs)

    def create(self, name: str, *args: Any, **params: Any) -> T:
        """Validate ``params`` against ``name``'s config and build it, e.g. ``ATTACKS.create("pgd", task, eps=0.1)``:
        the same checks as a config node, without writing one."""
        return self.build(self.parse({"name": name, **params}), *args)
