"""Sharded evaluation (eval.shard / eval.num_shards, advlab-merge) and DDP evaluation: the shards' union is the
unsharded run, metric by metric, bit for bit (everything but the wall-clock attack time)."""

from __future__ import annotations

import json
import shutil

import ddp_worker
import pytest
import torch
import torch.multiprocessing as mp
from conftest import make_cfg

from advlab import keyed_random
from advlab.attacks.perturbation import random_start
from advlab.data.subset import nested_range, shard_range
from advlab.errors import AdvlabError, ConfigError
from advlab.merge import main as merge_main
from advlab.merge import merge
from advlab.runner import run
from advlab.validation import check_config

WALL_CLOCK = {"attack/time_per_image_s"}
SEG = ("dataset=digits_seg", "victim=pidnet_s", "dataset.num_train=192", "dataset.num_test=128",
       "train.epochs=1", "train.batch_size=16", "attack.steps=2")  # fmt: skip
NARROW = {"model.backbone.channels": 8, "model.backbone.ppm_channels": 16,
          "model.decode_head.in_channels": 32, "model.decode_head.channels": 16}  # fmt: skip


def _cfg(extra, *overrides):
    cfg = make_cfg("device=cpu", "eval.num_examples=128", *extra, *overrides)
    if "victim=pidnet_s" in extra:
        cfg.victim.cfg_options = NARROW
    return cfg


def _unsharded_and_shards(root, extra):
    unsharded = run(_cfg(extra), root / "unsharded")
    for i in (1, 0):  # any order
        run(_cfg(extra, f"eval.shard={i}", "eval.num_shards=2"), root / f"shard{i}")
    return unsharded


@pytest.fixture(scope="module")
def classification_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded-cls")
    return root, _unsharded_and_shards(root, ())


def _assert_same_metrics(merged: dict, unsharded: dict) -> None:
    assert set(merged) == set(unsharded)
    for key, value in unsharded.items():
        if key not in WALL_CLOCK:
            assert merged[key] == value, key  # exact, not approximate


@pytest.mark.slow  # three evaluations of 128 images under PGD (victim cached for the session)
def test_two_classification_shards_merge_to_the_unsharded_metrics(classification_runs):
    root, unsharded = classification_runs
    s0 = json.loads((root / "shard0" / "results.json").read_text())["metrics"]
    assert s0["eval/num_examples"] == 64 and s0["adv/acc"] != unsharded["metrics"]["adv/acc"]
    assert merge_main([str(root / "shard0"), str(root / "shard1"), "--out", str(root / "merged")]) == 0
    merged = json.loads((root / "merged" / "results.json").read_text())
    _assert_same_metrics(merged["metrics"], unsharded["metrics"])
    assert merged["metrics"]["eval/num_examples"] == 128
    assert merged["config"] == unsharded["config"]  # the unsharded run's config (shard 0 of 1)
    assert (root / "merged" / "adv_examples.png").is_file()


@pytest.mark.slow  # a 1-epoch narrow PIDNet-S on 192 canvases, then three PGD evaluations of 128 canvases
def test_two_segmentation_shards_merge_to_the_unsharded_metrics(tmp_path):
    unsharded = _unsharded_and_shards(tmp_path, SEG)
    merged = merge([tmp_path / "shard0", tmp_path / "shard1"], tmp_path / "merged")
    assert "clean/mIoU" in merged["metrics"] and "adv/iou/background" in merged["metrics"]
    _assert_same_metrics(merged["metrics"], unsharded["metrics"])


@pytest.mark.slow  # the classification shards' fixture
def test_merge_refuses_missing_repeated_foreign_shards_and_a_finished_out(classification_runs, tmp_path):
    root, _ = classification_runs
    s0, s1 = root / "shard0", root / "shard1"
    with pytest.raises(AdvlabError, match=r"shard\(s\) 1 of eval.num_shards=2 missing"):
        merge([s0], tmp_path / "a")
    with pytest.raises(AdvlabError, match="shard 0 is given 2 times"):
        merge([s0, s0, s1], tmp_path / "b")
    with pytest.raises(AdvlabError, match="is not a shard"):
        merge([s0, root / "unsharded"], tmp_path / "c")
    foreign = tmp_path / "foreign"
    shutil.copytree(s1, foreign)
    payload = json.loads((foreign / "results.json").read_text())
    payload["config"]["attack"]["eps"] = 0.5
    (foreign / "results.json").write_text(json.dumps(payload))
    with pytest.raises(AdvlabError, match=r"config differs beyond eval.shard: attack.eps: 0\.0313.* vs 0\.5"):
        merge([s0, foreign], tmp_path / "d")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(s1, unfinished)
    (unfinished / "results.json").unlink()
    with pytest.raises(AdvlabError, match="has not finished"):
        merge([s0, unfinished], tmp_path / "e")
    done = tmp_path / "done"
    done.mkdir()
    (done / "results.json").write_text("{}")
    with pytest.raises(AdvlabError, match="already holds a finished run"):
        merge([s0, s1], done)
    assert not (tmp_path / "a").exists()  # nothing written on refusal


