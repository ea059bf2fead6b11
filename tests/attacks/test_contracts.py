"""The contract every attack option in conf/attack/ keeps, on a tiny victim of the task it attacks: it builds
from its YAML as the command line composes it, and returns images of the input's shape in [0, 1], within its
norm bound when it has one. Iteration counts are capped (the same code paths, fewer rounds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import make_cfg

from advlab.attacks import ATTACKS
from advlab.config_files import config_dir
from advlab.data import DATASETS
from advlab.tasks import TASKS
from advlab.victims import VICTIMS

OPTIONS = sorted(p.stem for p in (Path(config_dir()) / "attack").glob("*.yaml"))
ITERATION_FIELDS = (
    "steps",
    "max_iters",
    "binary_search_steps",
    "iters",
    "restarts",
    "binary_steps",
    "queries",
)
TASK_OF = {"ml_cw": "multilabel", "mla_lp": "multilabel", "sema_ml": "multilabel", "ecoc_attack": "ecoc"}
#: options whose victim is a whole model family of its own; each is checked end to end in its pipeline's tests
NEEDS_OWN_VICTIM = {
    "asl_par": "PromptPAR's text features (tests/pipelines/test_asl_par_pipeline.py)",
    "asl_par_script": "PromptPAR's text features (tests/pipelines/test_asl_par_pipeline.py)",
    "eot_patch": "a segmentation victim and EOT training (tests/pipelines/test_seg_pipeline.py)",
    "semantic_adv": "a StarGAN generator and a face verifier (tests/pipelines/test_semanticadv.py)",
    "semantic_adv_synth": "a StarGAN generator and a face verifier (tests/pipelines/test_semanticadv.py)",
    "semantic_adv_street": "a label-map generator and a segmentation victim (tests/pipelines/test_semanticadv_street.py)",
    "semantic_adv_landmarks": "a StarGAN generator and a landmark victim (tests/pipelines/test_semanticadv_landmarks.py)",
    "sema_ml_nuswide": "NUS-WIDE's 81 concept names for its label graph (tests/attacks/test_jma_sema.py)",
}


def setup(task_name: str):
    dataset = "digits_multilabel" if task_name == "multilabel" else "digits"
    data = DATASETS.build(
        DATASETS.parse(
            {"name": dataset, "channels": 3, "size": 16} if dataset == "digits" else {"name": dataset}
        ),
        0,
    )
    task = TASKS.create(task_name, data.info)
    task.attach_data(data)
    torch.manual_seed(0)
    model = VICTIMS.create("smallcnn", width=4, hidden=16).build(data.info, task.num_outputs).eval()
    x, y = next(iter(data.loader("test", 4, shuffle=False)))
    return task, data, model, x, y


@pytest.mark.parametrize("option", OPTIONS)
def test_attack_option_builds_and_keeps_its_bound(option):
    cfg = make_cfg(f"attack={option}")
    node = {
        k: (min(v, 2) if k in ITERATION_FIELDS and isinstance(v, int) else v) for k, v in cfg.attack.items()
    }
    params = ATTACKS.parse(node)
    if option in NEEDS_OWN_VICTIM:
        assert ATTACKS.get(params.name)  # composes, validates and imports; run elsewhere
        pytest.skip(f"needs {NEEDS_OWN_VICTIM[option]}")
    task, data, model, x, y = setup(TASK_OF.get(params.name, "classification"))
    attack = ATTACKS.build(params, task)
    if params.name == "none":
        return
    if hasattr(attack, "init_perturbation"):  # universal: one perturbation for all images
        attack.init_perturbation(data.info, x.device, torch.Generator().manual_seed(0))
    attack.prepare(model, data)
    target = task.sample_targets(y, torch.Generator().manual_seed(0)) if attack.targeted else None
    x_adv = attack(model, x, y, target)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    eps = getattr(params, "eps", None)
    if attack.norm == "linf" and eps is not None:
        assert (x_adv - x).abs().amax() <= eps + 1e-6
    elif attack.norm == "l2" and eps is not None:
        assert (x_adv - x).flatten(1).norm(dim=1).max() <= eps + 1e-5


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if n != "none"])
def test_every_attack_names_its_paper_and_link(name):
    cls = ATTACKS.get(name)
    assert cls.paper and cls.paper.count(",") >= 1, f"{name}: paper must read 'Authors, Title, Venue Year'"
    assert cls.url and cls.url.startswith("https://"), f"{name}: url"
    assert ATTACKS.describe(name)  # the one line advlab-list shows
