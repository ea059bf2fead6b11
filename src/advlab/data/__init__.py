from advlab.data import cifar10, cifar10c, digits, imagenet100  # noqa: F401  (registers)
from advlab.data.base import DATASETS, DataModule, DatasetConfig, require_root

__all__ = ["DATASETS", "DataModule", "DatasetConfig", "require_root"]
