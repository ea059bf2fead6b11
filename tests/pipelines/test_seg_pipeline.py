"""End to end on small data: the EOT patch pipeline on digits_seg (victim trained by the fit loop, patch fitted,
saved, resumable, evaluated with its artefacts), the transfer matrix on two victims, PGD on segmentation, and
the Cityscapes loader on a fixture in the published layout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import make_cfg
from PIL import Image

from advlab.context import build_spec
from advlab.data.base import DATASETS
from advlab.data.cityscapes import LABEL_TO_TRAIN
from advlab.errors import ConfigError, DatasetNotFoundError
from advlab.runner import run

NARROW = ("+victim.cfg_options={model.backbone.channels:8,model.backbone.ppm_channels:16,"
          "model.decode_head.in_channels:32,model.decode_head.channels:16}")  # fmt: skip
SMALL = ["device=cpu", "experiment=eot_patch_digits_seg", "dataset.num_train=192", "dataset.num_test=64",
         "train.epochs=3", "train.batch_size=16", "attack.epochs=2", "attack.max_batches_per_epoch=3",
         "attack.curve_examples=32", "eval.batch_size=32"]  # fmt: skip


def small(*extra: str):
    # the experiment sets victim.cfg_options; replace it with a narrower network for speed
    cfg = make_cfg(*SMALL, *extra)
    cfg.victim.cfg_options = {"model.backbone.channels": 8, "model.backbone.ppm_channels": 16,
                              "model.decode_head.in_channels": 32, "model.decode_head.channels": 16}  # fmt: skip
    return cfg


@pytest.fixture(scope="module")
def patch_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eot") / "run"
    return folder, run(small(), folder)


def test_eot_patch_pipeline_reports_miou_and_writes_its_artefacts(patch_run):
    folder, results = patch_run
    m = results["metrics"]
    for key in ("clean/mIoU", "adv/mIoU", "clean/pixel_acc", "clean/iou/background", "adv/iou/7"):
        assert key in m
    assert 0 <= m["adv/mIoU"] <= 1 and 0 <= m["clean/mIoU"] <= 1
    patch = torch.load(folder / "perturbation.pt", weights_only=True)["patch"]
    assert patch.shape == (3, 16, 16) and patch.min() >= 0 and patch.max() <= 1
    for name in ("patch.png", "patch_curve.png", "adv_examples.png", "metrics.jsonl"):
        assert (folder / name).is_file()
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    curve = [r for r in rows if "universal/val_mIoU" in r]
    assert [r["universal/epoch"] for r in curve] == [1, 2]
    assert all(r["universal/val_mIoU"] <= r["universal/val_clean_mIoU"] + 0.05 for r in curve)
    assert not (folder / "universal_state.pt").exists()


def test_saved_patch_reapplied_gives_the_same_numbers(patch_run, tmp_path):
    folder, results = patch_run
    again = run(small(f"attack.patch_path={folder / 'perturbation.pt'}"), tmp_path / "again")
    assert again["metrics"]["adv/mIoU"] == pytest.approx(results["metrics"]["adv/mIoU"])
    assert not (tmp_path / "again" / "perturbation.pt").exists()


@pytest.mark.slow
def test_gamma_weighted_loss_ablation_runs_end_to_end(patch_run, tmp_path):
    # experiment=eot_patch_digits_seg attack.loss=gamma: same victim (cached), same seed and initial patch as the
    # loss=correct run; a different loss must move the patch differently
    folder, _ = patch_run
    results = run(small("attack.loss=gamma", "attack.gamma=0.5"), tmp_path / "gamma")
    assert results["victim"]["source"] == "cache"
    m = results["metrics"]
    assert 0 <= m["adv/mIoU"] <= 1 and 0 <= m["clean/mIoU"] <= 1
    patch = torch.load(tmp_path / "gamma" / "perturbation.pt", weights_only=True)["patch"]
    reference = torch.load(folder / "perturbation.pt", weights_only=True)["patch"]
    assert patch.shape == reference.shape and patch.min() >= 0 and patch.max() <= 1
    assert not torch.equal(patch, reference)


def test_transfer_matrix_evaluates_one_patch_on_a_list_of_victims(patch_run, tmp_path):
    folder, results = patch_run
    overrides = {"cfg_options": {"model.backbone.channels": 8, "model.backbone.ppm_channels": 16,
                                 "model.decode_head.in_channels": 32, "model.decode_head.channels": 16}}  # fmt: skip
    cfg = small("pipeline=transfer", f"attack.patch_path={folder / 'perturbation.pt'}",
                "pipeline.targets=[pidnet_s,pidnet_m]")  # fmt: skip
    cfg.pipeline.target_overrides = {"pidnet_s": overrides, "pidnet_m": overrides}
    out = run(cfg, tmp_path / "transfer")["metrics"]
    # the source is named after the victim of the run that saved the patch; pidnet_s here is that same victim
    assert out["transfer/pidnet_s/pidnet_s/adv/mIoU"] == pytest.approx(results["metrics"]["adv/mIoU"])
    assert out["transfer/pidnet_s/clean/mIoU"] == pytest.approx(results["metrics"]["clean/mIoU"])
    assert "transfer/pidnet_s/pidnet_m/adv/mIoU" in out and "transfer/pidnet_m/clean/mIoU" in out
    with open(tmp_path / "transfer" / "transfer_matrix.csv") as f:
        table = list(csv.reader(f))
    assert table[0][1:] == ["pidnet_s", "pidnet_m"] and [r[0] for r in table[1:]] == ["clean", "pidnet_s"]
    assert float(table[2][1]) == pytest.approx(out["transfer/pidnet_s/pidnet_s/adv/mIoU"], abs=1e-4)
    assert (tmp_path / "transfer" / "transfer_matrix.png").is_file()


def test_transfer_needs_a_patch_and_known_targets():
    with pytest.raises(ConfigError, match="pipeline.targets"):
        build_spec(small("pipeline=transfer"))
    cfg = small("pipeline=transfer", "pipeline.targets=[no_such_model]")
    from advlab.pipelines.base import PIPELINES

    spec = build_spec(cfg)
    pipeline = PIPELINES.build(spec.pipeline)
    from advlab.context import RunContext

    ctx = RunContext(cfg, spec, None, {}, None, None)
    with pytest.raises(ConfigError, match="patch"):
        pipeline.check(ctx)
    with pytest.raises(ConfigError, match="no_such_model"):
        pipeline.target_specs(ctx)
    # a target's victim replaces the run's victim: the narrow PIDNet's cfg_options do not leak into BiSeNetV2
    cfg = small("pipeline=transfer", "pipeline.targets=[bisenetv2]")
    ctx = RunContext(cfg, build_spec(cfg), None, {}, None, None)
    target = PIPELINES.build(ctx.spec.pipeline).target_specs(ctx)["bisenetv2"].victim
    assert target.name == "bisenetv2" and target.cfg_options == {} and "bisenetv2" in target.config


def test_pgd_runs_unchanged_on_segmentation(patch_run, tmp_path):
    # the same victim (cached) as the patch run, attacked per image with the foundation's PGD
    cfg = small("eval.num_examples=32")
    cfg.attack = make_cfg("attack=pgd_linf", "attack.steps=3").attack
    results = run(cfg, tmp_path / "pgd")
    assert results["victim"]["source"] == "cache"
    m = results["metrics"]
    assert m["adv/mIoU"] < m["clean/mIoU"]
    assert m["attack/linf_max"] <= 8 / 255 + 1e-6


def _png(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


@pytest.fixture
def cityscapes_root(tmp_path):
    rng = np.random.default_rng(0)
    ids = np.arange(34, dtype=np.uint8)  # every labelId 0..33 appears
    for split, cities in (("train", ["aachen", "bochum"]), ("val", ["frankfurt"])):
        for c, city in enumerate(cities):
            for k in range(2):
                stem = f"{city}_{c:06d}_{k:06d}"
                image = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
                label = np.resize(np.roll(ids, k), (16, 32)).astype(np.uint8)
                _png(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image, "RGB")
                _png(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label, "L")
    return tmp_path


def test_cityscapes_loader_maps_label_ids_to_train_ids(cityscapes_root):
    data = DATASETS.build(DATASETS.parse({"name": "cityscapes", "root": str(cityscapes_root)}), 0)
    assert len(data.dataset("train")) == 4 and len(data.dataset("test")) == 2  # test = Cityscapes val
    x, y = data.dataset("test")[0]
    raw = np.asarray(Image.open(sorted((cityscapes_root / "gtFine" / "val").rglob("*.png"))[0]))
    assert x.shape == (3, 16, 32) and 0 <= x.min() and x.max() <= 1 and y.dtype == torch.int64
    # hand-written table (cityscapesScripts): road 7->0, sidewalk 8->1, building 11->2, car 26->13, bicycle 33->18
    expected = {7: 0, 8: 1, 11: 2, 26: 13, 33: 18, 0: 255, 1: 255, 6: 255, 9: 255, 14: 255, 29: 255, 30: 255}
    for label_id, train_id in expected.items():
        assert (y[torch.from_numpy(raw == label_id)] == train_id).all()
    assert sorted(set(y.unique().tolist()) - {255}) == list(range(19))
    assert len(LABEL_TO_TRAIN) == 19
    resized = DATASETS.build(
        DATASETS.parse({"name": "cityscapes", "root": str(cityscapes_root), "size": [8, 16]}), 0
    )
    xs, ys = resized.dataset("train")[0]
    assert xs.shape == (3, 8, 16) and ys.shape == (8, 16)
    assert set(ys.unique().tolist()) <= set(range(19)) | {255}


def test_cityscapes_missing_root_or_labels_is_a_clear_error(cityscapes_root, tmp_path):
    with pytest.raises(DatasetNotFoundError, match="leftImg8bit"):
        DATASETS.build(DATASETS.parse({"name": "cityscapes", "root": str(tmp_path / "nowhere")}), 0).dataset(
            "train"
        )
    next((cityscapes_root / "gtFine" / "train").rglob("*.png")).unlink()
    data = DATASETS.build(DATASETS.parse({"name": "cityscapes", "root": str(cityscapes_root)}), 0)
    with pytest.raises(DatasetNotFoundError, match="no label file"):
        data.dataset("train")


def test_eot_patch_runs_on_the_cityscapes_layout(cityscapes_root, tmp_path):
    cfg = make_cfg("device=cpu", "dataset=cityscapes", f"dataset.root={cityscapes_root}", "dataset.num_workers=0",
                   "victim=pidnet_s", NARROW, "attack=eot_patch", "attack.patch_size=[4,6]", "attack.crop=[16,16]",
                   "attack.epochs=1", "attack.batch_size=2", "train.epochs=1", "train.batch_size=2",
                   "eval.batch_size=2")  # fmt: skip
    m = run(cfg, tmp_path / "city")["metrics"]
    assert "clean/iou/road" in m and "adv/mIoU" in m
