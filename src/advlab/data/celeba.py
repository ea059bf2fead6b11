"""CelebA (Liu et al. 2015), aligned-and-cropped release, with identities and attributes:

    <root>/img_align_celeba/000001.jpg ...       (178x218 aligned faces)
    <root>/list_attr_celeba.txt                  (count; 40 attribute names; "000001.jpg  -1 1 ...")
    <root>/identity_CelebA.txt                   ("000001.jpg 2880")
    <root>/list_eval_partition.txt               ("000001.jpg 0"; 0 train, 1 dev/val, 2 test)

Images are cropped to the face square (``crop`` pixels, centred, ``crop_top`` from the top) and resized to
``image_size`` (SemanticAdv: 112x112). ``attributes`` selects the generator's condition; the default is
SemanticAdv's 17 identity-preserving attributes. CelebA's identities are disjoint across the partitions;
train identities are relabelled 0..K-1 (the classes a verification model is trained on).
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from advlab.data.base import DATASETS, require_root
from advlab.data.configs import SEMANTICADV_ATTRIBUTES, CelebAConfig  # noqa: F401
from advlab.data.faces import FaceAttributeData
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

LAYOUT = ["img_align_celeba", "list_attr_celeba.txt", "identity_CelebA.txt", "list_eval_partition.txt"]
SOURCE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images + Anno + Eval)"
SPLIT_CODES = {"train": 0, "dev": 1, "test": 2}
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def _read_table(path: Path, skip: int) -> list[list[str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetNotFoundError(f"dataset.root: cannot read '{path}' ({exc})") from None
    return [line.split() for line in lines[skip:] if line.strip()]


@functools.lru_cache(maxsize=2)
def load_celeba_annotations(
    root: str, attributes: tuple[str, ...]
) -> dict[str, tuple[list[str], Tensor, Tensor]]:
    """``{split: (file names, identities [N], attributes [N, A] in {0,1})}``."""
    root_p = Path(root)
    attr_lines = (root_p / "list_attr_celeba.txt").read_text().splitlines()
    if len(attr_lines) < 2:
        raise DatasetNotFoundError(
            f"dataset.root: '{root_p / 'list_attr_celeba.txt'}' is malformed (too short)"
        )
    names = attr_lines[1].split()
    missing = [a for a in attributes if a not in names]
    if missing:
        raise DatasetNotFoundError(
            f"dataset.attributes: {missing} not in list_attr_celeba.txt (available: {', '.join(names)})"
        )
    cols = [names.index(a) for a in attributes]
    attr_rows = {}
    for parts in (line.split() for line in attr_lines[2:] if line.strip()):
        if len(parts) != len(names) + 1:
            raise DatasetNotFoundError(
                f"dataset.root: list_attr_celeba.txt row '{parts[0]}' has {len(parts) - 1} values, "
                f"expected {len(names)}"
            )
        attr_rows[parts[0]] = [parts[1 + c] == "1" for c in cols]
    identity = {p[0]: int(p[1]) for p in _read_table(root_p / "identity_CelebA.txt", 0)}
    partition = {p[0]: int(p[1]) for p in _read_table(root_p / "list_eval_partition.txt", 0)}
    files = sorted(partition)
    lacking = [f for f in files if f not in identity or f not in attr_rows]
    if lacking:
        raise DatasetNotFoundError(
            f"dataset.root: {len(lacking)} images of list_eval_partition.txt have no identity or attribute row "
            f"(first: {lacking[0]})"
        )
    train_ids = sorted({identity[f] for f in files if partition[f] == 0})
    other_ids = sorted({identity[f] for f in files} - set(train_ids))
    relabel = {pid: i for i, pid in enumerate(train_ids + other_ids)}
    out = {}
    for split, code in SPLIT_CODES.items():
        chosen = [f for f in files if partition[f] == code]
        ids = torch.tensor([relabel[identity[f]] for f in chosen], dtype=torch.int64)
        attrs = torch.tensor([attr_rows[f] for f in chosen], dtype=torch.float32).view(len(chosen), len(cols))
        out[split] = (chosen, ids, attrs)
    out["_num_train_ids"] = len(train_ids)  # type: ignore[assignment]
    return out


class CelebAImages(Dataset):
    def __init__(self, folder: Path, files: list[str], size: int, crop: int, crop_top: int):
        self.folder, self.files, self.size, self.crop, self.crop_top = folder, files, size, crop, crop_top

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        path = self.folder / self.files[i]
        try:
            img = Image.open(path).convert("RGB")
        except OSError as exc:
            raise DatasetNotFoundError(f"dataset.root: cannot read image '{path}' ({exc})") from None
        w, h = img.size
        crop = min(self.crop, w, h)
        left, top = (w - crop) // 2, min(self.crop_top, h - crop)
        img = img.crop((left, top, left + crop, top + crop)).resize((self.size, self.size), Image.BICUBIC)
        return (
            torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
            .view(self.size, self.size, 3)
            .permute(2, 0, 1)
            .float()
            .div(255)
        )


@DATASETS.register("celeba")
class CelebA(FaceAttributeData):
    Config = CelebAConfig

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "celeba", LAYOUT, SOURCE)

    def _annotations(self):
        return load_celeba_annotations(str(self.root), tuple(self.params.attributes))

    @property
    def attribute_names(self) -> list[str]:
        return list(self.params.attributes)

    @functools.cached_property
    def info(self) -> DataInfo:
        k = self._annotations()["_num_train_ids"]
        s = self.params.image_size
        return DataInfo(k, (3, s, s), [str(i) for i in range(k)], MEAN, STD)

    def images(self, split: str) -> CelebAImages:
        self.check_split(split)
        p = self.params
        files = self._annotations()[split][0]
        return CelebAImages(self.root / "img_align_celeba", files, p.image_size, p.crop, p.crop_top)

    def identities(self, split: str) -> Tensor:
        self.check_split(split)
        return self._annotations()[split][1]

    def attributes(self, split: str) -> Tensor:
        self.check_split(split)
        return self._annotations()[split][2]
