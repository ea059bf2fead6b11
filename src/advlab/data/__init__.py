from advlab.data import cifar10, coco, digits, digits_multilabel, gtsrb, mnist, nuswide, voc  # noqa: F401  (registers)
from advlab.data.base import DATASETS, DataModule, DatasetConfig, require_root

__all__ = ["DATASETS", "DataModule", "DatasetConfig", "require_root"]
