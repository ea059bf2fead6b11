"""SemanticAdv against landmark detection: config checks and a tiny end-to-end run of the pipeline (both goals,
metrics equal to their definitions on the run's own tables, pictures)."""

from __future__ import annotations

import json

import pytest
from conftest import make_cfg

from advlab.errors import ConfigError

TINY = [
    "device=cpu",
    "dataset.size=16",
    "dataset.train_identities=10",
    "dataset.dev_identities=2",
    "dataset.test_identities=3",
    "dataset.images_per_identity=4",
    "train.epochs=1",
    "train.batch_size=40",
    "victim.features=8",
    "victim.hg_depth=1",
    "pipeline.num_images=3",
    "pipeline.batch_size=3",
    "pipeline.eval_images=6",
    "pipeline.grid_examples=2",
    "pipeline.generator.conv_dim=4",
    "pipeline.generator.repeat_num=1",
    "pipeline.generator.d_conv_dim=4",
    "pipeline.generator.d_repeat_num=2",
    "pipeline.gan_train.iters=4",
    "pipeline.gan_train.decay_iters=2",
    "pipeline.gan_train.checkpoint_every=2",
    "pipeline.gan_train.batch_size=8",
    "attack.recon_steps=2",
    "attack.steps=3",
    "attack.attributes=[Eyeglasses,Smiling]",
]


@pytest.mark.slow
def test_semantic_adv_landmarks_pipeline_end_to_end(tmp_path):
    from advlab.runner import run

    res = run(make_cfg("experiment=semanticadv_landmarks_synth", *TINY), tmp_path / "run")
    m = res["metrics"]
    for key in ("clean/nme", "attack/nme", "attack/nme_Eyeglasses", "attack/nme_edit", "clean/r_out",
                "attack/r_out", "attack/r_out_Smiling", "attack/r_in", "clean/nme_gt", "attack/asr"):  # fmt: skip
        assert key in m, key
    table = res["semantic_adv_landmarks"]["table_d"]
    assert set(table) == {"rotating_eyes", "out_of_region"}
    assert m["clean/nme"] == pytest.approx(table["rotating_eyes"]["pristine"])
    # the mean over attributes, the best attribute per image bounds it, r_in = 1 - r_out
    per_attr = [m["attack/nme_Eyeglasses"], m["attack/nme_Smiling"]]
    assert m["attack/nme"] == pytest.approx(sum(per_attr) / 2)
    assert m["attack/nme_best"] <= min(per_attr) + 1e-9 and m["attack/r_out_best"] >= m["attack/r_out"] - 1e-9
    assert m["attack/r_in"] == pytest.approx(1 - m["attack/r_out"]) and 0 <= m["attack/r_out"] <= 1
    for name in ("semanticadv_landmarks_rotating_eyes.png", "semanticadv_landmarks_out_of_region.png"):
        assert (tmp_path / "run" / name).is_file()
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["semantic_adv_landmarks"]["reference"] == "annotations"
    assert res["generator"]["source"] == "trained" and res["victim"]["source"] == "trained"


def _check(*overrides: str) -> None:
    from pathlib import Path

    from advlab.context import RunContext, build_spec
    from advlab.loggers.base import Tracker
    from advlab.pipelines.base import PIPELINES
    from advlab.recorder import RunRecorder

    cfg = make_cfg("experiment=semanticadv_landmarks_synth", "device=cpu", *overrides)
    spec = build_spec(cfg)
    ctx = RunContext(cfg, spec, Path("unused"), {}, Tracker(None), RunRecorder(Path("unused"), Tracker(None)))
    PIPELINES.build(spec.pipeline).check(ctx)


def test_pipeline_refuses_other_tasks_and_datasets():
    with pytest.raises(ConfigError, match="task.name: task 'verification' needs face identities"):
        _check("task.name=verification", "~task.train_loss", "~task.houdini_score")
    with pytest.raises(ConfigError, match="face dataset with attributes and landmarks"):
        _check("dataset=synthfaces", "task.name=verification", "~task.train_loss", "~task.houdini_score")
