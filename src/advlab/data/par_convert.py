"""Converters from the original PAR annotation files to advlab's dataset pickle (:mod:`advlab.data.par_pickle`).

- PETA (``PETA.mat``): ``peta[0][0][0]`` is ``[19000, 4 + 105]`` (4 id columns, then 105 attributes),
  ``peta[0][0][1]`` the 105 names, ``peta[0][0][3][k][0][0][0][0..2]`` the 1-based train/val/test indices of
  the 5 random splits; images ``00001.png`` ... in ``images/``. The 35 evaluated attributes are reordered into
  part groups (head, upper, lower, foot, carrying, age, gender) as Rethinking-of-PAR / PromptPAR do.
- PA100K (``annotation.mat``): ``attributes`` (26 names), ``{train,val,test}_images_name`` and
  ``{train,val,test}_label`` (80k/10k/10k); images in ``data/``.
- RAPv2 (``RAP_annotation.mat``): ``RAP_annotation[0][0]`` = (image names, labels ``[84928, 152]``, names,
  1-based selected attributes ``[1, 54]``, 5 splits of 1-based train/val/test indices); images in
  ``RAP_dataset/``.

The scripts in ``scripts/convert_*.py`` call these functions; the tests run them on small fixtures written in
the same ``.mat`` layouts.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

# the 35 evaluated PETA attributes regrouped by part (indices into the first 35 annotation columns)
PETA_GROUP_ORDER = [10, 18, 19, 30, 15, 7, 9, 11, 14, 21, 26, 29, 32, 33, 34, 6, 8, 12, 25, 27, 31, 13, 23, 24,
                    28, 4, 5, 17, 20, 22, 0, 1, 2, 3, 16]  # fmt: skip


def _loadmat(path: str | Path) -> dict[str, Any]:
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file '{path}' does not exist")
    return loadmat(str(path))


def _name(cell: Any) -> str:
    """A MATLAB cell entry as str (cells arrive as nested object arrays)."""
    while isinstance(cell, np.ndarray):
        cell = cell.reshape(-1)[0]
    return str(cell)


def _indices(arr: Any) -> np.ndarray:
    return np.asarray(arr, dtype=np.int64).reshape(-1) - 1  # 1-based MATLAB -> 0-based


def _description(root: str, names: list[str], label: np.ndarray, attr: list[str], eval_idx: list[int],
                 parts: dict[str, Any], description: str) -> dict[str, Any]:  # fmt: skip
    label = (np.asarray(label) == 1).astype(np.int64)
    first = parts["train"] if isinstance(parts["train"], np.ndarray) else parts["train"][0]
    firstval = parts["trainval"] if isinstance(parts["trainval"], np.ndarray) else parts["trainval"][0]
    return {
        "description": description,
        "root": root,
        "image_name": names,
        "label": label,
        "attr_name": attr,
        "label_idx": {"eval": list(eval_idx)},
        "partition": parts,
        "weight_train": label[first].mean(0)[eval_idx],
        "weight_trainval": label[firstval].mean(0)[eval_idx],
    }


def convert_peta(mat_path: str | Path, images: str = "images") -> dict[str, Any]:
    peta = _loadmat(mat_path)["peta"][0][0]
    data = np.asarray(peta[0])
    raw_label = data[:, 4:]
    raw_names = [_name(n) for n in peta[1].reshape(-1)]
    if raw_label.shape[1] != len(raw_names):
        raise ValueError(f"PETA.mat: {raw_label.shape[1]} label columns but {len(raw_names)} attribute names")
    rest = [i for i in range(raw_label.shape[1]) if i not in PETA_GROUP_ORDER]
    order = PETA_GROUP_ORDER + rest  # the 35 evaluated attributes first, in part groups
    label, names = raw_label[:, order], [raw_names[i] for i in order]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "trainval": [], "test": []}
    splits = peta[3].reshape(-1)
    for k in range(len(splits)):
        split = splits[k][0][0]  # the struct (train, val, test) of split k
        train, val, test = (_indices(split[j]) for j in range(3))
        parts["train"].append(train)
        parts["val"].append(val)
        parts["trainval"].append(np.concatenate([train, val]))
        parts["test"].append(test)
    image_names = [f"{i + 1:05d}.png" for i in range(label.shape[0])]
    return _description(images, image_names, label, names, list(range(35)), parts, "peta")


def convert_pa100k(mat_path: str | Path, images: str = "data") -> dict[str, Any]:
    ann = _loadmat(mat_path)
    names, labels = [], []
    for split in ("train", "val", "test"):
        names += [_name(n) for n in ann[f"{split}_images_name"].reshape(-1)]
        labels.append(np.asarray(ann[f"{split}_label"]))
    label = np.concatenate(labels)
    attr = [_name(n) for n in ann["attributes"].reshape(-1)]
    n_train, n_val = labels[0].shape[0], labels[1].shape[0]
    parts = {
        "train": np.arange(n_train),
        "val": np.arange(n_train, n_train + n_val),
        "trainval": np.arange(n_train + n_val),
        "test": np.arange(n_train + n_val, label.shape[0]),
    }
    return _description(images, names, label, attr, list(range(len(attr))), parts, "pa100k")


def convert_rap(mat_path: str | Path, images: str = "RAP_dataset") -> dict[str, Any]:
    ann = _loadmat(mat_path)["RAP_annotation"][0][0]
    names = [_name(n) for n in ann[0].reshape(-1)]
    label = np.asarray(ann[1])
    attr = [_name(n) for n in ann[2].reshape(-1)]
    selected = _indices(ann[3]).tolist()
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "trainval": [], "test": []}
    splits = ann[4].reshape(-1)
    for k in range(len(splits)):
        split = splits[k][0][0]
        train, val, test = (_indices(split[j]) for j in range(3))
        parts["train"].append(train)
        parts["val"].append(val)
        parts["trainval"].append(np.concatenate([train, val]))
        parts["test"].append(test)
    return _description(images, names, label, attr, selected, parts, "rapv2")


def write_pickle(description: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(description, f)
    return path
