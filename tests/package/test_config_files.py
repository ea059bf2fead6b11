"""The YAML configs against the dataclasses, the single source of defaults: no YAML repeats a default, every
component option starts from its dataclass defaults, every experiment composes and validates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import make_cfg

from advlab.config_files import GROUP_REGISTRIES, config_dir, dataclass_defaults
from advlab.context import build_spec

CONF = Path(config_dir())
GROUPS = [g for g in GROUP_REGISTRIES if (CONF / g).is_dir()]


def registry(group: str):
    import importlib

    module, attr = GROUP_REGISTRIES[group]
    return getattr(importlib.import_module(module), attr)


def options(group: str) -> list[Path]:
    return sorted((CONF / group).glob("*.yaml"))


def repeats(value, default) -> bool:
    """``value`` restates ``default`` (exactly, or a rounded copy of a float)."""
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool) and value == default
    if isinstance(value, float | int) and isinstance(default, float | int):
        return math.isclose(value, default, rel_tol=1e-4, abs_tol=1e-12)
    return value == default


def test_repeats_catches_rounded_copies():
    assert repeats(0.0313725, 8 / 255) and repeats(True, True) and repeats([1, 2], [1, 2])
    assert not repeats(0.5, 8 / 255) and not repeats(1, True)


@pytest.mark.parametrize(
    "path", [p for g in GROUPS for p in options(g)], ids=lambda p: f"{p.parent.name}/{p.stem}"
)
def test_yaml_options_carry_only_a_name_and_deviations(path):
    data = yaml.safe_load(path.read_text()) or {}
    group = path.parent.name
    defaults = data.get("defaults", [])
    if "name" not in data:  # a preset of another option (e.g. pgd_linf_train extends pgd_linf)
        assert any(isinstance(d, str) and not d.startswith("_") for d in defaults), (
            f"{path}: no name, no base"
        )
        name = None
    else:
        name = data["name"]
        assert f"_defaults/{name}@_here_" in defaults, f"{path}: must start from `- _defaults/{name}@_here_`"
    base = yaml.safe_load(path.read_text())
    target = name or _base_name(path)
    schema = dataclass_defaults(registry(group).config(target), target)
    for key, value in base.items():
        if key in ("defaults", "name"):
            continue
        assert key in schema, f"{path}: {key} is not a field of {group} '{target}'"
        assert not repeats(value, schema[key]), (
            f"{path}: {key}: {value!r} repeats the dataclass default {schema[key]!r}; remove it from the YAML"
        )


def _base_name(path: Path) -> str:
    for entry in yaml.safe_load(path.read_text()).get("defaults", []):
        if isinstance(entry, str) and not entry.startswith("_"):
            base = yaml.safe_load((path.parent / f"{entry}.yaml").read_text())
            return base.get("name") or _base_name(path.parent / f"{entry}.yaml")
    raise AssertionError(f"{path}: no base option")


def test_config_yaml_takes_the_loop_settings_from_the_dataclasses():
    root = yaml.safe_load((CONF / "config.yaml").read_text())
    assert "train" not in root and "eval" not in root
    assert "_defaults/train@train" in root["defaults"] and "_defaults/eval@eval" in root["defaults"]


def test_a_field_absent_from_the_yaml_is_its_dataclass_default_and_overridable():
    from advlab.attacks.configs import PGDConfig

    cfg = make_cfg("attack=pgd_l2", "attack.steps=3")
    assert cfg.attack.restarts == PGDConfig.restarts and cfg.attack.eps == 0.5 and cfg.attack.steps == 3
    assert cfg.train.epochs == 8 and make_cfg("train.epochs=2").train.epochs == 2


PATH_FIELDS = (
    "root",
    "corrupted_root",
    "checkpoint",
    "pretrained",
    "weights",
    "perturbation_path",
    "patch_path",
)


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_composes_and_validates(experiment, tmp_path):
    """With every file or folder it needs (dataset roots, checkpoints, weights) pointed at a dummy (what the
    paper's data would be), every experiment passes build_spec: all its other values are valid."""
    from advlab.errors import AdvlabError

    dummies: dict[str, str] = {}
    for _ in range(8):
        try:
            spec = build_spec(make_cfg(f"experiment={experiment}", "device=cpu", *dummies.values()))
            break
        except AdvlabError as exc:
            keys = [m.split(":", 1)[0] for m in exc.messages]
            missing = [k for k in keys if k.rsplit(".", 1)[-1] in PATH_FIELDS and k not in dummies]
            if not missing:
                raise
            for key in missing:
                dummy = tmp_path / key.replace(".", "_")
                if key.endswith("root"):
                    dummy.mkdir()
                else:
                    dummy.write_bytes(b"")
                dummies[key] = f"{key}='{dummy}'"
    assert spec.dataset.name and spec.attack.name and spec.victim.name
