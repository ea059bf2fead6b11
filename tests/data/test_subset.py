"""The JMA paper's evaluation protocol: seeded random correctly classified test images (eval.subset =
random_correct), the official index files (eval.subset_file) and target files (task.target_file), checked
against hand-computed selections and decodings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from jma_helpers import task as make_task

from advlab.attacks.base import ATTACKS
from advlab.data.subset import random_correct_indices, read_index_file
from advlab.errors import ConfigError
from advlab.loops.evaluate import EvalConfig, evaluate
from advlab.registry import parse_config
from advlab.tasks.base import TASKS
from advlab.tasks.ecoc import hadamard

CPU = torch.device("cpu")


def _correct_mask(model, data):
    x, y = data.dataset("test").tensors
    with torch.no_grad():
        return model(x).argmax(1) == y


def test_random_correct_picks_seeded_correctly_classified_images(digits_setup):
    model, task, data, _ = digits_setup
    ds = data.dataset("test")
    correct = _correct_mask(model, data)
    assert not correct.all()  # the selection has something to leave out
    idx = random_correct_indices(model, task, ds, 40, 64, CPU, seed=3)
    assert len(idx) == 40 and len(set(idx.tolist())) == 40 and correct[idx].all()
    assert torch.equal(idx, idx.sort().values)
    assert not torch.equal(idx, random_correct_indices(model, task, ds, 40, 64, CPU, seed=4))
    assert int(idx.max()) >= 60  # random, not the first 40 correct ones
    with pytest.raises(ConfigError, match=f"gets only {int(correct.sum())} of {len(ds)}"):
        random_correct_indices(model, task, ds, int(correct.sum()) + 1, 64, CPU, seed=0)
    none = ATTACKS.create("none", task)
    params = EvalConfig(num_examples=40, subset="random_correct", grid_examples=40, batch_size=40)
    res = evaluate(model, task, data, none, params, CPU, 2, False)  # selection seeded with seed + 1 = 3
    metrics = res.metrics
    assert torch.equal(res.examples.x, ds.tensors[0][idx])  # the same seeded selection, in index order
    assert metrics["eval/num_examples"] == 40 and metrics["clean/acc"] == 1.0


def test_official_index_and_error_pattern_files(digits_setup, tmp_path):
    """Index file: 1-D int64 test indices, attacked in the file's order. Error pattern: [N, 16] in {-1,+1};
    target = argmax_k (e * h_y) . h_k over the Hadamard rows, (y+1) mod 10 where that is y."""
    model, _, data, _ = digits_setup
    x_all, y_all = data.dataset("test").tensors
    idx = np.array([17, 3, 250, 8, 42, 120], dtype=np.int64)
    rng = np.random.default_rng(0)
    pattern = np.where(rng.random((6, 16)) < 0.3, -1, 1).astype(np.int64)
    pattern[0] = 1  # no flip: decodes to the true class, so (y+1) mod 10
    np.save(tmp_path / "index.npy", idx)
    np.save(tmp_path / "error_pattern.npy", pattern)
    h = np.array([[(-1) ** bin(i & j).count("1") for j in range(16)] for i in range(16)])  # Sylvester
    y = y_all[idx].numpy()
    expect = []
    for row, cls in zip(pattern, y):
        t = int(np.argmax((row * h[cls]) @ h[:10].T))
        expect.append((cls + 1) % 10 if t == cls else t)
    task = TASKS.create("classification", data.info, target_file=str(tmp_path / "error_pattern.npy"))
    pgd = ATTACKS.create("pgd", task, eps=0.1, steps=2, targeted=True)
    params = EvalConfig(batch_size=4, subset="file", subset_file=str(tmp_path / "index.npy"), grid_examples=6)
    res = evaluate(model, task, data, pgd, params, CPU, 0, False)
    metrics, examples, targets = res.metrics, res.examples, res.targets
    assert metrics["eval/num_examples"] == 6
    assert torch.equal(examples.x, x_all[idx[:4]])  # the file's order (first batch)
    assert targets.tolist() == expect and expect[0] == (y[0] + 1) % 10
    assert torch.equal(hadamard(16), torch.tensor(h, dtype=torch.float32))
    # first N of the file; too few target rows for the images is an early error naming the key
    params5 = EvalConfig(num_examples=5, subset="file", subset_file=str(tmp_path / "index.npy"))
    assert evaluate(model, task, data, pgd, params5, CPU, 0, False).metrics["eval/num_examples"] == 5
    np.save(tmp_path / "short.npy", pattern[:3])
    short = TASKS.create("classification", data.info, target_file=str(tmp_path / "short.npy"))
    with pytest.raises(ConfigError, match="task.target_file"):
        evaluate(model, short, data, ATTACKS.create("pgd", short, targeted=True), params, CPU, 0, False)


def test_bad_index_files_and_config(tmp_path):
    for name, arr, match in [
        ("2d.npy", np.zeros((3, 2), dtype=np.int64), "1-D"),
        ("float.npy", np.array([0.0, 1.0]), "integer"),
        ("range.npy", np.array([0, 500]), "test split has 100"),
        ("dup.npy", np.array([1, 1]), "repeats"),
    ]:
        np.save(tmp_path / name, arr)
        with pytest.raises(ConfigError, match=f"eval.subset_file.*{match}"):
            read_index_file(tmp_path / name, 100)
    with pytest.raises(ConfigError, match="eval.subset_file"):
        read_index_file(tmp_path / "missing.npy", 100)
    with pytest.raises(ConfigError, match="eval.subset_file"):
        parse_config(EvalConfig, {"subset": "file"}, "eval")
    with pytest.raises(ConfigError, match="eval.subset"):
        parse_config(EvalConfig, {"subset": "random"}, "eval")


def test_target_rows_decoded_by_the_task():
    ml = make_task("multilabel", 4)
    y = torch.tensor([[1.0, 0, 0, 1], [0, 1, 0, 0]])
    rows = torch.tensor([[-1, 1, 1, -1], [1, 0, 0, 1]])  # {-1,+1} and {0,1} written files
    assert torch.equal(ml.targets_from_file(rows, y), torch.tensor([[0.0, 1, 1, 0], [1, 0, 0, 1]]))
    with pytest.raises(ConfigError, match="task.target_file"):
        ml.targets_from_file(rows[:, :3], y)
    ecoc = make_task("ecoc", 10, code_length=16)
    c = ecoc.codebook
    yc = torch.tensor([0, 4])
    flip = torch.ones(2, 16, dtype=torch.long)
    flip[1] = (c[4] * c[7]).long()  # turns codeword 4 into codeword 7 exactly
    assert ecoc.targets_from_file(flip, yc).tolist() == [1, 7]
    assert ecoc.targets_from_file(torch.tensor([3, 9]), yc).tolist() == [3, 9]  # class indices as they are
    with pytest.raises(ConfigError, match="16"):
        ecoc.targets_from_file(flip[:, :8], yc)
