"""DataLoader settings (``dataset.num_workers``, ``pin_memory``, ``persistent_workers``, ``prefetch_factor``):
defaults per device, passed to every loader of a data module, validated before torch with the key named."""

from __future__ import annotations

import os

import pytest
import torch
from conftest import make_cfg

from advlab.data.base import DATASETS, DataModule
from advlab.errors import ConfigError
from advlab.registry import parse_config
from advlab.validation import check_config


def digits(**loading):
    cfg = parse_config(DATASETS.get("digits").Config, {"name": "digits", "size": 8, **loading}, "dataset")
    return DATASETS.build(cfg, 0)


def test_defaults_follow_the_device_and_the_dataset():
    data = digits()
    assert data.loader_options() == {"num_workers": 0, "pin_memory": False}  # no device set: plain loading
    data.device = torch.device("cpu")
    assert data.loader_options() == {"num_workers": 0, "pin_memory": False}
    data.device = torch.device("cuda", 1)  # in memory: no workers, pinned batches for async copies
    assert data.loader_options() == {"num_workers": 0, "pin_memory": True}
    files = DataModule(DATASETS.config("cityscapes")(), 0)  # decoded from image files on every read
    files.device = torch.device("cuda")
    workers = min(4, max((os.cpu_count() or 1) - 1, 0))
    expected = {"num_workers": workers, "pin_memory": True}
    assert files.loader_options() == ({**expected, "persistent_workers": False} if workers else expected)
    files.device = torch.device("cpu")  # a CPU run: workers would compete with the compute
    assert files.loader_options() == {"num_workers": 0, "pin_memory": False}


def test_settings_reach_every_loader():
    """The train / test loaders and the evaluate loop's subset loader all carry the dataset's settings (not
    iterated here: starting worker processes costs seconds)."""
    from advlab.data.subset import eval_loader
    from advlab.loops.configs import EvalConfig

    tuned = digits(num_workers=2, persistent_workers=True, prefetch_factor=5, pin_memory=True)
    loaders = [
        tuned.loader("train", 64, shuffle=True, seed=5),
        tuned.loader("test", 64, limit=10),
        eval_loader(None, None, tuned, EvalConfig(num_examples=10), torch.device("cpu"), 0)[0],
        eval_loader(None, None, tuned, EvalConfig(num_examples=10), torch.device("cpu"), 0, [(1, 2)])[0],
    ]
    for loader in loaders:
        assert (loader.num_workers, loader.persistent_workers, loader.prefetch_factor) == (2, True, 5)
        assert loader.pin_memory


def test_bad_settings_name_the_key():
    with pytest.raises(ConfigError) as exc:
        check_config(
            make_cfg("dataset.num_workers=0", "dataset.persistent_workers=true", "dataset.prefetch_factor=4")
        )
    text = str(exc.value)
    assert "dataset.prefetch_factor: needs worker processes: set dataset.num_workers > 0" in text
    with pytest.raises(ConfigError, match="dataset.num_workers: must be >= 0 or null"):
        check_config(make_cfg("dataset.num_workers=-1"))
    spec = check_config(make_cfg("dataset.num_workers=2", "dataset.persistent_workers=true"))
    assert spec.dataset.num_workers == 2 and spec.dataset.persistent_workers
    # persistent_workers applies when the run gets workers (ignored without: ImageNet2K keeps its default true
    # when a test sets num_workers=0)
    assert check_config(make_cfg("dataset.persistent_workers=true")).dataset.num_workers is None
    assert DataModule(DATASETS.config("imagenet2k")(num_workers=0), 0).loader_options() == {
        "num_workers": 0,
        "pin_memory": False,
    }


def test_loading_settings_and_memory_format_keep_the_victim_cache_key():
    """Where the data lives and how it is loaded (and channels_last / compile) do not change a trained victim;
    the training precision does."""
    from advlab.context import build_spec, victim_cache_key

    def key(*overrides: str) -> dict:
        return victim_cache_key(build_spec(make_cfg("device=cpu", *overrides)))

    base = key()
    assert "num_workers" not in base["dataset"] and "precision" not in base
    same = key("dataset.num_workers=2", "dataset.pin_memory=true", "dataset.prefetch_factor=3")
    assert same == base == key("channels_last=true", "compile=default")
    assert key("precision=bf16") == {**base, "precision": "bf16"}
