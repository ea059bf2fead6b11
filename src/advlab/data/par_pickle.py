"""PAR datasets in the dataset-pickle format shared by PETA, PA100K, RAPv2 and MSP60K (Rethinking-of-PAR,
PromptPAR): one pickled dict (an EasyDict in the original tools) with

- ``root``: the image folder; ``image_name``: ``[N]`` file names relative to it;
- ``label``: ``[N, A_raw]`` 0/1 annotations; ``attr_name``: ``[A_raw]`` names;
- ``label_idx.eval``: the evaluated attribute columns (the task's ``A`` attributes, in this order);
- ``partition.{train,val,trainval,test}``: index arrays, or a list of 5 random splits;
- ``weight_train`` / ``weight_trainval``: positive rates (advlab recomputes them from the training split);
- optionally ``attributes`` / ``attr_words``: one sentence per evaluated attribute (PromptPAR's pickles).

``scripts/convert_{peta,pa100k,rap}.py`` write this format from the original annotation files. The part groups
of the label perturbation and the attribute sentences come from ``dataset.preset`` (peta, pa100k, rapv2, msp60k,
as in PromptPAR's orderings), or ``dataset.groups`` / the pickle's sentences. Images are read with PIL,
resized to ``dataset.size`` (224x224 for CLIP ViT-L/14) and returned in [0, 1].
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import PRESET_GROUPS, PARPickleConfig  # noqa: F401
from advlab.errors import ConfigError, DatasetNotFoundError
from advlab.tasks.par import PARInfo, check_groups

PRESET_SIZES = {"peta": 35, "pa100k": 26, "rapv2": 54, "msp60k": 57}
SOURCES = {
    "peta": "http://mmlab.ie.cuhk.edu.hk/projects/PETA.html (PETA.mat + images; scripts/convert_peta.py)",
    "pa100k": "https://github.com/xh-liu/HydraPlus-Net (annotation.mat + data/; scripts/convert_pa100k.py)",
    "rapv2": "http://www.rapdataset.com (RAP_annotation.mat + RAP_dataset/; scripts/convert_rap.py)",
    "msp60k": "https://github.com/Event-AHU/OpenPAR (MSP60K pickle + images)",
    "none": "the dataset's publisher (a dataset pickle + image folder)",
}
_PREFIXES = [
    ("accessory", "A pedestrian with {}"),
    ("hair", "A pedestrian with {} hair"),
    ("upperBody", "A pedestrian wearing {} upper-body clothing"),
    ("lowerBody", "A pedestrian wearing {} lower-body clothing"),
    ("footwear", "A pedestrian wearing {} footwear"),
    ("carrying", "A pedestrian carrying {}"),
    ("personal", "A pedestrian who is {}"),
]


def sentence_for(name: str) -> str:
    """A readable attribute sentence from an annotation name (``upperBodyLogo`` -> 'A pedestrian wearing
    logo upper-body clothing')."""
    for prefix, template in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix) :]
            rest = rest.replace("Less", "younger than ").replace("Larger", "older than ")
            return template.format(" ".join(re.findall(r"[A-Z]?[a-z]+|\d+|[A-Z]+(?![a-z])", rest)).lower())
    words = " ".join(re.findall(r"[A-Z]?[a-z]+|\d+|[A-Z]+(?![a-z])", name.replace("&", " and "))).lower()
    return f"A pedestrian with the attribute {words or name}"


class _Dict(dict):
    """Stands in for ``easydict.EasyDict`` when unpickling (no dependency on easydict)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.update(state)


class _Unpickler(pickle.Unpickler):
    """Only plain containers, numpy arrays and EasyDicts: a dataset pickle needs nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "easydict" and name == "EasyDict":
            return _Dict
        if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric",
                      "numpy._core.numeric") or (module == "builtins" and name in ("set", "frozenset", "slice")):  # fmt: skip
            return super().find_class(module, name)
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"dataset pickle refers to {module}.{name}, which a dataset pickle never needs"
        )


def _get(d: Any, key: str, default: Any = None) -> Any:
    return d.get(key, default) if isinstance(d, dict) else getattr(d, key, default)


@dataclasses.dataclass
class PARDescription:
    """The parsed pickle: image paths, evaluated 0/1 labels, names, sentences and index splits."""

    image_root: Path
    image_names: list[str]
    labels: np.ndarray  # [N, A] over the evaluated attributes
    attr_names: list[str]
    sentences: list[str] | None
    partitions: dict[str, np.ndarray]


