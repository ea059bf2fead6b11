"""PAR data: the dataset-pickle loader and the PETA / PA100K / RAPv2 converters on fixtures written in the
original on-disk layouts (``.mat`` files, image folders), bad pickles, and the embedded synthpar data."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from advlab.data.par_convert import PETA_GROUP_ORDER, convert_peta, convert_rap, write_pickle
from advlab.data.par_pickle import PARPickle, PARPickleConfig, load_description
from advlab.data.synthpar import GROUPS, NAMES, SynthPAR, SynthPARConfig, make_synthpar
from advlab.errors import ConfigError, DatasetNotFoundError
from advlab.tasks.par import PAR, PARTaskConfig

REPO_SCRIPTS = __import__("pathlib").Path(__file__).resolve().parents[2] / "scripts"


def cells(strings) -> np.ndarray:
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = s
    return out


def write_images(folder, names, size=(20, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / n)


def peta_fixture(root, n=40):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 2, (n, 105))
    data = np.concatenate([np.arange(1, n + 1)[:, None].repeat(4, 1), raw], 1).astype(np.float64)
    names = [f"attr{i:03d}" for i in range(105)]
    splits = np.empty((5, 1), dtype=object)
    for k in range(5):
        perm = rng.permutation(n) + 1  # 1-based
        splits[k, 0] = {"train": perm[:20, None].astype(float), "val": perm[20:28, None].astype(float),
                        "test": perm[28:, None].astype(float)}  # fmt: skip
    savemat(root / "PETA.mat", {"peta": {"data": data, "attribute": cells(names), "selected": np.zeros((1, 1)),
                                         "partition_attribute": splits}})  # fmt: skip
    write_images(root / "images", [f"{i + 1:05d}.png" for i in range(n)])
    return raw, names, splits


def test_peta_converter_and_loader(tmp_path):
    raw, names, splits = peta_fixture(tmp_path)
    out = write_pickle(convert_peta(tmp_path / "PETA.mat"), tmp_path / "dataset_all.pkl")
    desc = load_description(out, split_index=2)
    assert desc.attr_names == [names[i] for i in PETA_GROUP_ORDER]  # 35 evaluated attributes, regrouped
    np.testing.assert_array_equal(desc.labels, raw[:, PETA_GROUP_ORDER])
    s2 = splits[2, 0]
    np.testing.assert_array_equal(desc.partitions["test"], s2["test"][:, 0].astype(int) - 1)
    np.testing.assert_array_equal(
        desc.partitions["trainval"], np.concatenate([s2["train"][:, 0], s2["val"][:, 0]]).astype(int) - 1
    )
    data = PARPickle(PARPickleConfig(name="par_pickle", root=str(tmp_path), preset="peta", size=32,
                                     split_index=2), seed=0)  # fmt: skip
    info = data.info
    assert info.num_classes == 35 and info.image_shape == (3, 32, 32) and len(info.sentences) == 35
    test = data.dataset("test")
    assert len(test) == 12 and len(data.dataset("train")) == 28
    x, y = next(iter(data.loader("test", 5)))
    assert x.shape == (5, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
    idx = desc.partitions["test"][:5]
    torch.testing.assert_close(y, torch.from_numpy(raw[idx][:, PETA_GROUP_ORDER]).float())
    rates = raw[desc.partitions["trainval"]][:, PETA_GROUP_ORDER].mean(0)
    np.testing.assert_allclose(info.positive_rates, rates, rtol=1e-6)
    PAR(PARTaskConfig(name="par"), info)  # the groups fit the 35 attributes


def test_pa100k_converter_via_script(tmp_path):
    rng = np.random.default_rng(2)
    attrs = [f"A{i}" for i in range(26)]
    ann, names = {"attributes": cells(attrs)}, {}
    for split, n in (("train", 8), ("val", 3), ("test", 5)):
        names[split] = [f"{split}{i:03d}.jpg" for i in range(n)]
        ann[f"{split}_images_name"] = cells(names[split])
        ann[f"{split}_label"] = rng.integers(0, 2, (n, 26)).astype(np.uint8)
    savemat(tmp_path / "annotation.mat", ann)
    write_images(tmp_path / "data", sum(names.values(), []))
    result = subprocess.run([sys.executable, str(REPO_SCRIPTS / "convert_pa100k.py"), str(tmp_path / "annotation.mat"),
                             str(tmp_path / "dataset_all.pkl")], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = PARPickle(PARPickleConfig(name="par_pickle", root=str(tmp_path), preset="pa100k", size=16), seed=0)
    assert data.info.class_names == attrs
    assert len(data.dataset("train")) == 11 and len(data.dataset("test")) == 5  # trainval / test
    _, y = data.dataset("test")[4]
    torch.testing.assert_close(y, torch.from_numpy(ann["test_label"][4]).float())
    assert data.description.image_names[11] == "test000.jpg"


def test_rap_converter(tmp_path):
    rng = np.random.default_rng(3)
    n = 30
    label = rng.integers(0, 2, (n, 152))
    selected = np.arange(1, 55)[::-1].copy()  # 1-based, in a non-trivial order
    splits = np.empty((1, 5), dtype=object)
    for k in range(5):
        perm = rng.permutation(n) + 1
        splits[0, k] = {"train": perm[None, :15].astype(float), "val": perm[None, 15:20].astype(float),
                        "test": perm[None, 20:].astype(float)}  # fmt: skip
    names = [f"CAM01_{i}.png" for i in range(n)]
    savemat(tmp_path / "RAP_annotation.mat", {"RAP_annotation": {
        "name": cells(names), "data": label, "attribute": cells([f"r{i}" for i in range(152)]),
        "selected_attribute": selected[None].astype(float), "partition_attribute": splits}})  # fmt: skip
    write_images(tmp_path / "RAP_dataset", names)
    desc_dict = convert_rap(tmp_path / "RAP_annotation.mat")
    write_pickle(desc_dict, tmp_path / "dataset_all.pkl")
    data = PARPickle(PARPickleConfig(name="par_pickle", root=str(tmp_path), preset="rapv2", size=16), seed=0)
    d = data.description
    assert d.attr_names == [f"r{i - 1}" for i in selected]
    np.testing.assert_array_equal(d.labels, label[:, selected - 1])
    np.testing.assert_array_equal(d.partitions["test"], splits[0, 0]["test"][0].astype(int) - 1)
    assert data.info.num_classes == 54


def test_label_width_mismatch_fails_with_a_clear_message(tmp_path):
    bad = {"root": "images", "image_name": ["a.png", "b.png"], "label": np.zeros((2, 5)), "attr_name": ["x"] * 4,
           "label_idx": {"eval": [0, 1]}, "partition": {"trainval": [0], "test": [1]}}  # fmt: skip
    with open(tmp_path / "dataset_all.pkl", "wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(
        DatasetNotFoundError, match=r"label has shape \(2, 5\) but attr_name lists 4 attributes"
    ):
        load_description(tmp_path / "dataset_all.pkl")


def test_preset_attribute_count_and_missing_root_fail_early(tmp_path):
    raw = {"root": "images", "image_name": ["a.png"], "label": np.zeros((1, 4)), "attr_name": list("abcd"),
           "partition": {"trainval": [0], "test": [0]}}  # fmt: skip
    (tmp_path / "images").mkdir()
    write_pickle(raw, tmp_path / "dataset_all.pkl")
    with pytest.raises(ConfigError, match="preset=peta expects 35 evaluated attributes but the pickle has 4"):
        _ = PARPickle(PARPickleConfig(name="par_pickle", root=str(tmp_path), preset="peta"), 0).description
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        _ = PARPickle(PARPickleConfig(name="par_pickle", root=str(tmp_path / "nope"), preset="peta"), 0).info


def test_synthpar_is_seeded_grouped_and_labels_are_consistent():
    a = make_synthpar(48, 64, 16, 5, 0.03)
    make_synthpar.cache_clear()
    b = make_synthpar(48, 64, 16, 5, 0.03)
    torch.testing.assert_close(a["train"][0], b["train"][0])
    assert not torch.equal(make_synthpar(48, 64, 16, 6, 0.03)["train"][1], a["train"][1])
    x, y = a["train"]
    assert x.shape == (64, 3, 48, 48) and 0 <= x.min() and x.max() <= 1
    assert len(NAMES) >= 20 and len(GROUPS) >= 6
    idx = {n: i for i, n in enumerate(NAMES)}
    # mutually exclusive groups: exactly one sleeve length, one lower-body type, one age
    for names in (["upper_long_sleeve", "upper_short_sleeve"], ["lower_trousers", "lower_shorts", "lower_skirt"],
                  ["age_child", "age_adult", "age_senior"]):  # fmt: skip
        assert (y[:, [idx[n] for n in names]].sum(1) == 1).all()
    data = SynthPAR(SynthPARConfig(name="synthpar", size=48, num_train=64, num_test=16, data_seed=5), 0)
    torch.testing.assert_close(torch.tensor(data.info.positive_rates), y.mean(0))
    assert len(data.info.sentences) == len(NAMES)