def test_shard_keys_are_checked_with_the_config():
    with pytest.raises(ConfigError) as err:
        check_config(make_cfg("eval.shard=2", "eval.num_shards=2"))
    assert "eval.shard: must be in [0, eval.num_shards) = [0, 2) (got 2)" in str(err.value)
    with pytest.raises(ConfigError, match="eval.num_shards: must be >= 1"):
        check_config(make_cfg("eval.num_shards=0"))


def test_pipelines_that_are_not_one_evaluation_refuse_shards(tmp_path):
    cfg = make_cfg("device=cpu", "experiment=pat_digits", "eval.num_shards=2")  # a robustness_suite
    with pytest.raises(ConfigError, match="eval.num_shards: pipeline 'robustness_suite' cannot be sharded"):
        run(cfg, tmp_path / "suite")


def test_shards_are_contiguous_and_cover_every_image_once():
    for n in (0, 1, 7, 128, 1001):
        for k in (1, 2, 3, 8):
            parts = [list(shard_range(n, i, k)) for i in range(k)]
            assert sum(parts, []) == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # a torchrun rank's part of a shard: shard 1 of 2 of 10 images = 5..9; rank 1 of 2 of that = 7..9
    assert list(nested_range(10, [(1, 2), (1, 2)])) == [7, 8, 9]


def test_keyed_random_starts_are_the_images_not_the_batches():
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with keyed_random.keyed_by_image(5):
        whole = random_start(x, "linf", 0.1)
        second = random_start(x, "linf", 0.1)  # the next draw of the same call (a restart) differs
    with keyed_random.keyed_by_image(5):
        part = random_start(x[[4, 1]], "linf", 0.1)  # other batch, other order
    with keyed_random.keyed_by_image(6):
        other_seed = random_start(x, "linf", 0.1)
    assert torch.equal(part, whole[[4, 1]])
    assert not torch.equal(second, whole) and not torch.equal(other_seed, whole)
    assert whole.abs().max() <= 0.1
    with keyed_random.keyed_by_image(5):
        u = keyed_random.uniform_like(torch.rand(64, 3, 32, 32), 0.0, 1.0)
    # uniform on [0, 1): mean 1/2, variance 1/12, every decile about a tenth of the 196608 draws
    assert abs(u.mean().item() - 0.5) < 0.005 and abs(u.var().item() - 1 / 12) < 0.002
    deciles = torch.histc(u, bins=10, min=0, max=1) / u.numel()
    assert (deciles - 0.1).abs().max() < 0.005 and u.min() >= 0 and u.max() < 1
    with keyed_random.keyed_by_image(5):
        g = keyed_random.randn_like(torch.rand(64, 3, 32, 32))
    assert abs(g.mean().item()) < 0.01 and abs(g.std().item() - 1) < 0.01
    torch.manual_seed(0)
    outside = random_start(x, "linf", 0.1)  # outside the evaluate loop: torch's generator, as before
    torch.manual_seed(0)
    assert torch.equal(outside, torch.empty_like(x).uniform_(-0.1, 0.1))


@pytest.mark.slow  # two spawned interpreters (gloo)
def test_ddp_evaluation_merges_the_ranks_like_shards(tmp_path):
    single = ddp_worker.tiny_evaluation()
    shards = [ddp_worker.tiny_evaluation({"shard": i, "num_shards": 2}) for i in range(2)]
    assert shards[0].metrics["eval/num_examples"] == 16
    prefix = str(tmp_path / "rank")
    mp.spawn(ddp_worker.eval_rank, args=(2, str(tmp_path / "init"), prefix), nprocs=2, join=True)
    for rank in range(2):  # every rank returns the whole evaluation
        ddp = torch.load(f"{prefix}{rank}.pt", weights_only=False)
        _assert_same_metrics(ddp["metrics"], single.metrics)
        assert torch.equal(ddp["adv_correct"], single.adv_correct)
    assert torch.equal(torch.cat([s.adv_correct for s in shards]), single.adv_correct)