def load_description(path: str | os.PathLike, split_index: int = 0) -> PARDescription:
    """Read and check a dataset pickle; errors name the file and the inconsistent field."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = _Unpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise DatasetNotFoundError(f"dataset pickle '{path}' cannot be read: {exc}") from None
    missing = [k for k in ("image_name", "label", "attr_name", "partition") if _get(d, k) is None]
    if missing:
        raise DatasetNotFoundError(
            f"dataset pickle '{path}' lacks {', '.join(missing)}; expected the Rethinking-of-PAR / PromptPAR "
            "format (root, image_name, label, attr_name, label_idx.eval, partition.*)"
        )
    label = np.asarray(_get(d, "label"))
    names = [str(n) for n in _get(d, "attr_name")]
    image_names = [str(n) for n in _get(d, "image_name")]
    if label.ndim != 2 or label.shape[1] != len(names):
        raise DatasetNotFoundError(
            f"dataset pickle '{path}': label has shape {label.shape} but attr_name lists {len(names)} attributes; "
            "label must be [N, len(attr_name)] (regenerate the pickle with scripts/convert_*.py)"
        )
    if label.shape[0] != len(image_names):
        raise DatasetNotFoundError(
            f"dataset pickle '{path}': {label.shape[0]} label rows for {len(image_names)} image names"
        )
    label_idx = _get(d, "label_idx")
    eval_idx = (
        list(_get(label_idx, "eval", range(len(names)))) if label_idx is not None else list(range(len(names)))
    )
    if any(not 0 <= int(i) < len(names) for i in eval_idx):
        raise DatasetNotFoundError(
            f"dataset pickle '{path}': label_idx.eval has indices outside [0, {len(names)})"
        )
    eval_idx = [int(i) for i in eval_idx]
    parts: dict[str, np.ndarray] = {}
    partition = _get(d, "partition")
    for key in ("train", "val", "trainval", "test"):
        value = _get(partition, key)
        if value is None:
            continue
        if isinstance(value, list | tuple) and len(value) and np.ndim(value[0]) == 1:
            if not 0 <= split_index < len(value):
                raise ConfigError(
                    f"dataset.split_index: {split_index} but '{path}' holds {len(value)} splits"
                )
            value = value[split_index]
        idx = np.asarray(value, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= label.shape[0]):
            raise DatasetNotFoundError(
                f"dataset pickle '{path}': partition.{key} indexes outside [0, {label.shape[0]})"
            )
        parts[key] = idx
    sentences = _get(d, "attributes") or _get(d, "attr_words")
    if sentences is not None:
        sentences = [str(s) for s in sentences]
        if len(sentences) != len(eval_idx):
            sentences = None
    root = _get(d, "root") or "images"
    return PARDescription(
        image_root=Path(str(root)),
        image_names=image_names,
        labels=(label[:, eval_idx] == 1).astype(np.float32),
        attr_names=[names[i] for i in eval_idx],
        sentences=sentences,
        partitions=parts,
    )


class _ImageDataset(Dataset):
    def __init__(self, paths: list[Path], labels: np.ndarray, size: int):
        self.paths, self.labels, self.size = paths, torch.from_numpy(labels), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            img = img.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255
        return x, self.labels[i]


@DATASETS.register("par_pickle")
class PARPickle(DataModule):
    Config = PARPickleConfig
    splits = ("train", "test")

    @functools.cached_property
    def description(self) -> PARDescription:
        p = self.params
        root = require_root(p.root, f"par_pickle ({p.preset})", [p.pickle], SOURCES[p.preset])
        pkl = Path(os.path.expanduser(p.pickle))
        desc = load_description(pkl if pkl.is_absolute() else root / pkl, p.split_index)
        expected = PRESET_SIZES.get(p.preset)
        if expected is not None and len(desc.attr_names) != expected and p.groups is None:
            raise ConfigError(
                f"dataset.preset={p.preset} expects {expected} evaluated attributes but the pickle has "
                f"{len(desc.attr_names)}; set dataset.groups for a different attribute set"
            )
        for split in (p.train_split, p.test_split):
            if split not in desc.partitions:
                raise ConfigError(
                    f"dataset: the pickle has no partition.{split} (has {sorted(desc.partitions)})"
                )
        image_root = Path(os.path.expanduser(p.images)) if p.images else desc.image_root
        if not image_root.is_absolute():
            image_root = root / image_root
        if not image_root.is_dir() and p.images is None:
            image_root = root / "images"  # the pickle's root was an absolute path on another machine
        if not image_root.is_dir():
            raise DatasetNotFoundError(
                f"dataset: image folder '{image_root}' does not exist; set dataset.images=<folder with the "
                f"images named in the pickle>"
            )
        desc.image_root = image_root
        return desc

    @functools.cached_property
    def info(self) -> PARInfo:
        p, d = self.params, self.description
        groups = [tuple(g) for g in p.groups] if p.groups is not None else PRESET_GROUPS.get(p.preset, [])
        try:
            check_groups(groups, len(d.attr_names), "dataset.groups")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        train = d.labels[d.partitions[p.train_split]]
        return PARInfo(
            num_classes=len(d.attr_names),
            image_shape=(3, p.size, p.size),
            class_names=d.attr_names,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            groups=groups,
            sentences=d.sentences or [sentence_for(n) for n in d.attr_names],
            positive_rates=tuple(float(r) for r in train.mean(0)),
        )

    def dataset(self, split: str) -> Dataset:
        self.check_split(split)
        p, d = self.params, self.description
        idx = d.partitions[p.train_split if split == "train" else p.test_split]
        paths = [d.image_root / d.image_names[i] for i in idx]
        return _ImageDataset(paths, d.labels[idx], p.size)
