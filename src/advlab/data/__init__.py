from advlab.data import celeba, cifar10, cifar10c, cityscapes, digits, digits_seg, imagenet100, synthfaces  # noqa: F401  (registers)
from advlab.data.base import DATASETS, DataModule, DatasetConfig, require_root

__all__ = ["DATASETS", "DataModule", "DatasetConfig", "require_root"]
