from advlab.data import cifar10, digits, par_pickle, synthpar  # noqa: F401  (registers)
from advlab.data.base import DATASETS, DataModule, DatasetConfig, require_root

__all__ = ["DATASETS", "DataModule", "DatasetConfig", "require_root"]
