"""``advlab-list`` and the config-group table (docs/config_groups.md, linked from the README) generated from the same registries and ``conf/``."""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import yaml
from conftest import REPO, make_cfg

from advlab import list_components
from advlab.list_components import EXPERIMENT, GROUPS, experiments, main, options

CONF = REPO / "conf"
WITH_FOLDER = [g for g in GROUPS if (CONF / g.key).is_dir()]


def load_script():
    spec = importlib.util.spec_from_file_location("config_groups", REPO / "scripts" / "config_groups.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# presets with a defaults list, checked against what `advlab <group>=<option>` composes: one extends another
# preset of its group, one replaces its base's name, one composes a sub-attack from another group
EXTENDING = {"attack": ("pgd_linf_train", "autoattack_linf"), "defense": ("adv_training",)}


@pytest.mark.parametrize("group", WITH_FOLDER, ids=lambda g: g.key)
def test_every_option_selects_its_registered_component(group):
    files = sorted(p for p in (CONF / group.key).iterdir() if p.suffix == ".yaml")
    selected = options(group.key)
    assert list(selected) == [p.stem for p in files]
    for path in files:
        node = yaml.safe_load(path.read_text())
        if "name" in node:  # a file that names its component selects it (its defaults do not override it)
            assert selected[path.stem] == node["name"], path
        assert selected[path.stem] in group.get().names(), f"{path} selects an unregistered {group.key}"
    for option in EXTENDING.get(group.key, ()):
        assert selected[option] == make_cfg(f"{group.key}={option}")[group.key]["name"], option


def test_composed_presets_select_their_base_name():
    assert options("attack")["pgd_linf_train"] == "pgd"  # defaults: [pgd_linf], no name of its own
    assert options("attack")["autoattack_linf"] == "autoattack"  # defaults: [apgd_t], own name wins
    assert options("attack")["jma_200"] == "jma"


def test_experiments_record_the_options_the_cli_composes():
    composed = experiments()
    assert list(composed) == sorted(p.stem for p in (CONF / EXPERIMENT).glob("*.yaml"))
    for name in ("pat_digits", "asl_par_peta", "eot_patch_transfer_cityscapes"):
        cfg = make_cfg(f"experiment={name}")
        for group in list_components.EXPERIMENT_CHOICES:
            assert options(group)[composed[name][group]] == cfg[group]["name"], (name, group)
    assert composed["asl_par_peta"]["dataset"] == "peta"  # the option, not the class it selects (par_pickle)
    assert composed["pat_digits"]["pipeline"] == "robustness_suite"


def test_lists_every_registered_component_and_experiment(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for group in GROUPS:
        registry = group.get()
        assert f"\n{group.label}  [" in f"\n{out}"
        for name in registry.names():
            assert f"  {name} " in out and registry.describe(name) in out, (group.label, name)
    for name in experiments():
        assert f"  {name} " in out


def test_one_group_shows_options_paper_and_url(capsys, monkeypatch):
    attacks = next(g for g in GROUPS if g.label == "attacks").get()
    pgd = attacks.get("pgd")
    monkeypatch.setattr(
        pgd, "paper", "Madry et al., Towards deep learning models ..., ICLR 2018", raising=False
    )
    monkeypatch.setattr(pgd, "url", "https://arxiv.org/abs/1706.06083", raising=False)
    assert main(["attacks"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("attacks  [attack=<option>")
    assert "datasets" not in out and "cityscapes" not in out  # one group only
    block = out.split("\n  pgd ", 1)[1].split("\n  ppgd ", 1)[0]
    assert "options: pgd_l2, pgd_l2_train, pgd_linf, pgd_linf_train" in block
    assert "paper: Madry et al., Towards deep learning models ..., ICLR 2018" in block
    assert "url: https://arxiv.org/abs/1706.06083" in block
    for name in attacks.names():  # every attack that declares a paper shows it
        paper = getattr(attacks.get(name), "paper", None)
        if paper:
            assert f"paper: {paper}" in out, name


def test_unknown_group_fails_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["attackz"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown group 'attackz'" in err and "attacks" in err and "experiments" in err


def test_console_script_is_installed():
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="advlab-list")
    assert entry.load() is main


def test_config_group_table_is_what_the_script_prints():
    script = load_script()
    table = script.table()
    assert script.page_table((REPO / "docs" / "config_groups.md").read_text()) == table, (
        "docs/config_groups.md's config-group table is stale: run `python scripts/config_groups.py --write`"
    )
    assert "](docs/config_groups.md)" in (REPO / "README.md").read_text(), "README.md does not link the table"
    for group in WITH_FOLDER:  # every option appears in it
        for option in options(group.key):
            assert f"`{option}`" in table, (group.key, option)
    for name in experiments():
        assert f"`{name}`" in table
