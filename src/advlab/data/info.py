"""What a task and a victim need to know about a dataset (no torch: importable by config checks)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class DataInfo:
    """What a task and a victim need to know about a dataset."""

    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
