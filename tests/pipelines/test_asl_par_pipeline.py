"""The ASL-PAR pipeline end to end on a small synthpar (victim -> noise -> attacked -> defense -> defended),
noise transfer to another image size, the experiment configs, and the early errors of the PAR components."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import make_cfg
from omegaconf import OmegaConf

from advlab.context import build_spec
from advlab.errors import CheckpointError, ConfigError
from advlab.runner import run


def table_script():
    """The ASL-PAR layout of advlab-report (``advlab-report DIR --layout asl_par``)."""
    from advlab.reporting import asl_par_table

    return asl_par_table


SMALL = [
    "experiment=asl_par_synthpar", "device=cpu", "dataset.num_train=96", "dataset.num_test=40",
    "train.epochs=1", "train.warmup_epochs=0", "attack.epochs=1", "attack.max_batches_per_epoch=2",
    "defense.epochs=1", "eval.batch_size=20",
]  # fmt: skip


@pytest.mark.slow
def test_asl_par_pipeline_end_to_end(tmp_path):
    results = run(make_cfg(*SMALL), tmp_path / "run")
    m = results["metrics"]
    for phase in ("clean", "adv", "defended", "defended_clean"):
        for key in ("mA", "instance_acc", "precision", "recall", "f1"):
            assert 0.0 <= m[f"{phase}/{key}"] <= 1.0, f"{phase}/{key}"
    assert m["attack/linf_max"] <= 10 / 255 + 1e-6
    assert m["eval/num_examples"] == 40
    run_dir = tmp_path / "run"
    state = torch.load(run_dir / "perturbation.pt", weights_only=True)
    assert state["noise"].shape == (3, 64, 64) and state["noise"].abs().max() <= 10 / 255 + 1e-6
    assert {k for k in state if k.startswith("shift_map_")} == {f"shift_map_{g}" for g in range(8)}
    for name in ("perturbation.png", "label_shift.txt", "attributes.md", "defense.pt"):
        assert (run_dir / name).is_file(), name
    assert "## defended attacked" in (run_dir / "attributes.md").read_text()
    # one mA for every report: attributes.md, results.json and the table script agree to the last digit
    saved = json.loads((run_dir / "results.json").read_text())["metrics"]
    sections = re.findall(
        r"^## (.+) \(`(\w+)/\*`\)\n\nmA (\S+)$", (run_dir / "attributes.md").read_text(), re.M
    )
    assert [prefix for _, prefix, _ in sections] == ["clean", "adv", "defended_clean", "defended"]
    for _, prefix, value in sections:
        assert float(value) == saved[f"{prefix}/mA"] == m[f"{prefix}/mA"], prefix
    _, cells = table_script().asl_par_rows(run_dir)
    table = {row[1]: row[2] for row in cells}  # phase -> mA cell (a single run: no parameter columns)
    labels = {
        "clean": "clean",
        "adv": "attacked",
        "defended": "defended",
        "defended_clean": "defended, clean",
    }
    for _, prefix, value in sections:
        assert table[labels[prefix]] == f"{100 * float(value):.2f}"
    # the per-attribute rows are the mA's terms: their mean is the phase's mA (to the table's 4 decimals)
    for block in (run_dir / "attributes.md").read_text().split("## ")[1:]:
        per_attr = [
            float(r.split("|")[2]) for r in block.splitlines() if r.startswith("| ") and "attribute" not in r
        ]
        value = float(re.search(r"^mA (\S+)$", block, re.M).group(1))
        assert abs(sum(per_attr) / len(per_attr) - value) <= 5e-5
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("universal/loss" in r for r in rows) and any("defended/mA" in r for r in rows)
    defense = torch.load(run_dir / "defense.pt", weights_only=True)
    assert defense["text_prompts"].shape[0] == 3 and defense["text_prompts"].abs().sum() > 0  # official: 3

    # the saved noise applied to synthpar drawn at another size (resized), no optimisation, no defense
    no_defense = [o for o in SMALL if not o.startswith("defense.")]
    again = run(make_cfg(*no_defense, "dataset.size=48", "defense=none",
                         f"attack.perturbation_path={run_dir / 'perturbation.pt'}"), tmp_path / "transfer")  # fmt: skip
    assert not (tmp_path / "transfer" / "perturbation.pt").exists()
    assert "adv/mA" in again["metrics"] and "defended/mA" not in again["metrics"]


@pytest.mark.parametrize(
    "experiment",
    ["asl_par_peta", "asl_par_pa100k", "asl_par_rapv2", "asl_par_msp60k", "asl_par_peta_patch",
     "asl_par_peta_unbounded", "asl_par_peta_ablation", "asl_par_defense_peta"],
)  # fmt: skip
def test_paper_experiments_compose_with_the_paper_settings(experiment, tmp_path):
    clip = tmp_path / "ViT-L-14.pt"
    clip.write_bytes(b"")
    spec = build_spec(
        make_cfg(f"experiment={experiment}", f"victim.pretrained={clip}", f"dataset.root={tmp_path}")
    )
    assert (
        spec.pipeline.name == "asl_par" and spec.task.name == "par" and spec.victim.model_name == "ViT-L-14"
    )
    assert spec.victim.frozen_clip and spec.task.threshold == 0.45
    assert spec.attack.lr == 0.003 and spec.attack.epochs == 40 and spec.attack.batch_size == 48
    assert spec.attack.semantic_weight == 0.5 and spec.attack.momentum == 0.9
    assert spec.train.optimizer == "sgd" and spec.train.lr == 0.008 and spec.train.batch_size == 16
    if experiment == "asl_par_peta_patch":
        assert spec.attack.mode == "patch" and spec.attack.patch_size == 30
    elif experiment == "asl_par_peta_unbounded":
        assert spec.attack.eps is None
    else:
        assert spec.attack.eps == pytest.approx(10 / 255, abs=1e-6)
    assert spec.defense.name == ("asl_par" if experiment == "asl_par_defense_peta" else "none")
    if experiment == "asl_par_defense_peta":  # the official train_defense.sh / config.py schedule
        d = spec.defense
        assert (d.epochs, d.batch_size, d.text_prompts, d.optimizer) == (1, 32, 3, "sgd")
        assert (d.filter_lr, d.prompt_lr, d.momentum, d.weight_decay) == (8e-4, 4e-4, 0.9, 1e-4)


def test_official_script_schedules_are_offered_beside_the_paper_ones(tmp_path):
    clip = tmp_path / "ViT-L-14.pt"
    clip.write_bytes(b"")
    base = ["experiment=asl_par_defense_peta", f"victim.pretrained={clip}", f"dataset.root={tmp_path}"]
    script = build_spec(make_cfg(*base, "attack=asl_par_script"))
    assert script.attack.epochs == 100 and script.attack.lr == 0.003 and script.attack.batch_size == 48
    longer = build_spec(make_cfg(*base, "defense=asl_par_long")).defense
    assert (longer.epochs, longer.batch_size, longer.text_prompts, longer.filter_lr) == (10, 16, 4, 8e-4)


def test_missing_weights_and_transfer_noise_fail_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="victim.pretrained: PromptPAR on ViT-L-14 needs CLIP weights"):
        build_spec(make_cfg("experiment=asl_par_peta"))
    with pytest.raises(
        CheckpointError, match="victim.pretrained: CLIP checkpoint .*missing.pt' does not exist"
    ):
        build_spec(make_cfg("experiment=asl_par_peta", f"victim.pretrained={tmp_path / 'missing.pt'}"))
    clip = tmp_path / "clip.pt"
    clip.write_bytes(b"")
    cfg = make_cfg("experiment=asl_par_transfer", f"victim.pretrained={clip}", f"dataset.root={tmp_path}")
    with pytest.raises(ConfigError, match="attack.perturbation_path"):
        run(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="attack.objective: must be both, label or semantic"):
        build_spec(make_cfg("experiment=asl_par_synthpar", "attack.objective=nope"))
    with pytest.raises(ConfigError, match="task.threshold: must be in"):
        build_spec(make_cfg("experiment=asl_par_synthpar", "task.threshold=1.5"))


@pytest.mark.slow
def test_random_label_ablation_preset_runs_on_synthpar(tmp_path):
    no_defense = [o for o in SMALL if not o.startswith(("defense.", "experiment="))]
    spec = build_spec(make_cfg("experiment=asl_par_synthpar_label_ablation", *no_defense))
    assert spec.defense.name == "none" and spec.attack.label_shift == "per_image"
    results = run(make_cfg("experiment=asl_par_synthpar_label_ablation", *no_defense, "attack.label_shift=random"),
                  tmp_path / "random")  # fmt: skip
    m = results["metrics"]
    assert 0.0 <= m["adv/mA"] <= 1.0 and m["attack/linf_max"] <= 10 / 255 + 1e-6 and "defended/mA" not in m
    assert "random-label baseline" in (tmp_path / "random" / "label_shift.txt").read_text()
    for name in ("asl_par_synthpar_label_ablation", "asl_par_peta_label_ablation"):
        sweep = OmegaConf.load(Path(__file__).resolve().parents[2] / "conf" / "experiment" / f"{name}.yaml")
        assert sweep.hydra.sweeper.params["attack.label_shift"] == "per_image,random"
