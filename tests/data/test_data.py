from __future__ import annotations

import numpy as np
import pytest
import torch

from advlab.data.base import DATASETS, require_root
from advlab.errors import DatasetNotFoundError
from advlab.registry import parse_config


def digits(**params):
    return DATASETS.create("digits", 0, **params)


def test_digits_split_is_stratified_seeded_and_disjoint():
    dm = digits()
    xtr, ytr = dm.dataset("train").tensors
    xte, yte = dm.dataset("test").tensors
    assert len(ytr) + len(yte) == 1797
    assert abs(len(yte) / 1797 - 0.25) < 0.01
    assert xtr.shape[1:] == (1, 32, 32) and xtr.dtype == torch.float32
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) <= 1.0 and float(xtr.max()) > 0.9
    # stratified: class proportions agree within one sample per class
    ctr = np.bincount(ytr.numpy(), minlength=10) / len(ytr)
    cte = np.bincount(yte.numpy(), minlength=10) / len(yte)
    assert np.abs(ctr - cte).max() < 0.01
    # no test image appears in train
    tr = {tuple(v) for v in xtr.flatten(1).numpy().round(4)}
    assert (
        sum(tuple(v) in tr for v in xte.flatten(1).numpy().round(4)) < 5
    )  # sklearn digits has a few duplicates
    # seeded: same seed same split, other seed other split
    assert torch.equal(digits().dataset("test").tensors[1], yte)
    assert not torch.equal(digits(split_seed=1).dataset("test").tensors[1], yte)


def test_digits_size_and_channels():
    dm = digits(size=16, channels=3)
    x, _ = dm.dataset("train").tensors
    assert x.shape[1:] == (3, 16, 16)
    assert torch.equal(x[:, 0], x[:, 2])
    assert dm.info.image_shape == (3, 16, 16) and len(dm.info.mean) == 3


def test_unknown_split():
    with pytest.raises(Exception, match="split 'val' not available"):
        digits().dataset("val")


def test_train_transform_crops_and_flips_on_batches():
    dm = digits(augment=True, hflip=True)
    x = torch.rand(8, 1, 32, 32)
    out = dm.train_transform(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(digits().train_transform(x), x)  # no augmentation by default


def test_require_root_errors_show_expected_layout(tmp_path):
    layout = ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"]
    with pytest.raises(DatasetNotFoundError, match="dataset.root is not set"):
        require_root(None, "cifar10", layout, "https://example.org")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        require_root(tmp_path / "nope", "cifar10", layout, "https://example.org")
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"x")
    with pytest.raises(DatasetNotFoundError, match="missing cifar-10-batches-py/test_batch") as err:
        require_root(tmp_path, "cifar10", layout, "https://example.org")
    assert "Expected layout" in str(err.value)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"x")
    assert require_root(tmp_path, "cifar10", layout, "https://example.org") == tmp_path


def write_cifar10_fixture(root, n_per_batch=6):
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = list(rng.integers(0, 10, size=n_per_batch))
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {
                "label_names": [
                    "airplane",
                    "automobile",
                    "bird",
                    "cat",
                    "deer",
                    "dog",
                    "frog",
                    "horse",
                    "ship",
                    "truck",
                ]
            },
            f,
        )
    return data, labels


def cifar10(root):
    cls = DATASETS.get("cifar10")
    return cls(parse_config(cls.Config, {"name": "cifar10", "root": str(root)}, "dataset"), seed=0)


def test_cifar10_reads_the_python_pickle_format(tmp_path):
    data, labels = write_cifar10_fixture(tmp_path)
    dm = cifar10(tmp_path)
    x, y = dm.dataset("test").tensors
    assert x.shape == (6, 3, 32, 32) and y.tolist() == labels
    # channel planes R, G, B of 32x32, row-major, scaled to [0, 1]
    assert x[2, 1, 3, 4].item() == pytest.approx(data[2, 1024 + 3 * 32 + 4] / 255)
    assert len(dm.dataset("train")) == 30
    assert dm.info.class_names[0] == "airplane" and dm.info.image_shape == (3, 32, 32)


def test_cifar10_missing_or_malformed_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="(?s)does not exist.*cifar-10-batches-py/data_batch_1"):
        _ = cifar10(tmp_path / "nope").info
    write_cifar10_fixture(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DatasetNotFoundError, match="cannot read CIFAR-10 batch"):
        cifar10(tmp_path).dataset("test")


def test_runner_trains_and_attacks_on_a_cifar10_fixture(tmp_path):
    from conftest import make_cfg

    from advlab.runner import run

    write_cifar10_fixture(tmp_path / "data", n_per_batch=20)
    cfg = make_cfg(
        "dataset=cifar10",
        f"dataset.root={tmp_path / 'data'}",
        "victim.width=8",
        "victim.hidden=16",
        "train.epochs=1",
        "attack=fgsm",
        "device=cpu",
    )
    res = run(cfg, tmp_path / "run")
    assert res["metrics"]["eval/num_examples"] == 20 and res["dataset"] == "cifar10"
    assert res["metrics"]["attack/linf_max"] <= 8 / 255 + 1e-6
    assert (tmp_path / "run" / "adv_examples.png").is_file()
