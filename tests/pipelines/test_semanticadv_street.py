"""SemanticAdv's street-view pipeline: the inserted object stands where the definition puts it (next to the target
instance, on its ground line, never over it), the label-map generator's box covers it, unknown class names are
refused before any training, and a tiny end-to-end run (victim and generator trained and cached) writes the
instance metrics and the pictures."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cfg

from advlab.errors import ConfigError
from advlab.generators.label_map_manipulation import LabelMapGenerator, box_of
from advlab.pipelines.configs import PIPELINES
from advlab.pipelines.semantic_adv_street import ellipse, insert_objects, resolve_cases


class NoShapes:
    """A dataset without its own silhouettes: inserted objects are ellipses."""


def test_inserted_object_stands_left_of_the_instance_on_its_ground_line():
    y = torch.zeros(1, 12, 16, dtype=torch.long)
    mask = torch.zeros(1, 12, 16, dtype=torch.bool)
    mask[0, 2:12, 9:12] = True  # a person 10 px high, columns 9-11, bottom row 11
    y[mask] = 2
    new, obj = insert_objects(y, mask, 3, "car", 1.0, NoShapes())
    # car: 0.6 * 10 = 6 px high, 1.2 * 10 = 12 px wide; fits left of column 9? 9 - 12 < 0 -> right of it,
    # clipped to the image: left = min(12, 16 - 12) = 4, rows 6-11; never over the person
    rows = torch.nonzero(obj[0].any(1)).flatten()
    cols = torch.nonzero(obj[0].any(0)).flatten()
    assert int(rows.max()) == 11 and int(rows.min()) == 6
    assert int(cols.min()) >= 4 and int(cols.max()) <= 15
    assert not (obj & mask).any() and (new[obj] == 3).all() and (new[mask] == 2).all()
    assert (new[~obj] == y[~obj]).all()
    # exactly the ellipse's pixels outside the person
    shape = ellipse(6, 12)
    expected = torch.zeros(12, 16, dtype=torch.bool)
    expected[6:12, 4:16] = shape
    assert torch.equal(obj[0], expected & ~mask[0])
    # a person far right: the car goes to its left, adjacent
    mask2 = torch.zeros(1, 12, 16, dtype=torch.bool)
    mask2[0, 6:12, 14:16] = True  # 6 px high -> car 4 x 7 (0.6 * 6 = 3.6 -> 4, 1.2 * 6 = 7.2 -> 7)
    _, obj2 = insert_objects(torch.zeros_like(y), mask2, 3, "car", 1.0, NoShapes())
    cols2 = torch.nonzero(obj2[0].any(0)).flatten()
    assert int(cols2.max()) <= 13 and int(cols2.min()) >= 14 - 7


def test_box_of_grows_the_bounding_box_by_the_margin():
    m = torch.zeros(1, 10, 10, dtype=torch.bool)
    m[0, 4:6, 3:7] = True  # 2 rows x 4 cols
    box = box_of(m, 0.5)  # +1 row, +2 cols on each side
    assert torch.equal(torch.nonzero(box[0].any(1)).flatten(), torch.arange(3, 7))
    assert torch.equal(torch.nonzero(box[0].any(0)).flatten(), torch.arange(1, 9))
    assert not box_of(torch.zeros(1, 4, 4, dtype=torch.bool), 0.5).any()


def test_generator_features_have_the_papers_shape_at_256_pixels():
    g = LabelMapGenerator(19, base_channels=4, feature_channels=1024, n_down=4, n_res=0)
    x = torch.rand(1, 3, 256, 256)
    labels = torch.randint(0, 19, (1, 256, 256))
    with torch.no_grad():
        f = g.encode(x, labels, torch.zeros(1, 256, 256, dtype=torch.bool))
        out = g.decode(f)
    assert f.shape == (1, 1024, 16, 16) and out.shape == (1, 3, 256, 256)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_unknown_class_names_are_a_config_error_naming_the_key():
    params = PIPELINES.parse(
        {
            "name": "semantic_adv_street",
            "cases": [{"name": "a", "source_class": "pedestrian", "target_class": "road"}],
        }
    )
    with pytest.raises(ConfigError, match=r"pipeline.cases\[0\].source_class"):
        resolve_cases(params, ["background", "road", "person", "car", "cyclist"])


TINY = [
    "device=cpu",
    "dataset.size=32",
    "dataset.num_train=48",
    "dataset.num_test=20",
    "victim.channels=[4,4,4,4,8,8,8,8]",
    "train.epochs=1",
    "train.batch_size=16",
    "attack.steps=3",
    "pipeline.num_images=3",
    "pipeline.min_instance_pixels=6",
    "pipeline.batch_size=3",
    "pipeline.grid_examples=2",
    "pipeline.gen_train.iters=6",
    "pipeline.gen_train.batch_size=8",
    "pipeline.gen_train.checkpoint_every=3",
    "pipeline.generator.base_channels=4",
    "pipeline.generator.feature_channels=8",
    "progress=false",
]


@pytest.mark.slow
def test_street_pipeline_end_to_end(tmp_path):
    from advlab.runner import run

    res = run(make_cfg("experiment=semanticadv_street_synth", *TINY), tmp_path / "a")
    m = res["metrics"]
    for case in ("pedestrian_vanishes", "cyclist_to_pedestrian"):
        for key in ("attack/instance_success", "clean/instance_success", "attack/asr", "attack/ref_edit",
                    "attack/rest_pixel_acc", "clean/rest_pixel_acc"):  # fmt: skip
            assert 0.0 <= m[f"{key}_{case}"] <= 1.0, (key, case)
        assert (tmp_path / "a" / f"semanticadv_street_{case}.png").is_file()
    two = [
        m["attack/instance_success_pedestrian_vanishes"],
        m["attack/instance_success_cyclist_to_pedestrian"],
    ]
    assert m["attack/instance_success"] == pytest.approx(sum(two) / 2)
    assert m["attack/iters"] <= 3
    assert res["generator"]["source"] == "trained" and res["victim"]["source"] == "trained"
    assert res["semantic_adv_street"]["objective"] == "houdini"
    # a second run with cross-entropy reuses both trained models (the objective is not part of their keys)
    one_case = "pipeline.cases=[{name: v, source_class: person, mode: vanish, target_class: road, insert_class: car}]"
    quick = [one_case, "pipeline.num_images=1", "pipeline.grid_examples=0", "attack.steps=1"]
    res2 = run(
        make_cfg("experiment=semanticadv_street_synth", *TINY, "task.objective=ce", *quick), tmp_path / "b"
    )
    assert res2["generator"]["source"] == "cache" and res2["victim"]["source"] == "cache"
