"""Every experiment preset carries a valid ``paper:`` block (advlab-report's reference numbers): its numbers are
keyed by advlab metric keys (derived from the code that writes them), and each published number is one the
paper text gives."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from advlab.config_files import compose_config, config_dir
from advlab.data.base import DataInfo
from advlab.errors import AdvlabError, ConfigError
from advlab.metrics.distortion import distortion, image_quality
from advlab.reporting.metric_keys import is_metric_key
from advlab.reporting.paper import parse_paper_block, preset_paper_node
from advlab.tasks.base import TASKS

EXPERIMENTS = Path(config_dir()) / "experiment"
PRESETS = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
SEEDS = Path("/work/shared/seeds")
SEED_OF = {
    "asl_par": "asl_par_pedestrian_attribute_attack.md",
    "eot_patch": "eot_patch_realtime_segmentation.md",
    "semanticadv": "semanticadv_attribute_conditional_attack.md",
    "jma": "jma_jacobian_mahalanobis_attack.md",
    "pat": "pat_perceptual_adversarial_training.md",
}


@functools.cache
def blocks():
    out, problems = {}, []
    for name in PRESETS:
        own = OmegaConf.load(EXPERIMENTS / f"{name}.yaml")
        if "paper" not in own:
            problems.append(f"{name}: no paper: block of its own (add it at the end of the file)")
            continue
        try:
            out[name] = parse_paper_block(preset_paper_node(name), name)
        except AdvlabError as exc:
            problems += list(exc.messages)
    return out, problems


def test_every_experiment_preset_has_a_valid_paper_block():
    found, problems = blocks()
    assert not problems, "\n".join(problems)
    assert set(found) == set(PRESETS)
    compared = [n for n, b in found.items() if b.rows]
    assert len(compared) >= 25, compared  # most presets compare something; the others say why not
    for name, b in found.items():
        assert b.rows or b.note, name


def test_the_file_level_merge_is_what_hydra_composes():
    """The fast merge the tests and the docs use equals the block a run's composed config holds (a child
    preset inherits its parent's block key by key; ``numbers: null`` / a null number drops inherited ones)."""
    for name in (
        "semanticadv_celeba_strawman",
        "asl_par_peta_ablation",
        "eot_patch_cityscapes_loss_ablation",
    ):
        composed = OmegaConf.to_container(compose_config(f"experiment={name}").paper, resolve=True)
        assert composed == preset_paper_node(name), name


def test_published_numbers_are_in_the_paper_text():
    """Each number of a ``source: paper`` block occurs in that paper's text (as printed: a token of the text
    that parses to the same float), so a mistyped number fails."""
    if not SEEDS.is_dir():
        pytest.skip("the paper texts (/work/shared/seeds) are not on this machine")
    found, _ = blocks()
    tokens = {}
    for cite, file in SEED_OF.items():
        text = (SEEDS / file).read_text()
        tokens[cite] = {float(t) for t in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE]-?\d+)?", text)}
    missing = [
        f"{name}: {row.row}: {key} = {value}"
        for name, b in found.items()
        if b.source == "paper"
        for row in b.rows
        for key, value in row.numbers.items()
        if not any(abs(value - t) <= 1e-12 * max(1.0, abs(t)) for t in tokens[b.page])
    ]
    assert not missing, "\n".join(missing)


def test_advlab_reference_numbers_are_the_documented_runs():
    """Each number of a ``source: advlab`` block occurs in its paper page's documented runs (the page's text
    before its Report section, which reprints the blocks)."""
    found, _ = blocks()
    missing = []
    for name, b in found.items():
        if b.source != "advlab" or not b.rows:
            continue
        page = (
            (EXPERIMENTS.parents[1] / "docs" / "papers" / f"{b.page}.md")
            .read_text()
            .split("\n## Report\n")[0]
        )
        tokens = {float(t) for t in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE]-?\d+)?", page)}
        missing += [
            f"{name}: {row.row}: {key} = {value}"
            for row in b.rows
            for key, value in row.numbers.items()
            if not any(abs(value - t) <= 1e-12 * max(1.0, abs(t)) for t in tokens)
        ]
    assert not missing, "\n".join(missing)


def test_metric_keys_come_from_the_code_that_writes_them():
    """Keys the task meters and the distortion metrics really produce are accepted with every phase prefix
    the evaluate loop and the pipelines write; near-misses are refused."""
    cases = {
        "classification": (torch.randn(4, 3), torch.tensor([0, 1, 2, 0])),
        "multilabel": (torch.randn(4, 3), torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]]).float()),
    }
    info = DataInfo(3, (1, 4, 4), ["a", "b", "c"], (0.5,), (0.5,))
    names = set()
    for task_name, (outputs, y) in cases.items():
        task = TASKS.create(task_name, info)
        meter = task.meter()
        task.update_metrics(meter, outputs, y)
        names |= set(meter.compute())
    assert {"acc", "exact_match", "hamming", "mAP"} <= names
    x = torch.rand(2, 1, 8, 8)
    names |= set(distortion(x, x.flip(0))) | set(image_quality(x, x.flip(0)))
    for name in names:
        for key in (f"clean/{name}", f"adv/{name}", f"defended/{name}", f"transfer/a/b/adv/{name}"):
            assert is_metric_key(key), key
    for name in distortion(x, x):
        assert is_metric_key(f"attack/{name}") and is_metric_key(f"attack/{name}_max")
    for bad in ("attack/bsar", "clean/miou", "adv/mA_", "attack/asr/", "clean", "mIoU"):
        assert not is_metric_key(bad), bad


def test_block_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError) as err:
        parse_paper_block(
            {"cite": "jma", "table": "Table VII", "source": "paper", "units": "fractions",
             "numbers": {"attack/bsar": 0.95, "attack/asr": "high"}}
        )  # fmt: skip
    text = str(err.value)
    assert "paper.units" in text and "paper.numbers.attack/bsar: not an advlab metric key" in text
    assert "paper.numbers.attack/asr: must be a finite number" in text
    block = {"cite": "tondi2024jma", "table": "Table II", "source": "paper", "units": "fraction",
             "numbers": {"attack/asr": 1.0}}  # fmt: skip
    assert parse_paper_block(block).page == "jma"  # a citation key of the page
    with pytest.raises(ConfigError, match="paper.cite: must be a paper page .* or a citation key"):
        parse_paper_block({**block, "cite": "tondi2024"})
    with pytest.raises(ConfigError, match="a note saying why"):
        parse_paper_block({"cite": "pat", "table": "Table 2", "source": "paper", "units": "percent"})
