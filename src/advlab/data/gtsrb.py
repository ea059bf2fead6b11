"""GTSRB (German Traffic Sign Recognition Benchmark), 43 classes, from the official "Final_Training" archive:

    <root>/Final_Training/Images/<class 00000..00042>/GT-<class>.csv   ``Filename;Width;Height;Roi.X1;Roi.Y1;
                                                                        Roi.X2;Roi.Y2;ClassId`` (';'-separated)
    <root>/Final_Training/Images/<class>/<Filename>.ppm
    <root>/Final_Test/Images/GT-final_test.csv + *.ppm                 optional (GTSRB_Final_Test_GT.zip csv)

The test split is Final_Test when its ground-truth csv is present, otherwise a seeded ``test_fraction`` of
the training images (split by track, i.e. by the ``<track>_`` filename prefix, so the ~30 frames of one
physical sign stay on one side). ``top_classes: K`` keeps the K classes with the most training images
(relabelled 0..K-1 by decreasing count), as the JMA paper's 32-class ECOC setting does; ``classes_file`` lists
the kept ClassIds in output order instead (the authors' ``gtsrb_top32category_label.npy``, for their models).
Images are cropped to the annotated ROI (``crop_roi``) and resized to ``size``.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from advlab.data.base import DATASETS, DataModule, require_root
from advlab.data.configs import GTSRBConfig  # noqa: F401
from advlab.data.image_files import load_image
from advlab.data.info import DataInfo
from advlab.errors import DatasetNotFoundError

SOURCE = "https://benchmark.ini.rub.de/gtsrb_dataset.html (GTSRB_Final_Training_Images.zip)"
MEAN = (0.3403, 0.3121, 0.3214)
STD = (0.2724, 0.2608, 0.2669)


def read_gt_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    except OSError as exc:
        raise DatasetNotFoundError(f"dataset.root: cannot read '{path}' ({exc})") from None
    need = {"Filename", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"}
    if rows and not need <= set(rows[0]):
        raise DatasetNotFoundError(f"dataset.root: '{path}' lacks columns {sorted(need - set(rows[0]))}")
    return rows


def _records(folder: Path, rows: list[dict[str, str]]) -> list[tuple[Path, tuple[int, int, int, int], int]]:
    return [
        (
            folder / r["Filename"],
            (int(r["Roi.X1"]), int(r["Roi.Y1"]), int(r["Roi.X2"]), int(r["Roi.Y2"])),
            int(r["ClassId"]),
        )
        for r in rows
    ]


def read_class_ids(path: str) -> tuple[int, ...]:
    """GTSRB ClassIds in output order from a ``.npy`` (``gtsrb_top32category_label.npy``) or a text file."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        raise DatasetNotFoundError(
            f"dataset.classes_file: '{file}' does not exist (the JMA authors' Dataset/gtsrb/"
            "gtsrb_top32category_label.npy, from the Google Drive archive of their Dataset/download_info.txt, "
            "or a text file of GTSRB ClassIds, one per line)"
        )
    if file.suffix == ".npy":
        ids = np.load(file, allow_pickle=False).reshape(-1).tolist()
    else:
        ids = [s.strip() for s in file.read_text().split() if s.strip()]
    try:
        ids = [int(i) for i in ids]
    except ValueError:
        raise DatasetNotFoundError(
            f"dataset.classes_file: '{file}' must hold integer GTSRB ClassIds"
        ) from None
    if not ids or len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) > 42:
        raise DatasetNotFoundError(
            f"dataset.classes_file: '{file}' must list distinct GTSRB ClassIds in [0, 42] (got {ids[:8]})"
        )
    return tuple(ids)


@functools.lru_cache(maxsize=2)
def load_gtsrb(
    root: str,
    size: int,
    crop: bool,
    top: int | None,
    frac: float,
    seed: int,
    ids: tuple[int, ...] | None = None,
):
    base = Path(root)
    train = []
    for gt in sorted((base / "Final_Training" / "Images").glob("*/GT-*.csv")):
        train += _records(gt.parent, read_gt_csv(gt))
    if not train:
        raise DatasetNotFoundError(f"dataset.root: no GT-*.csv under '{base / 'Final_Training/Images'}'")
    test_gt = base / "Final_Test" / "Images" / "GT-final_test.csv"
    if test_gt.is_file():
        test = _records(test_gt.parent, read_gt_csv(test_gt))
    else:  # split by track (filename prefix) so near-duplicate frames do not leak into the test split
        tracks = sorted({(c, p.parent.name, p.name.split("_")[0]) for p, _, c in train})
        rng = np.random.default_rng(seed)
        test_tracks = {
            tracks[i] for i in rng.permutation(len(tracks))[: max(1, int(round(frac * len(tracks))))]
        }
        test = [r for r in train if (r[2], r[0].parent.name, r[0].name.split("_")[0]) in test_tracks]
        train = [r for r in train if (r[2], r[0].parent.name, r[0].name.split("_")[0]) not in test_tracks]
    counts = np.bincount([c for _, _, c in train], minlength=43)
    if ids is not None:
        classes = list(ids)
    else:
        classes = (
            list(range(43)) if top is None else [int(c) for c in np.argsort(-counts, kind="stable")[:top]]
        )
    remap = {c: i for i, c in enumerate(classes)}
    out = {}
    for split, recs in (("train", train), ("test", test)):
        recs = [r for r in recs if r[2] in remap]
        x = (
            torch.stack([load_image(p, size, box if crop else None) for p, box, _ in recs])
            .mul_(255)
            .round_()
            .to(torch.uint8)
        )
        y = torch.tensor([remap[c] for _, _, c in recs], dtype=torch.int64)
        out[split] = (x, y)
    return out, classes


@DATASETS.register("gtsrb")
class GTSRB(DataModule):
    Config = GTSRBConfig

    @functools.cached_property
    def root(self) -> Path:
        return require_root(self.params.root, "gtsrb", ["Final_Training/Images/*/GT-*.csv"], SOURCE)

    def _load(self):
        p = self.params
        ids = read_class_ids(p.classes_file) if p.classes_file else None
        return load_gtsrb(
            str(self.root), p.size, p.crop_roi, p.top_classes, p.test_fraction, p.split_seed, ids
        )

    @functools.cached_property
    def info(self) -> DataInfo:
        _, classes = self._load()
        s = self.params.size
        return DataInfo(len(classes), (3, s, s), [f"class{c:02d}" for c in classes], MEAN, STD)

    def dataset(self, split: str) -> TensorDataset:
        self.check_split(split)
        x, y = self._load()[0][split]
        return TensorDataset(x.float().div(255), y)
