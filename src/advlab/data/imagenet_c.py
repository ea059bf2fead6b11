"""ImageNet-C (Hendrycks & Dietterich 2019) as released, read for the ImageNet-100 classes (as the PAT authors'
``ImageNet100C``)::

    <root>/<corruption>/<severity>/<wnid>/*.JPEG      (severity 1..5; the 50 000 validation images, 224 x 224)

Only the wnids of the run's ImageNet-100 dataset are read, labelled by their position in its class list (the
same labels as its validation split), with the dataset's test transform (resize + centre crop). The images of
one class are taken in sorted file order; ``limit`` keeps an evenly spaced subset of the (class, file) list.
The clean counterparts (for relative mCE) are the validation images of the same names
(``<dataset root>/val/<wnid>/<file>``), since ImageNet-C was made from them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from advlab.data.cifar10c import CorruptionSource
from advlab.errors import DatasetNotFoundError

SOURCE = (
    "https://zenodo.org/record/2235448 (ImageNet-C: blur.tar, digital.tar, noise.tar, weather.tar, extracted)"
)
EXTENSIONS = (".jpeg", ".jpg", ".png")


def _files(folder: Path) -> list[str]:
    return sorted(f.name for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)


class ImageNetCFolders(CorruptionSource):
    def __init__(
        self,
        root: str | os.PathLike | None,
        corruptions: list[str],
        severities: list[int],
        classes: list[str],
        transform: Callable,
        limit: int | None = None,
    ):
        if not root:
            raise DatasetNotFoundError(
                f"pipeline.corruption.root: set the ImageNet-C folder (<corruption>/<severity>/<wnid>/*.JPEG; {SOURCE})"
            )
        self.root = Path(os.path.expanduser(str(root)))
        missing = [
            f"{c}/{s}/{w}"
            for c in corruptions
            for s in severities
            for w in classes
            if not (self.root / c / str(s) / w).is_dir()
        ]
        if missing:
            raise DatasetNotFoundError(
                f"pipeline.corruption.root '{self.root}': {len(missing)} ImageNet-C class folders missing, e.g. "
                f"{missing[:3]} (expected <corruption>/<severity>/<wnid>/*.JPEG for the {len(classes)} dataset "
                f"classes; {SOURCE})"
            )
        first = self.root / corruptions[0] / str(severities[0])
        items = [(w, f, label) for label, w in enumerate(classes) for f in _files(first / w)]
        if limit is not None and limit < len(items):
            idx = torch.linspace(0, len(items) - 1, limit).round().long().unique().tolist()
            items = [items[i] for i in idx]
        self.items, self.transform = items, transform
        self.labels = torch.tensor([label for _, _, label in items], dtype=torch.int64)

    def _load(self, folder: Path) -> Tensor:
        from PIL import Image

        out = []
        for wnid, name, _ in self.items:
            path = folder / wnid / name
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"'{path}' is missing (every corruption and severity holds the same files)"
                )
            with Image.open(path) as img:
                out.append(self.transform(img.convert("RGB")))
        return torch.stack(out)

    def get(self, corruption: str, severity: int) -> tuple[Tensor, Tensor]:
        return self._load(self.root / corruption / str(severity)), self.labels.clone()

    def clean(self, val_root: str | os.PathLike) -> tuple[Tensor, Tensor]:
        """The uncorrupted validation images of the same names (``<val_root>/<wnid>/<file>``)."""
        return self._load(Path(val_root)), self.labels.clone()
