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


#: what one ground-truth label is, per kind: a task consumes one kind (``advlab.tasks.configs.LABEL_KIND``), a
#: dataset provides the kind of its ``default_task``
LABEL_KINDS = {
    "class": "one class index per image",
    "multi-hot": "a multi-hot vector of labels (attributes) per image",
    "mask": "a class per pixel (segmentation mask)",
    "identity": "face identities (pairs of images of the same / another person)",
    "landmarks": "(x, y) pixel coordinates of face landmarks per image (68-point layout)",
}


def label_mismatch(
    task: str, task_kind: str, dataset: str, dataset_kind: str, default_task: str
) -> str | None:
    """The ``task.name`` error when the dataset's labels are not what the task needs, else None."""
    if task_kind == dataset_kind:
        return None
    return (
        f"task.name: task '{task}' needs {LABEL_KINDS[task_kind]}, but dataset '{dataset}' has "
        f"{LABEL_KINDS[dataset_kind]}; use task.name=auto (the dataset's task, {default_task}) or a dataset with "
        f"{task_kind} labels"
    )
